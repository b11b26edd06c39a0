"""The whole offline story, checked the way a device checks it (R9, R13).

Two release engineers, on two machines, sign the same product-line role in
turn (the directory travels between them); the result must be accepted by
``fwsign verify`` and by a stock ``tuf.ngclient`` updater.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from securesystemslib.signer import Signer
from tuf.api.exceptions import UnsignedMetadataError

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate
from signer.inspect import verify_repository
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.tuf_mirror import InMemoryMirror

IMAGE = b"\x7fFW" + bytes(range(256)) * 64
INFO = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=("pump-x100",))
PATH = "pump-x100/pump-fw-2.4.0.bin"

Opener = Callable[..., OfflineRepository]


def _prepare_release(
    repo: Path, open_repo: Opener, people: dict[str, Signer], bins: int | None
) -> None:
    engineers = RoleKeys([people["alice"].public_key, people["bob"].public_key], 2)
    delegate(
        open_repo(repo, "manager1"),
        name="pump-x100",
        path_prefix="pump-x100/",
        keys=engineers,
        bin_bits=bins,
    )
    image = repo.parent / "pump-fw.bin"
    image.write_bytes(IMAGE)
    add_firmware(open_repo(repo), image=image, name="pump-fw", info=INFO)


def _travel(repo: Path, to: Path) -> Path:
    """The directory moves to another engineer's machine (git, USB stick)."""
    shutil.copytree(repo, to)
    return to


@pytest.mark.parametrize("bins", [None, 3], ids=["plain", "hashed-bins"])
def test_two_engineers_sign_in_turn_and_ngclient_accepts_the_release(
    repo: Path,
    open_repo: Opener,
    people: dict[str, Signer],
    now: datetime,
    tmp_path: Path,
    bins: int | None,
) -> None:
    """R9 four eyes: a release two engineers signed on two machines installs."""
    _prepare_release(repo, open_repo, people, bins)
    alice_copy = _travel(repo, tmp_path / "alice")
    first = sign_roles(open_repo(alice_copy, "alice"))
    assert all(result.signed == 1 and result.threshold == 2 for result in first)
    bob_copy = _travel(alice_copy, tmp_path / "bob")
    second = sign_roles(open_repo(bob_copy, "bob"))
    assert all(result.signed == 2 for result in second)
    assert {r.role for r in first} == {r.role for r in second}

    report = verify_repository(bob_copy, now=now)
    assert report.ok, report.failures
    assert report.targets == 1

    mirror = InMemoryMirror()
    mirror.publish(
        bob_copy,
        snapshot_signer=people["snapshot"],
        timestamp_signer=people["timestamp"],
        now=now,
        images={PATH: IMAGE},
    )
    root = (bob_copy / "metadata" / "1.root.json").read_bytes()
    updater = mirror.updater(root, tmp_path / "device")
    updater.refresh()
    info = updater.get_targetinfo(PATH)
    assert info is not None
    assert FirmwareInfo.from_target(info) == INFO
    downloaded = Path(updater.download_target(info))
    assert downloaded.read_bytes() == IMAGE


def test_one_signature_is_not_enough_for_ngclient_four_eyes(
    repo: Path, open_repo: Opener, people: dict[str, Signer], now: datetime, tmp_path: Path
) -> None:
    """R9 / TUF threshold: a release signed by one engineer of two is refused."""
    _prepare_release(repo, open_repo, people, None)
    sign_roles(open_repo(repo, "alice"))
    report = verify_repository(repo, now=now)
    assert not report.ok
    assert any("pump-x100" in f and "signature-threshold" in f for f in report.failures)

    mirror = InMemoryMirror()
    mirror.publish(
        repo, snapshot_signer=people["snapshot"], timestamp_signer=people["timestamp"], now=now
    )
    updater = mirror.updater((repo / "metadata" / "1.root.json").read_bytes(), tmp_path / "dev")
    updater.refresh()
    with pytest.raises(UnsignedMetadataError):
        updater.get_targetinfo(PATH)
