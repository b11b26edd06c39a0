"""``POST /api/v1/devices/<id>/bundle`` (``bundles.views`` A1-A4, ``bundles.technician`` T1-T4).

Issue 13 from the technician's own computer: the bundle for the device in
front of them, the one the device's page makes, with the authorization its
release requires, after a fresh one-time code (R9; a code is spent once,
R25). The authorization is bound to the device and to the SHA-256 the
published metadata signs (R58); the bundle is what the device imports from
removable media (R46). A refusal issues nothing and audits no bundle as made.
Both database legs (the ``world`` fixture); every answer is held to the
OpenAPI document (``openapi_contract``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import TestResponse

from fwcommon.bundle import AUTHORIZATION, Bundle
from fwcommon.keyref import public_key_from_uri
from repo_metadata.authorization import AuthorizationKeys, SignedAuthorization, check
from tests.update_server.bundle_world import Published, publish
from tests.update_server.repo_world import World
from tests.update_server.test_authorizations_issue import add_device, technician
from update_server.audit.actions import Action
from update_server.authorizations.models import IssuedAuthorization
from update_server.bundles import views
from update_server.db import transaction
from update_server.devices.models import DeviceState
from update_server.models import AuditEntry, Role

BOUND = 64 * 1024 * 1024


def url(device_id: str) -> str:
    return f"/api/v1/devices/{device_id}/bundle"


@pytest.fixture
def ward(world: World) -> dict[str, Any]:
    """pump-0001 and a pending pump-0003 in the north ward (tom's), pump-0009 in the south."""
    add_device(world, "pump-0001", site="north")
    add_device(world, "pump-0003", site="north", state=DeviceState.PENDING)
    add_device(world, "pump-0009", site="south")
    release = publish(world, "2.0.0", requires_authorization=True)
    return {"tom": technician(world, "tom", "north"), "release": release}


def post(
    world: World,
    headers: dict[str, str],
    device_id: str = "pump-0001",
    body: dict[str, Any] | None = None,
    *,
    code: str | None = "fresh",
) -> TestResponse:
    sent = dict(headers)
    if code is not None:
        sent["X-OTP"] = world.otp.code() if code == "fresh" else code
    answer = world.client.post(url(device_id), json={} if body is None else body, headers=sent)
    answer.get_data()  # read whole, then closed: the streamed file is closed with it
    answer.close()
    return answer


def opened(answer: TestResponse, tmp_path: Path) -> Bundle:
    file = tmp_path / "downloaded.tar"
    file.write_bytes(answer.get_data())
    return Bundle.open(file, max_bytes=BOUND)


def issued(world: World) -> list[IssuedAuthorization]:
    with transaction(world.services.sessions) as db:
        return list(db.scalars(select(IssuedAuthorization)))


def bundles_audited(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    with transaction(world.services.sessions) as db:
        query = select(AuditEntry).where(AuditEntry.action == Action.BUNDLE_CREATE)
        return [(e.outcome, e.object, json.loads(e.detail)) for e in db.scalars(query)]


def assert_nothing_made(world: World) -> None:
    assert issued(world) == []
    assert {outcome for outcome, _, _ in bundles_audited(world)} <= {"refused"}


def test_a_fresh_code_gets_the_bundle_with_its_authorization_bound_to_the_device_r9_r46_r58(
    world: World, ward: dict[str, Any], tmp_path: Path
) -> None:
    release: Published = ward["release"]
    answer = post(world, ward["tom"])
    assert answer.status_code == 200, answer.get_data(as_text=True)[:2000]
    assert answer.mimetype == "application/x-tar"
    assert answer.headers["Content-Disposition"].startswith("attachment;")
    assert "bundle-pump-0001-2.0.0.tar" in answer.headers["Content-Disposition"]
    assert answer.headers["Cache-Control"] == "no-store"
    signed_sha256 = world.role_json("pump-x100")["signed"]["targets"][release.path]["hashes"][
        "sha256"
    ]
    assert signed_sha256 == hashlib.sha256(release.data).hexdigest()
    with opened(answer, tmp_path) as bundle:
        manifest = bundle.manifest
        document = bundle.read(AUTHORIZATION, limit=16 * 1024)
        carried = bundle.read(release.member(signed_sha256), limit=BOUND)
    assert (manifest.device, manifest.release, manifest.root_from) == ("pump-0001", release.path, 1)
    assert carried == release.data
    signed = SignedAuthorization.from_bytes(document)
    auth = signed.authorization
    assert (auth.device_id, auth.target_path, auth.sha256, auth.technician) == (
        "pump-0001",
        release.path,
        signed_sha256,
        "tom",
    )
    key = public_key_from_uri(world.config.online_keys["authorization"])
    problem = check(
        signed,
        trusted=AuthorizationKeys({key.keyid: key}),
        device_id="pump-0001",
        target_path=release.path,
        sha256=signed_sha256,
        at=auth.issued,
        nonces={},
    )
    assert problem is None, problem
    (row,) = issued(world)
    assert document == row.document.encode("utf-8"), "the document exactly as issued"
    ((outcome, object_, detail),) = bundles_audited(world)
    assert (outcome, object_) == ("success", "device:pump-0001")
    assert detail["sha256"] == hashlib.sha256(answer.get_data()).hexdigest()
    assert detail["authorization"] == auth.nonce[:16]


def test_a_release_that_needs_no_authorization_gets_a_bundle_without_one(
    world: World, tmp_path: Path
) -> None:
    add_device(world, "pump-0001", site="north")
    tom = technician(world, "tom", "north")
    publish(world, "2.0.0")
    answer = post(world, tom, body={"from_root": 1})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:2000]
    with opened(answer, tmp_path) as bundle:
        assert bundle.manifest.authorization is None
        assert AUTHORIZATION not in bundle.names()
    assert issued(world) == []


def test_without_a_code_or_with_a_wrong_or_replayed_one_nothing_is_issued_r9_r25(
    world: World, ward: dict[str, Any]
) -> None:
    missing = post(world, ward["tom"], code=None)
    assert missing.status_code == 401
    assert "X-OTP" in missing.get_json()["detail"]
    assert post(world, ward["tom"], code="12ab56").status_code == 401
    code = world.otp.code()
    assert post(world, ward["tom"], code=code).status_code == 200
    replayed = post(world, ward["tom"], code=code)
    assert replayed.status_code == 401, "a spent code confirms nothing twice (R25)"
    assert len(issued(world)) == 1, "only the one bundle made with a fresh code"
    assert [outcome for outcome, _, _ in bundles_audited(world)] == ["success"]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.RELEASE_MANAGER, Role.SECURITY_OFFICER])
def test_only_a_technician_gets_a_bundle_through_the_api_r9(
    world: World, ward: dict[str, Any], role: Role
) -> None:
    headers = world.login(f"someone-{role.value}"[:30], role)
    assert post(world, headers).status_code == 403
    assert_nothing_made(world)
    assert bundles_audited(world) == []


def test_a_device_out_of_scope_is_404_as_if_absent_and_nothing_is_issued_r6(
    world: World, ward: dict[str, Any]
) -> None:
    far = post(world, ward["tom"], "pump-0009")
    absent = post(world, ward["tom"], "pump-0404")
    assert (far.status_code, absent.status_code) == (404, 404)
    assert far.get_json()["detail"] == "no device pump-0009"
    assert absent.get_json()["detail"] == "no device pump-0404"
    assert far.mimetype == "application/problem+json"
    assert_nothing_made(world)


def test_a_pending_device_is_409_and_nothing_is_issued(world: World, ward: dict[str, Any]) -> None:
    answer = post(world, ward["tom"], "pump-0003")
    assert answer.status_code == 409
    assert "pending" in answer.get_json()["detail"]
    assert_nothing_made(world)


def test_no_bundle_while_frozen_423_r24(world: World, ward: dict[str, Any]) -> None:
    officer = {**world.login("olga", Role.SECURITY_OFFICER), "X-OTP": world.otp.code()}
    frozen = world.client.post("/api/v1/freeze", json={"reason": "key leak?"}, headers=officer)
    assert frozen.status_code == 200, frozen.get_json()
    answer = post(world, ward["tom"])
    assert answer.status_code == 423
    assert answer.get_json()["detail"].startswith("the system is frozen by olga")
    assert_nothing_made(world)
    ((outcome, _, detail),) = bundles_audited(world)
    assert outcome == "refused" and "frozen" in detail["reason"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"from_root": 0}, "from_root: must be at least 1"),
        ({"from_root": "1"}, "from_root: must be of type"),
        ({"lifetime": 5}, "Additional properties"),
    ],
)
def test_a_body_the_document_refuses_is_400_and_nothing_is_issued(
    world: World, ward: dict[str, Any], body: dict[str, Any], says: str
) -> None:
    answer = post(world, ward["tom"], body=body)
    assert answer.status_code == 400
    assert says in answer.get_json()["detail"]
    assert issued(world) == []
    assert bundles_audited(world) == []


def test_a_root_the_server_never_published_is_400_with_what_to_give(
    world: World, ward: dict[str, Any]
) -> None:
    answer = post(world, ward["tom"], body={"from_root": 99})
    assert answer.status_code == 400
    assert "give the root version the device was provisioned with" in answer.get_json()["detail"]
    assert_nothing_made(world)


def test_a_bundle_over_the_bound_is_413_rolls_its_authorization_back_r25(
    world: World, ward: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """T4 all or nothing: the authorization issued for it is rolled back, the refusal
    audited, and the code stays spent."""
    monkeypatch.setattr(views, "DEFAULT_MAX_BYTES", 16 * 1024)
    code = world.otp.code()
    answer = post(world, ward["tom"], code=code)
    assert answer.status_code == 413
    assert "fwserver bundle --max-bytes" in answer.get_json()["detail"]
    assert issued(world) == []
    ((outcome, _, _),) = bundles_audited(world)
    assert outcome == "refused"
    assert post(world, ward["tom"], code=code).status_code == 401
