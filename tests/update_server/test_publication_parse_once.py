"""An uploaded role is parsed once per request, and published as the bytes verified (issue 9).

Upload loads each role of the body once; the upload keeps the role's bytes;
publish parses those bytes once, verifies them again and writes them as
they are, so what devices get is exactly what the server checked.
Parses are counted at python-tuf's one entry point, ``Metadata.from_dict``
(``from_bytes`` and our strict ``load_metadata`` both end there).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest
from tuf.api.metadata import Metadata

from signer.authoring import RoleKeys, delegate
from signer.signing import sign_roles
from tests.update_server.repo_world import World, key
from update_server.db import transaction
from update_server.publication.models import ReleaseUpload

MANAGER = "release_manager"


def _digest(document: Any) -> str:
    """A document's identity: signed part and signatures (two new lines may sign the same)."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each document is loaded into a ``Metadata``."""
    counts: Counter[str] = Counter()
    original = Metadata.from_dict.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Metadata[Any]], metadata: dict[str, Any]) -> Metadata[Any]:
        counts[_digest(metadata)] += 1
        return original(cls, metadata)  # type: ignore[no-any-return]

    monkeypatch.setattr(Metadata, "from_dict", classmethod(counting))
    return counts


def test_each_uploaded_role_is_parsed_once_at_upload_and_once_at_publish(
    world: World, parses: Counter[str]
) -> None:
    """A new product line with its delegator: before, each was parsed twice per request."""
    delegate(
        world.open_offline("manager1"),
        name="infusion-z1",
        path_prefix="infusion-z1/",
        keys=RoleKeys([key("erin").public_key, key("frank").public_key], 2),
    )
    sign_roles(world.open_offline("erin", "frank"), roles=["infusion-z1"])
    roles = {role: world.role_json(role) for role in ("targets", "infusion-z1")}
    uploaded = {role: _digest(document) for role, document in roles.items()}
    world.login("mike", MANAGER)

    parses.clear()
    answer = world.upload("mike", roles, role=MANAGER)
    assert answer.status_code == 201, answer.get_json()
    assert {role: parses[digest] for role, digest in uploaded.items()} == {
        "targets": 1,
        "infusion-z1": 1,
    }

    parses.clear()
    published = world.publish("mike", answer.get_json()["id"])
    assert published.status_code == 200, published.get_json()
    assert {role: parses[digest] for role, digest in uploaded.items()} == {
        "targets": 1,
        "infusion-z1": 1,
    }


def test_what_is_published_is_exactly_the_bytes_kept_and_verified(world: World) -> None:
    """The upload keeps each role's bytes; publish writes those very bytes (no re-serializing)."""
    path, data = world.add_release("2.4.0")
    world.login("eve", "release_engineer")
    answer = world.upload("eve", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201, answer.get_json()
    release = answer.get_json()["id"]
    with transaction(world.services.sessions) as db:
        upload = db.get(ReleaseUpload, release)
        assert upload is not None
        kept = str(upload.roles["pump-x100"]).encode()
    assert world.put("eve", release, path, data).status_code == 201
    assert world.publish("eve", release).status_code == 200

    version = answer.get_json()["roles"]["pump-x100"]
    assert (world.repository / "metadata" / f"{version}.pump-x100.json").read_bytes() == kept
    assert json.loads(kept) == world.role_json("pump-x100")  # the document as uploaded
