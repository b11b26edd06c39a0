"""``signer.repository.OfflineRepository``: the one write path of the signer.

``close()`` bumps a signed role's version once per session (never an
unsigned draft's), sets its expiry from the policy and signs; ``commit()``
re-checks every changed role with ``repo_metadata.verify`` and writes all
or nothing. What a device would refuse is never written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, SuccinctRoles, TargetFile

from repo_metadata.firmware import FirmwareInfo
from repo_metadata.policy import Policy
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.errors import SignerError
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.signer.conftest import dir_snapshot

PATH = "pump-x100/pump-fw-2.4.0.bin"

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


def info(version: str = "2.4.0") -> FirmwareInfo:
    return FirmwareInfo(version=version, security_version=3, hardware_models=("pump-x100",))


def role_md(repo: Path, role: str) -> Metadata[Any]:
    return Metadata.from_bytes((repo / "metadata" / f"{role}.json").read_bytes())


def firmware(path: str) -> TargetFile:
    custom = FirmwareInfo(version="9.0.0", security_version=9, hardware_models=("x",)).to_custom()
    return TargetFile(4, {"sha256": "ab" * 32}, path, unrecognized_fields={"custom": custom})


def lines(people: dict[str, Signer], *names: str, threshold: int = 1) -> RoleKeys:
    return RoleKeys([people[n].public_key for n in names], threshold)


def test_opening_a_directory_that_is_not_a_repository_refused(
    tmp_path: Path, now: datetime
) -> None:
    """No root, no repository: nothing is created by accident."""
    with pytest.raises(SignerError, match="is not a firmware repository"):
        OfflineRepository(tmp_path, now=now)


def test_a_corrupt_role_file_is_refused_on_open(line: Path, open_repo: Opener) -> None:
    """The directory travels on USB sticks: its files are outside input (strict rules)."""
    file = line / "metadata" / "pump-x100.json"
    file.write_bytes(file.read_bytes().replace(b"{", b'{"signed": {},', 1))
    with pytest.raises(SignerError, match=r"pump-x100.json: .*\[rule: json-duplicate-key\]"):
        open_repo(line, "alice").open("pump-x100")


# --- versions -----------------------------------------------------------------------


def test_an_edit_of_a_signed_role_bumps_its_version_once_per_session(
    line: Path, open_repo: Opener, people: dict[str, Signer]
) -> None:
    """Two changes in one session are one new version; the next session, another."""
    assert role_md(line, "targets").signed.version == 2
    session = open_repo(line, "manager1")
    delegate(session, name="pump-x200", path_prefix="pump-x200/", keys=lines(people, "carol"))
    delegate(session, name="pump-x300", path_prefix="pump-x300/", keys=lines(people, "carol"))
    assert role_md(line, "targets").signed.version == 3
    delegate(
        open_repo(line, "manager1"),
        name="pump-x400",
        path_prefix="pump-x400/",
        keys=lines(people, "carol"),
    )
    assert role_md(line, "targets").signed.version == 4


def test_an_unsigned_draft_is_not_bumped_again(line: Path, open_repo: Opener, image: Path) -> None:
    """pump-x100 v1 has no signature yet: edits amend the draft until someone signs."""
    add_firmware(open_repo(line), image=image, name="pump-fw", info=info("2.4.0"))
    add_firmware(open_repo(line), image=image, name="pump-fw", info=info("2.4.1"))
    draft = role_md(line, "pump-x100")
    assert draft.signed.version == 1
    assert draft.signatures == {}
    sign_roles(open_repo(line, "alice"))
    add_firmware(open_repo(line), image=image, name="pump-fw", info=info("2.4.2"))
    assert role_md(line, "pump-x100").signed.version == 2


def test_a_tool_that_rewinds_the_version_is_refused(
    line: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """TUF rollback attack from inside the signer: the new version must be higher."""
    repo = open_repo(line, "manager1")
    with repo.edit_targets() as targets:
        targets.version = 1  # close() bumps it to 2, the version already trusted
    with (
        unchanged(line),
        pytest.raises(
            SignerError,
            match=r"v2 is not newer than the trusted v2 \(rollback refused\) \[rule: version\]",
        ),
    ):
        repo.commit()


# --- expiry from the policy ---------------------------------------------------------------


def test_expiry_is_set_from_the_default_policy_on_every_edit(
    line: Path, open_repo: Opener, now: datetime, image: Path
) -> None:
    """TUF freeze: each edit renews the expiry from the policy (R25 time-outs)."""
    assert role_md(line, "root").signed.expires == now + timedelta(days=365)
    assert role_md(line, "targets").signed.expires == now + timedelta(days=182)
    assert role_md(line, "pump-x100").signed.expires == now + timedelta(days=91)
    later = now + timedelta(days=10)
    add_firmware(open_repo(line, at=later), image=image, name="pump-fw", info=info())
    assert role_md(line, "pump-x100").signed.expires == later + timedelta(days=91)


def test_expiry_follows_the_repository_policy_file(
    tmp_path: Path, people: dict[str, Signer], now: datetime, open_repo: Opener
) -> None:
    """A repository's policy.json (written at init) governs every later session."""
    path = tmp_path / "repo"
    policy = Policy().with_override("delegation", expiry_days=30)
    init_repository(
        OfflineRepository(path, now=now, signers=[people["manager1"]], policy=policy, create=True),
        root=lines(people, "officer1"),
        targets=lines(people, "manager1"),
        snapshot=people["snapshot"].public_key,
        timestamp=people["timestamp"].public_key,
    )
    assert Policy.from_json(json.loads((path / "policy.json").read_bytes())) == policy
    keys = lines(people, "alice")
    delegate(open_repo(path, "manager1"), name="pump-x100", path_prefix="pump-x100/", keys=keys)
    assert role_md(path, "pump-x100").signed.expires == now + timedelta(days=30)


# --- commit: what a device would refuse is never written ---------------------------------


def test_commit_refuses_a_target_outside_the_delegation_and_writes_nothing(
    line: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """TUF arbitrary software: a patched tool adds a monitor image to pump-x100.

    The valid change to targets in the same session is not written either.
    """
    repo = open_repo(line, "manager1", "alice", "bob")
    with repo.edit_targets():
        pass
    with repo.edit_targets("pump-x100") as pump:
        pump.targets["monitor-m20/fw.bin"] = firmware("monitor-m20/fw.bin")
    with unchanged(line), pytest.raises(SignerError, match=r"rule: path-outside-delegation"):
        repo.commit()


def test_commit_refuses_a_target_in_a_bin_it_does_not_hash_to(
    repo: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """Hashed bins: a release filed in the wrong bin would be invisible to devices."""
    keys = lines(people, "alice")
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=keys,
        bin_bits=2,
    )
    session = open_repo(repo, "alice")
    delegations = session.targets("pump-x100").delegations
    assert delegations is not None
    bins = delegations.succinct_roles
    assert isinstance(bins, SuccinctRoles)
    wrong = next(name for name in bins.get_roles() if name != bins.get_role_for_target(PATH))
    with session.edit_targets(wrong) as signed:
        signed.targets[PATH] = firmware(PATH)
    with unchanged(repo), pytest.raises(SignerError, match=r"rule: path-outside-delegation"):
        session.commit()


def test_adding_a_release_to_hashed_bins_rewrites_its_bin_and_the_line_list_only(
    repo: Path, open_repo: Opener, people: dict[str, Signer], image: Path
) -> None:
    """Lazy loading: a release re-signs its bin and, when it becomes current, the line's list.

    Each is also kept as its newest signed version (2.<role>.json, replacing 1.<role>.json).
    An older release that a newer one supersedes (frontier.py) changes only its bin.
    """
    keys = lines(people, "alice")
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=keys,
        bin_bits=3,
    )
    sign_roles(open_repo(repo, "alice"))
    before = dir_snapshot(repo)
    written = add_firmware(open_repo(repo, "alice"), image=image, name="pump-fw", info=info())
    after = dir_snapshot(repo)
    changed = {name for name in after if after[name] != before.get(name)}
    assert len(written) == 2
    assert written[0].startswith("pump-x100-bins-")
    assert written[1] == "pump-x100"
    kept = {f"metadata/{prefix}{name}.json" for name in written for prefix in ("", "2.")}
    assert changed == kept
    assert set(before) - set(after) == {f"metadata/1.{name}.json" for name in written}
    assert set(role_md(repo, "pump-x100").signed.targets) == {"pump-x100/pump-fw-2.4.0.bin"}

    older = add_firmware(open_repo(repo, "alice"), image=image, name="pump-fw", info=info("2.3.0"))
    assert len(older) == 1
    assert older[0].startswith("pump-x100-bins-")
    assert set(role_md(repo, "pump-x100").signed.targets) == {"pump-x100/pump-fw-2.4.0.bin"}


@pytest.mark.parametrize("role", ["snapshot", "timestamp"])
def test_online_roles_are_never_written_offline(
    repo: Path, open_repo: Opener, unchanged: Unchanged, role: str
) -> None:
    """R6 least privilege: snapshot and timestamp belong to the update server."""
    with unchanged(repo), pytest.raises(SignerError, match="online role"):
        open_repo(repo, "manager1").open(role)
