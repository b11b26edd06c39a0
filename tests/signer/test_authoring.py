"""``signer.authoring``: init, delegate, add and revoke, and what each refuses.

Every refused operation must leave the repository byte for byte as it was
(the ``unchanged`` fixture), so a half-done command never reaches a device.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import (
    RoleKeys,
    add_firmware,
    bins_for,
    delegate,
    init_repository,
    revoke_release,
)
from signer.errors import SignerError
from signer.inspect import verify_repository
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.tuf_mirror import InMemoryMirror

INFO = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=("pump-x100",))
PATH = "pump-x100/pump-fw-2.4.0.bin"
SBOM_PATH = "pump-x100/pump-fw-2.4.0.sbom.json"

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


def role_json(repo: Path, role: str) -> Metadata[Any]:
    return Metadata.from_bytes((repo / "metadata" / f"{role}.json").read_bytes())


def engineers(people: dict[str, Signer], *names: str, threshold: int = 2) -> RoleKeys:
    return RoleKeys([people[n].public_key for n in names], threshold)


# --- init -------------------------------------------------------------------------


def test_init_over_an_existing_repository_refused(
    repo: Path, people: dict[str, Signer], now: datetime, unchanged: Unchanged
) -> None:
    """R5/R47: a second init would silently replace the root devices trust."""
    fresh = OfflineRepository(repo, now=now, signers=[people["officer3"]], create=True)
    with unchanged(repo), pytest.raises(SignerError, match="already holds a repository"):
        init_repository(
            fresh,
            root=engineers(people, "officer3", threshold=1),
            targets=engineers(people, "manager2", threshold=1),
            snapshot=people["snapshot"].public_key,
            timestamp=people["timestamp"].public_key,
        )


# --- delegate -----------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["pump-x100/", "pump-x100/beta/", "pump-x100/beta"])
def test_delegate_overlapping_prefix_refused(
    line: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged, prefix: str
) -> None:
    """Two product lines must never both own a path (TUF arbitrary software)."""
    with unchanged(line), pytest.raises(SignerError, match="overlaps product line 'pump-x100'"):
        delegate(
            open_repo(line, "manager1"),
            name="pump-beta",
            path_prefix=prefix,
            keys=engineers(people, "carol", threshold=1),
        )


def test_delegate_a_lookalike_prefix_is_not_an_overlap(
    line: Path, open_repo: Opener, people: dict[str, Signer]
) -> None:
    """pump-x1000/ is a different directory from pump-x100/."""
    written = delegate(
        open_repo(line, "manager1"),
        name="pump-x1000",
        path_prefix="pump-x1000/",
        keys=engineers(people, "carol", threshold=1),
    )
    assert written == ["targets", "pump-x1000"]


def test_delegate_existing_name_refused(
    line: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """Role confusion: a second delegation of pump-x100 would replace its keys and paths."""
    with unchanged(line), pytest.raises(SignerError, match="'pump-x100' already exists"):
        delegate(
            open_repo(line, "manager1"),
            name="pump-x100",
            path_prefix="monitor-m20/",
            keys=engineers(people, "carol", threshold=1),
        )


@pytest.mark.parametrize(
    ("names", "threshold", "message"),
    [
        (("alice", "bob"), 3, "threshold 3 needs between 1 and 2 keys"),
        (("alice", "bob"), 0, "threshold 0 needs between 1 and 2 keys"),
        (("alice", "alice"), 2, "the same key is given twice"),
    ],
    ids=["threshold-above-keys", "threshold-zero", "one-person-twice-R9"],
)
def test_delegate_unreachable_or_fake_threshold_refused(
    repo: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    unchanged: Unchanged,
    names: tuple[str, ...],
    threshold: int,
    message: str,
) -> None:
    """R9 four eyes: a threshold no one can meet, or one person counted twice."""
    with unchanged(repo), pytest.raises(SignerError, match=message):
        delegate(
            open_repo(repo, "manager1"),
            name="pump-x100",
            path_prefix="pump-x100/",
            keys=engineers(people, *names, threshold=threshold),
        )


@pytest.mark.parametrize("top_level", ["officer1", "manager1", "snapshot", "timestamp"])
def test_delegate_to_a_key_root_lists_refused(
    repo: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged, top_level: str
) -> None:
    """R47 one key, one use: a product line needs its engineers' own keys."""
    with unchanged(repo), pytest.raises(SignerError, match="R47: one key, one use"):
        delegate(
            open_repo(repo, "manager1"),
            name="pump-x100",
            path_prefix="pump-x100/",
            keys=engineers(people, "alice", top_level),
        )


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("*", "may use only letters"),
        ("pump*", "may use only letters"),
        ("../pump-x100", "could escape"),
        ("/pump-x100", "is absolute"),
        ("", "must be a non-empty string"),
    ],
)
def test_delegate_prefix_that_is_not_one_safe_directory_refused(
    repo: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    unchanged: Unchanged,
    prefix: str,
    message: str,
) -> None:
    """A product line given ``*`` or ``pump*`` could sign every model's firmware."""
    with unchanged(repo), pytest.raises(SignerError, match=message):
        delegate(
            open_repo(repo, "manager1"),
            name="pump-x100",
            path_prefix=prefix,
            keys=engineers(people, "alice", "bob"),
        )


# --- add ------------------------------------------------------------------------------


def test_add_to_a_path_no_product_line_owns_refused(
    line: Path, open_repo: Opener, image: Path, unchanged: Unchanged
) -> None:
    """TUF arbitrary software: an image no product line is delegated is never signed."""
    monitor = FirmwareInfo(version="1.0.0", security_version=1, hardware_models=("monitor-m20",))
    with unchanged(line), pytest.raises(SignerError, match="no product line is delegated"):
        add_firmware(open_repo(line, "alice"), image=image, name="monitor-fw", info=monitor)


def test_add_existing_target_path_refused_releases_are_immutable(
    line: Path, open_repo: Opener, image: Path, unchanged: Unchanged
) -> None:
    """A signed release never changes: a new image needs a new version."""
    add_firmware(open_repo(line, "alice", "bob"), image=image, name="pump-fw", info=INFO)
    image.write_bytes(b"a different image under the same name")
    with unchanged(line), pytest.raises(SignerError, match="already signed in pump-x100"):
        add_firmware(open_repo(line, "alice", "bob"), image=image, name="pump-fw", info=INFO)


@pytest.mark.parametrize(
    ("target_path", "message"),
    [
        ("pump-x1000/pump-fw.bin", "no product line is delegated"),
        ("pump-x100/beta/pump-fw.bin", "no product line is delegated"),
        ("pump-fw.bin", "no product line is delegated"),
        ("pump-x100/../monitor-m20/pump-fw.bin", "could escape"),
    ],
    ids=["lookalike-prefix", "subdirectory", "top-level", "traversal"],
)
def test_add_outside_the_delegation_via_target_path_refused(
    line: Path,
    open_repo: Opener,
    image: Path,
    unchanged: Unchanged,
    target_path: str,
    message: str,
) -> None:
    """``--target-path`` cannot place an image where pump-x100 is not delegated.

    ``pump-x100/*`` matches one path segment in TUF (unlike ``fnmatch``), so
    a subdirectory is outside it too.
    """
    with unchanged(line), pytest.raises(SignerError, match=message):
        add_firmware(
            open_repo(line, "alice"), image=image, name="x", info=INFO, target_path=target_path
        )


def test_add_records_length_hash_custom_fields_and_sbom(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    """R13/R15/R45: length, hash, firmware fields and the SBOM's hash are signed."""
    sbom = tmp_path / "sbom.json"
    sbom.write_bytes(b'{"spdxVersion": "SPDX-2.3"}')
    add_firmware(open_repo(line), image=image, name="pump-fw", info=INFO, sbom=sbom)
    targets = role_json(line, "pump-x100").signed.targets
    assert set(targets) == {PATH, SBOM_PATH}
    assert targets[PATH].length == image.stat().st_size
    recorded = FirmwareInfo.from_target(targets[PATH])
    assert recorded.sbom is not None
    assert recorded.sbom.path == SBOM_PATH
    assert recorded.sbom.sha256 == targets[SBOM_PATH].hashes["sha256"]


# --- revoke a release (R56/R57) ----------------------------------------------------------


def _device_sees(repo: Path, people: dict[str, Signer], now: datetime, workdir: Path) -> set[str]:
    """Which of the release's paths a fresh device's stock ngclient finds."""
    mirror = InMemoryMirror()
    mirror.publish(
        repo, snapshot_signer=people["snapshot"], timestamp_signer=people["timestamp"], now=now
    )
    updater = mirror.updater((repo / "metadata" / "1.root.json").read_bytes(), workdir)
    updater.refresh()
    return {path for path in (PATH, SBOM_PATH) if updater.get_targetinfo(path) is not None}


@pytest.mark.parametrize("bins", [None, 3], ids=["plain", "hashed-bins"])
def test_revoke_release_removes_target_and_sbom_and_ngclient_no_longer_finds_it(
    repo: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    now: datetime,
    image: Path,
    tmp_path: Path,
    bins: int | None,
) -> None:
    """R56/R57: a vulnerable release is withdrawn and devices stop finding it."""
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=engineers(people, "alice", "bob"),
        bin_bits=bins,
    )
    sbom = tmp_path / "sbom.json"
    sbom.write_bytes(b'{"spdxVersion": "SPDX-2.3"}')
    add_firmware(open_repo(repo), image=image, name="pump-fw", info=INFO, sbom=sbom)
    sign_roles(open_repo(repo, "alice", "bob"))
    assert _device_sees(repo, people, now, tmp_path / "before") == {PATH, SBOM_PATH}

    session = open_repo(repo, "alice", "bob")
    roles = {session.leaf_role_for(PATH), session.leaf_role_for(SBOM_PATH)}
    if bins is not None:
        roles.add("pump-x100")  # the line's own list of current releases loses it too

    written = revoke_release(session, path=PATH)

    assert set(written) == roles
    for role in roles:
        signed = role_json(repo, role).signed
        assert signed.targets == {}
        assert signed.version == 2
    assert verify_repository(repo, now=now).ok
    assert _device_sees(repo, people, now, tmp_path / "after") == set()


def test_revoke_release_of_a_path_not_signed_refused(
    line: Path, open_repo: Opener, unchanged: Unchanged
) -> None:
    """R56/R57: a typo in the path to revoke must not pass as done."""
    with unchanged(line), pytest.raises(SignerError, match="is not a signed target of pump-x100"):
        revoke_release(open_repo(line, "alice", "bob"), path=PATH)


def test_revoked_release_needs_the_line_threshold_before_devices_see_it(
    line: Path, open_repo: Opener, people: dict[str, Signer], now: datetime, image: Path
) -> None:
    """R9: withdrawing a release is a change of the line and needs its four eyes."""
    add_firmware(open_repo(line, "alice", "bob"), image=image, name="pump-fw", info=INFO)
    revoke_release(open_repo(line, "alice"), path=PATH)
    report = verify_repository(line, now=now)
    assert any("pump-x100" in f and "signature-threshold" in f for f in report.failures)
    sign_roles(open_repo(line, "bob"))
    assert verify_repository(line, now=now).ok


# --- hashed bins -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("releases", "bits"), [(1, 1), (10, 1), (1_000, 6), (10_000, 8), (100_000, 11), (10**9, 14)]
)
def test_bins_for_spreads_releases_and_stays_bounded(releases: int, bits: int) -> None:
    """TAP 15 hashed bins: about 3 log2(N) releases per bin, never beyond 2**14 bins."""
    assert bins_for(releases) == bits


def test_bins_for_refuses_no_releases() -> None:
    """A line expecting no release needs no bins."""
    with pytest.raises(SignerError, match="at least 1"):
        bins_for(0)


def test_delegate_with_bins_creates_every_bin_with_the_line_keys(
    repo: Path, open_repo: Opener, people: dict[str, Signer]
) -> None:
    """TAP 15: every bin exists and is signed by the line's keys and threshold (R9)."""
    written = delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=engineers(people, "alice", "bob"),
        bin_bits=2,
    )
    bins = [f"pump-x100-bins-{i}" for i in range(4)]
    assert written == ["targets", "pump-x100", *bins]
    succinct = role_json(repo, "pump-x100").signed.delegations.succinct_roles
    assert succinct.threshold == 2
    assert set(succinct.keyids) == {
        people["alice"].public_key.keyid,
        people["bob"].public_key.keyid,
    }


# --- the current releases a line with bins lists (repo_metadata/frontier.py) ---------------


@pytest.fixture
def binned(repo: Path, open_repo: Opener, people: dict[str, Signer]) -> Path:
    """``repo`` with pump-x100 in 8 hashed bins, alice and bob 2 of 2."""
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=engineers(people, "alice", "bob"),
        bin_bits=3,
    )
    sign_roles(open_repo(repo, "alice", "bob"))
    return repo


def _release(version: str, **fields: Any) -> FirmwareInfo:
    return FirmwareInfo(
        version=version, security_version=3, hardware_models=("pump-x100",), **fields
    )


def test_withdrawing_the_current_release_makes_the_one_it_superseded_current_again(
    binned: Path, open_repo: Opener, image: Path, now: datetime
) -> None:
    """R56/R57: after 2.5.0 is withdrawn, devices must find 2.4.0 again (it was only in a bin)."""
    session = open_repo(binned, "alice", "bob")
    add_firmware(session, image=image, name="pump-fw", info=_release("2.4.0"))
    add_firmware(session, image=image, name="pump-fw", info=_release("2.5.0"))
    newest = "pump-x100/pump-fw-2.5.0.bin"
    assert set(role_json(binned, "pump-x100").signed.targets) == {newest}

    revoke_release(open_repo(binned, "alice", "bob"), path=newest)

    assert set(role_json(binned, "pump-x100").signed.targets) == {PATH}
    assert verify_repository(binned, now=now).ok


def test_a_line_list_that_leaves_out_a_new_release_is_refused(
    binned: Path, open_repo: Opener, image: Path, unchanged: Unchanged
) -> None:
    """current-release-missing: a stale list would hide a security fix from every device."""
    add_firmware(open_repo(binned, "alice", "bob"), image=image, name="pump-fw", info=INFO)
    session = open_repo(binned, "alice", "bob")
    with session.edit_targets("pump-x100") as signed:
        signed.targets.clear()
    with unchanged(binned), pytest.raises(SignerError, match=r"rule: current-release-"):
        session.commit()


def test_verify_reports_a_line_list_edited_by_hand(
    binned: Path, open_repo: Opener, image: Path, people: dict[str, Signer], now: datetime
) -> None:
    """The full check reads every bin: a list re-signed without a current release fails."""
    add_firmware(open_repo(binned, "alice", "bob"), image=image, name="pump-fw", info=INFO)
    file = binned / "metadata" / "pump-x100.json"
    md = Metadata.from_bytes(file.read_bytes())
    md.signed.targets.clear()
    md.signatures.clear()
    for name in ("alice", "bob"):
        md.sign(people[name], append=True)
    file.write_bytes(md.to_bytes())
    report = verify_repository(binned, now=now)
    stale = [f for f in report.failures if "[rule: current-release-missing]" in f]
    assert stale, report.failures
    assert "restore it as fwsign signed it" in stale[0]


def test_verify_reports_a_line_list_that_keeps_a_superseded_release(
    binned: Path, open_repo: Opener, image: Path, people: dict[str, Signer], now: datetime
) -> None:
    """The full check (Completeness.WHOLE): the list is exactly the current releases.

    An upload only checks that each copy matches its bin and nothing current
    is missing; ``fwsign verify`` reads every bin and also refuses a list
    that still offers a release a newer one supersedes.
    """
    session = open_repo(binned, "alice", "bob")
    add_firmware(session, image=image, name="pump-fw", info=_release("2.4.0"))
    add_firmware(session, image=image, name="pump-fw", info=_release("2.5.0"))
    file = binned / "metadata" / "pump-x100.json"
    md = Metadata.from_bytes(file.read_bytes())
    bin_name = open_repo(binned).leaf_role_for(PATH)
    md.signed.targets[PATH] = role_json(binned, bin_name).signed.targets[PATH]
    md.signatures.clear()
    for name in ("alice", "bob"):
        md.sign(people[name], append=True)
    file.write_bytes(md.to_bytes())

    report = verify_repository(binned, now=now)

    extra = [f for f in report.failures if "[rule: current-release-copy]" in f]
    assert extra, report.failures
    assert PATH in extra[0]
