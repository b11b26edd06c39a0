"""``signer.authoring``: delta targets in a product line with hashed bins (issue 13).

A delta is signed in the bin its path hashes to, beside (not in) the line's
list of current releases, and ``fwsign verify`` accepts the whole repository
(``delta-release`` found the release and its base through the bins).
Withdrawing the release withdraws its delta (R56). A delta whose base is not
the signed release is refused by the shared check before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import pytest
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, TargetFile

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import (
    DeltaSources,
    RoleKeys,
    add_firmware,
    delegate,
    revoke_release,
)
from signer.errors import SignerError
from signer.inspect import verify_repository
from signer.repository import OfflineRepository
from signer.signing import sign_roles

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]
OLD = "pump-x100/pump-fw-2.4.0.bin"
NEW = "pump-x100/pump-fw-2.5.0.bin"
DELTA = "pump-x100/pump-fw-2.5.0.bin.from-2.4.0.bsdiff"


def _info(version: str) -> FirmwareInfo:
    return FirmwareInfo(version=version, security_version=3, hardware_models=("pump-x100",))


@pytest.fixture
def binned(repo: Path, open_repo: Opener, people: dict[str, Signer], tmp_path: Path) -> Path:
    """pump-x100 in 8 hashed bins (alice and bob 2 of 2) holding 2.4.0, whose build is kept."""
    keys = RoleKeys([people[n].public_key for n in ("alice", "bob")], 2)
    delegate(
        open_repo(repo, "manager1"), name="pump-x100", path_prefix="pump-x100/", keys=keys,
        bin_bits=3,
    )  # fmt: skip
    builds = tmp_path / "builds"
    (builds / "pump-x100").mkdir(parents=True)
    (builds / OLD).write_bytes(b"pump firmware 2.4.0 " * 2000)
    session = open_repo(repo, "alice", "bob")
    add_firmware(session, image=builds / OLD, name="pump-fw", info=_info("2.4.0"))
    return repo


def _new_image(tmp_path: Path) -> Path:
    image = tmp_path / "new.bin"
    image.write_bytes(b"pump firmware 2.5.0 " * 2000)
    return image


def _role_of(repo: Path, path: str, roles: list[str]) -> str:
    for role in roles:
        md = Metadata.from_bytes((repo / "metadata" / f"{role}.json").read_bytes())
        if path in md.signed.targets:
            return role
    raise AssertionError(f"{path} is in none of {roles}")


def test_a_delta_is_signed_in_its_bin_and_verify_accepts_the_repository(
    binned: Path, open_repo: Opener, tmp_path: Path, now: datetime
) -> None:
    """delta-release: a delta signed in its bin; verify finds its release and base (R13)."""
    session = open_repo(binned, "alice", "bob")
    sources = DeltaSources(["2.4.0"], tmp_path / "builds", tmp_path / "work")
    add_firmware(
        session, image=_new_image(tmp_path), name="pump-fw", info=_info("2.5.0"), deltas=sources
    )
    bins = [f"pump-x100-bins-{n}" for n in range(8)]
    assert _role_of(binned, DELTA, bins) == session.leaf_role_for(DELTA)
    line = Metadata.from_bytes((binned / "metadata" / "pump-x100.json").read_bytes())
    assert set(line.signed.targets) == {NEW}  # the line lists releases, never a delta
    sign_roles(open_repo(binned, "alice", "bob"))
    assert verify_repository(binned, now=now).ok

    revoke_release(open_repo(binned, "alice", "bob"), path=NEW)
    with pytest.raises(AssertionError):
        _role_of(binned, DELTA, bins)
    assert verify_repository(binned, now=now).ok


def test_a_delta_naming_another_base_length_is_refused_by_the_shared_check(
    binned: Path, open_repo: Opener, tmp_path: Path, unchanged: Unchanged
) -> None:
    """delta-release: a delta against the wrong base, even hand-made, is never written (R13)."""
    session = open_repo(binned, "alice", "bob")
    add_firmware(session, image=_new_image(tmp_path), name="pump-fw", info=_info("2.5.0"))
    old = session.targets(session.leaf_role_for(OLD)).targets[OLD]
    forged = TargetFile(
        10,
        {"sha256": "ab" * 32},
        DELTA,
        {
            "custom": {
                "delta": {
                    "image": NEW,
                    "base": OLD,
                    "base_sha256": old.hashes["sha256"],
                    "base_length": old.length + 1,
                    "format": "bsdiff4",
                }
            }
        },
    )
    session = open_repo(binned, "alice", "bob")
    with session.edit_targets(session.leaf_role_for(DELTA)) as bin_:
        bin_.targets[DELTA] = forged
    with unchanged(binned), pytest.raises(SignerError, match=r"\[rule: delta-release\]"):
        session.commit()


def test_verify_names_a_delta_left_without_its_release_and_how_to_fix_it(
    binned: Path, open_repo: Opener, tmp_path: Path, now: datetime
) -> None:
    """A release removed by hand, not by revoke-release, leaves its delta naming nothing."""
    session = open_repo(binned, "alice", "bob")
    sources = DeltaSources(["2.4.0"], tmp_path / "builds", tmp_path / "work")
    add_firmware(
        session, image=_new_image(tmp_path), name="pump-fw", info=_info("2.5.0"), deltas=sources
    )
    session = open_repo(binned, "alice", "bob")
    for role in ("pump-x100", session.leaf_role_for(NEW)):
        with session.edit_targets(role) as signed:
            del signed.targets[NEW]
    with session.edit_targets("pump-x100") as line:
        line.targets[OLD] = session.targets(session.leaf_role_for(OLD)).targets[OLD]
    session.commit()  # the delta's bin is unchanged: a change checks only the deltas it adds
    sign_roles(open_repo(binned, "alice", "bob"))
    report = verify_repository(binned, now=now)  # the whole repository: every delta
    assert not report.ok
    (failure,) = report.failures
    assert "its image is not a target a device finds" in failure
    assert "withdraw a release with 'fwsign revoke-release'" in failure
    assert failure.endswith("[rule: delta-release]")
