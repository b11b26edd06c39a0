"""What the signer keeps of what it signed: ``N.<role>.json`` (TUF rollback).

Every role ``commit()`` writes with a signature is also written as its kept
version; root keeps its whole chain, every other role its newest signed
version only (a product line with hashed bins has thousands of roles), the
older one removed once the new one is durable. A later sign or edit is
checked against it; ``status``, ``verify`` and ``publish`` read each role's
current file and root's chain only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path

import pytest
from securesystemslib.signer import Signer

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate
from signer.errors import SignerError
from signer.inspect import status, verify_repository
from signer.keyops import rotate
from signer.publish import PublishError, check_ready, local_roles
from signer.repository import OfflineRepository
from signer.signing import sign_roles

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


def kept(repo: Path, role: str) -> list[int]:
    """The versions of ``role`` kept in the metadata directory, read from the file names."""
    files = (repo / "metadata").glob(f"*.{role}.json")
    return sorted(int(file.name.split(".", 1)[0]) for file in files)


def current(repo: Path, role: str) -> bytes:
    return (repo / "metadata" / f"{role}.json").read_bytes()


def add(repo: OfflineRepository, image: Path, tmp_path: Path, version: str) -> list[str]:
    """Add release ``version`` of pump-fw (an image of its own) to pump-x100."""
    file = tmp_path / f"pump-fw-{version}.bin"
    file.write_bytes(image.read_bytes() + version.encode())
    minor = int(version.split(".")[1])
    info = FirmwareInfo(version=version, security_version=minor, hardware_models=("pump-x100",))
    return add_firmware(repo, image=file, name="pump-fw", info=info)


def test_each_signed_version_is_kept_and_only_the_newest(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    """v1 is kept as alice signs it and again with bob's signature; v2 replaces it."""
    add(open_repo(line, "alice"), image, tmp_path, "2.4.0")
    assert kept(line, "pump-x100") == [1]
    assert (line / "metadata" / "1.pump-x100.json").read_bytes() == current(line, "pump-x100")
    sign_roles(open_repo(line, "bob"))
    assert (line / "metadata" / "1.pump-x100.json").read_bytes() == current(line, "pump-x100")
    add(open_repo(line, "alice"), image, tmp_path, "2.5.0")
    assert kept(line, "pump-x100") == [2]
    assert (line / "metadata" / "2.pump-x100.json").read_bytes() == current(line, "pump-x100")


def test_root_keeps_its_whole_chain(repo: Path, open_repo: Opener) -> None:
    """Devices walk root one version at a time: no root version is ever dropped."""
    officers = open_repo(repo, "officer1", "officer2")
    rotate(officers, role="targets", threshold=2)
    rotate(open_repo(repo, "officer1", "officer2"), role="targets", threshold=1)
    assert kept(repo, "root") == [1, 2, 3]


def test_an_unsigned_draft_is_not_kept_the_last_signed_version_stays(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    """A draft nobody signed is not what the signer signed: v1 stays kept until v2 is."""
    add(open_repo(line, "alice"), image, tmp_path, "2.4.0")
    add(open_repo(line), image, tmp_path, "2.5.0")
    assert kept(line, "pump-x100") == [1]
    sign_roles(open_repo(line, "alice"))
    assert kept(line, "pump-x100") == [2]


def test_hashed_bins_keep_one_version_each(
    repo: Path, open_repo: Opener, people: dict[str, Signer], image: Path, tmp_path: Path
) -> None:
    """Bounded cost: after two adds, each role has one kept version, the newest."""
    keys = RoleKeys([people["alice"].public_key], 1)
    session = open_repo(repo, "manager1", "alice")
    delegate(session, name="pump-x100", path_prefix="pump-x100/", keys=keys, bin_bits=2)
    add(open_repo(repo, "alice"), image, tmp_path, "2.4.0")
    add(open_repo(repo, "alice"), image, tmp_path, "2.5.0")
    assert kept(repo, "pump-x100") == [3]
    assert [len(kept(repo, f"pump-x100-bins-{n}")) for n in range(4)] == [1, 1, 1, 1]


def test_a_crash_before_the_older_copy_is_removed_leaves_two_and_the_next_write_drops_it(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path
) -> None:
    """Power-safe: the older kept file goes only after the new one is durable.

    A crash in between leaves both (made here by putting v1's copy back); the
    repository works as before and the next write of the role removes v1.
    """
    add(open_repo(line, "alice"), image, tmp_path, "2.4.0")
    older = (line / "metadata" / "1.pump-x100.json").read_bytes()
    add(open_repo(line, "alice"), image, tmp_path, "2.5.0")
    (line / "metadata" / "1.pump-x100.json").write_bytes(older)
    assert kept(line, "pump-x100") == [1, 2]
    assert [r.signed for r in sign_roles(open_repo(line, "bob"))] == [2]
    assert kept(line, "pump-x100") == [2]


def test_rollback_attack_a_crash_between_the_kept_copy_and_the_role_file_fails_safe(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path, unchanged: Unchanged
) -> None:
    """The kept copy is renamed in first: a crash before the role file leaves the role behind
    its kept version, which is refused as rewound (never a signed version left unkept)."""
    add(open_repo(line, "alice"), image, tmp_path, "2.4.0")
    v1 = current(line, "pump-x100")
    add(open_repo(line, "alice"), image, tmp_path, "2.5.0")
    (line / "metadata" / "pump-x100.json").write_bytes(v1)
    (line / "metadata" / "1.pump-x100.json").write_bytes(v1)
    with (
        unchanged(line),
        pytest.raises(SignerError, match=r"pump-x100\.json was rewound, restore the newest"),
    ):
        add(open_repo(line, "alice"), image, tmp_path, "2.6.0")


def test_status_verify_and_publish_read_current_files_not_kept_ones(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path, now: datetime
) -> None:
    """Kept files are not roles: each role is listed once, at its current version."""
    add(open_repo(line, "alice", "bob"), image, tmp_path, "2.4.0")
    add(open_repo(line, "alice", "bob"), image, tmp_path, "2.5.0")
    assert kept(line, "pump-x100") == [2]
    expected = {"root": 1, "targets": 2, "pump-x100": 2}
    assert {s.role: s.version for s in status(open_repo(line))} == expected
    assert {name: role.version for name, role in local_roles(line).items()} == expected
    report = verify_repository(line, now=now)
    assert report.ok, report.failures
    assert report.checked == ["root", "targets", "pump-x100"]


def test_rollback_attack_status_and_publish_name_a_role_rewound_to_a_fully_signed_version(
    line: Path, open_repo: Opener, image: Path, tmp_path: Path, now: datetime
) -> None:
    """TUF rollback: pump-x100.json put back to v1, which both engineers signed, hides the
    fix in v2. Nothing asks for a signature, so status and publish must say it."""
    add(open_repo(line, "alice", "bob"), image, tmp_path, "2.4.0")
    v1 = current(line, "pump-x100")
    add(open_repo(line, "alice", "bob"), image, tmp_path, "2.5.0")
    (line / "metadata" / "pump-x100.json").write_bytes(v1)
    problems = {s.role: s.problems for s in status(open_repo(line))}
    assert problems["pump-x100"] == (
        "rewound: this repository signed v2 and keeps it (2.pump-x100.json); restore it before"
        " signing or publishing (TUF rollback)",
    )
    assert problems["root"] == problems["targets"] == ()
    with pytest.raises(PublishError, match="pump-x100 was rewound behind v2, which this rep"):
        check_ready(line, ["pump-x100"], now=now)


def test_a_role_name_that_reads_as_a_kept_version_is_refused(
    repo: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """'1.pump-x100.json' is pump-x100's kept v1: a role of that name would collide with it."""
    keys = RoleKeys([people["alice"].public_key], 1)
    with unchanged(repo), pytest.raises(SignerError, match="reads as a kept version"):
        delegate(open_repo(repo, "manager1"), name="1.pump-x100", path_prefix="x/", keys=keys)
