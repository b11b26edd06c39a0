"""``fwsign publish``, the local side: which roles go, are they ready, where are the files."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import Signer

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import add_firmware
from signer.publish import (
    ExpectedTarget,
    LocalRole,
    PublishError,
    ServerSession,
    check_ready,
    find_target_files,
    local_roles,
    roles_to_publish,
)
from signer.repository import OfflineRepository
from signer.signing import sign_roles

INFO = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=("pump-x100",))
TARGET = "pump-x100/pump-fw-2.4.0.bin"
Opener = Callable[..., OfflineRepository]


def added_by_alice(line: Path, open_repo: Opener, image: Path) -> Path:
    add_firmware(open_repo(line, "alice"), image=image, name="pump-fw", info=INFO)
    return line


def signed_release(line: Path, open_repo: Opener, image: Path) -> Path:
    """pump-x100 with firmware 2.4.0 added by alice and signed by bob (2 of 2)."""
    added_by_alice(line, open_repo, image)
    sign_roles(open_repo(line, "bob"))
    return line


def _roles(**versions: int) -> dict[str, LocalRole]:
    return {
        name: LocalRole(name, version, Path(f"{name}.json")) for name, version in versions.items()
    }


def test_local_roles_are_every_role_file_with_its_version(line: Path) -> None:
    roles = local_roles(line)
    assert {name: role.version for name, role in roles.items()} == {
        "root": 1,
        "targets": 2,
        "pump-x100": 1,
    }
    assert roles["pump-x100"].path == line / "metadata" / "pump-x100.json"


def test_a_directory_without_root_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="not a firmware repository"):
        local_roles(tmp_path)


def test_only_roles_newer_than_the_servers_are_sent() -> None:
    local = _roles(root=1, targets=2, **{"pump-x100": 3, "pump-y": 1})
    published = {"root": 1, "targets": 2, "pump-x100": 2}
    assert roles_to_publish(local, published) == ["pump-x100", "pump-y"]


def test_trust_flows_down_root_then_targets_then_delegations() -> None:
    local = _roles(root=2, targets=3, **{"a-line": 2})
    assert roles_to_publish(local, {"root": 1, "targets": 2, "a-line": 1}) == [
        "root",
        "targets",
        "a-line",
    ]


def test_root_goes_one_version_at_a_time() -> None:
    with pytest.raises(PublishError, match="each root version in turn"):
        roles_to_publish(_roles(root=3), {"root": 1})


def test_roles_can_be_chosen_and_unknown_ones_are_named() -> None:
    local = _roles(root=1, targets=3, **{"pump-x100": 3})
    published = {"root": 1, "targets": 2, "pump-x100": 2}
    assert roles_to_publish(local, published, only=["pump-x100"]) == ["pump-x100"]
    with pytest.raises(PublishError, match="no such role in the repository: nope"):
        roles_to_publish(local, published, only=["nope"])


def test_a_role_short_of_its_threshold_is_refused_before_any_upload(
    line: Path, open_repo: Opener, image: Path, now: datetime
) -> None:
    """R9 four eyes: one engineer's signature is not a release; say so locally."""
    added_by_alice(line, open_repo, image)
    # Named after the role and the delegation whose threshold it misses (not "targets's").
    expected = r"pump-x100 needs 1 more signature\(s\) \(threshold 2 of its delegation in targets\)"
    with pytest.raises(PublishError, match=expected):
        check_ready(line, ["pump-x100"], now=now)


def test_a_role_signed_by_both_engineers_is_ready(
    line: Path, open_repo: Opener, image: Path, now: datetime
) -> None:
    check_ready(signed_release(line, open_repo, image), ["pump-x100"], now=now)


def test_an_expired_role_is_refused_before_any_upload(
    line: Path, open_repo: Opener, image: Path, now: datetime
) -> None:
    signed_release(line, open_repo, image)
    with pytest.raises(PublishError, match="pump-x100 expired"):
        check_ready(line, ["pump-x100"], now=now + timedelta(days=3650))


def test_firmware_files_are_found_under_their_target_paths(tmp_path: Path) -> None:
    (tmp_path / "pump-x100").mkdir()
    (tmp_path / TARGET).write_bytes(b"firmware")
    expected = [ExpectedTarget(TARGET, 8, "00" * 32)]
    assert find_target_files(expected, tmp_path) == [(expected[0], tmp_path / TARGET)]


def test_missing_or_wrong_firmware_files_are_all_named(tmp_path: Path) -> None:
    (tmp_path / "pump-x100").mkdir()
    (tmp_path / TARGET).write_bytes(b"firmware")
    expected = [ExpectedTarget(TARGET, 9, "00" * 32), ExpectedTarget("pump-x100/gone.bin", 1, "")]
    with pytest.raises(PublishError) as caught:
        find_target_files(expected, tmp_path)
    assert "8 bytes, the signed target has 9" in str(caught.value)
    assert "pump-x100/gone.bin: not found" in str(caught.value)


def test_a_release_with_firmware_needs_a_targets_dir() -> None:
    with pytest.raises(PublishError, match="give --targets-dir"):
        find_target_files([ExpectedTarget(TARGET, 1, "")], None)
    assert find_target_files([], None) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "ftp://x", "127.0.0.1:8443", "https://"])
def test_only_https_urls_are_accepted(url: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    with pytest.raises(PublishError, match="must be an https:// URL"):
        ServerSession(url, ca=ca)


def test_the_ca_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="no such file"):
        ServerSession("https://127.0.0.1:8443", ca=tmp_path / "missing.pem")


def test_what_is_sent_is_the_signed_file_as_is(
    line: Path, open_repo: Opener, image: Path, people: dict[str, Signer]
) -> None:
    signed_release(line, open_repo, image)
    role = local_roles(line)["pump-x100"]
    document = json.loads(role.path.read_bytes())
    assert len(document["signatures"]) == 2
    assert TARGET in document["signed"]["targets"]
