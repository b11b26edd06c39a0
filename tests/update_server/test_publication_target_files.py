"""Target files: ``fwserver import --targets-dir`` and ``PUT /api/v1/targets/<path>`` (F1-F3).

The reported loss: a release signed offline before the import was published
without its firmware, then ``fwsign publish`` found nothing to publish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from werkzeug.test import TestResponse

from tests.update_server.repo_world import FakeOtp, World, repository_files
from update_server.cli import main
from update_server.config import ServerConfig
from update_server.models import AuditEntry, Role
from update_server.publication.bootstrap import ImportResult, import_repository
from update_server.publication.errors import RejectedError

PATH = "pump-x100/fw-2.4.0.bin"


@pytest.fixture
def world(app: Flask, config: ServerConfig, clock: object, tmp_path: Path) -> World:
    """The server, and an offline repository with 2.4.0 signed, not imported yet."""
    fresh = World(app, config, clock, tmp_path, FakeOtp())
    fresh.make_offline()
    return fresh


@pytest.fixture
def firmware(world: World) -> bytes:
    _path, data = world.add_release("2.4.0")
    return data


def _targets_dir(world: World, data: bytes, name: str = PATH) -> Path:
    directory = world.tmp / "build"
    (directory / name).parent.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return directory


def _import(
    world: World, *, targets_dir: Path | None = None, allow_missing_files: bool = False
) -> ImportResult:
    return import_repository(
        world.config,
        world.services.signer,
        world.offline,
        world.now,
        targets_dir=targets_dir,
        allow_missing_files=allow_missing_files,
    )


def _device_gets(world: World, data: bytes) -> None:
    updater = world.updater(world.tmp / "device")
    updater.refresh()
    info = updater.get_targetinfo(PATH)
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == data


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.exists() else []


def _nothing_published(world: World) -> None:
    assert repository_files(world.repository) == {}
    assert list(_entries(world.config.staging_dir)) == []


def test_import_refuses_signed_targets_without_files(world: World, firmware: bytes) -> None:
    with pytest.raises(RejectedError) as refused:
        _import(world)
    assert refused.value.rule == "target-missing"
    assert f"1 signed target(s) have no file (no --targets-dir given): {PATH}" in str(refused.value)
    assert "--allow-missing-files" in str(refused.value)
    _nothing_published(world)


def test_import_with_the_targets_dir_publishes_the_files_too(world: World, firmware: bytes) -> None:
    result = _import(world, targets_dir=_targets_dir(world, firmware))
    assert result.targets_stored == (PATH,)
    assert result.targets_without_files == ()
    digest = hashlib.sha256(firmware).hexdigest()
    assert repository_files(world.repository)[f"targets/pump-x100/{digest}.fw-2.4.0.bin"] == (
        firmware
    )
    assert list(_entries(world.config.staging_dir)) == []
    _device_gets(world, firmware)


def test_import_finds_a_file_by_its_name_as_fwsign_add_puts_it(
    world: World, firmware: bytes
) -> None:
    _import(world, targets_dir=_targets_dir(world, firmware, name="fw-2.4.0.bin"))
    _device_gets(world, firmware)


@pytest.mark.parametrize(
    ("change", "rule"),
    [(lambda data: data[:-1] + b"\x00", "wrong-hash"), (lambda data: data[:-1], "wrong-length"),
     (lambda data: data + b"!", "length-exceeded")],
)  # fmt: skip
def test_import_refuses_a_file_that_is_not_the_signed_one(
    world: World, firmware: bytes, change: Callable[[bytes], bytes], rule: str
) -> None:
    """TUF arbitrary software / endless data: the import checks every byte it publishes."""
    tampered = change(firmware)
    with pytest.raises(RejectedError) as refused:
        _import(world, targets_dir=_targets_dir(world, tampered))
    assert refused.value.rule == rule
    assert f"is not the file signed as {PATH}" in refused.value.message
    _nothing_published(world)


def test_fwserver_import_takes_the_targets_dir(world: World, firmware: bytes) -> None:
    data_dir = str(world.config.data_dir)
    refused = CliRunner().invoke(main, ["import", "--data-dir", data_dir, str(world.offline)])
    assert refused.exit_code == 1
    assert "nothing was published" in refused.stderr
    imported = CliRunner().invoke(
        main,
        ["import", "--data-dir", data_dir, "--targets-dir", str(_targets_dir(world, firmware)),
         str(world.offline)],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    assert "published the file of 1 signed target(s)" in imported.stdout
    _device_gets(world, firmware)


def test_fwserver_import_may_be_told_to_publish_without_the_files(
    world: World, firmware: bytes
) -> None:
    data_dir = str(world.config.data_dir)
    result = CliRunner().invoke(
        main, ["import", "--data-dir", data_dir, "--allow-missing-files", str(world.offline)]
    )
    assert result.exit_code == 0, result.output
    assert "fwserver: warning: 1 signed target(s) have no file on the server" in result.stderr
    assert f"  {PATH}" in result.stderr


# --- PUT /api/v1/targets/<path> -------------------------------------------------------


@pytest.fixture
def without_file(world: World, firmware: bytes) -> bytes:
    """Imported with ``--allow-missing-files``: 2.4.0 is published, its file is not."""
    _import(world, allow_missing_files=True)
    return firmware


def _put(world: World, data: bytes, path: str = PATH, who: str = "alice") -> TestResponse:
    return world.client.put(
        f"/api/v1/targets/{path}",
        data=data,
        headers={
            **world.as_(who, Role.RELEASE_ENGINEER),
            "Content-Type": "application/octet-stream",
        },
    )


def _audited(world: World) -> list[tuple[str, str, str]]:
    with world.services.sessions() as db:
        return [(row.action, row.object, row.outcome) for row in db.query(AuditEntry)]


def test_the_missing_file_of_a_published_target_is_uploaded_once(
    world: World, without_file: bytes
) -> None:
    answer = _put(world, without_file)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json() == {
        "path": PATH,
        "length": len(without_file),
        "sha256": hashlib.sha256(without_file).hexdigest(),
    }
    _device_gets(world, without_file)
    again = _put(world, without_file)
    assert again.status_code == 409
    assert again.get_json()["rule"] == "target-present"
    assert ("release.upload_target", f"target:{PATH}", "success") in _audited(world)
    assert list(_entries(world.config.incoming_dir)) == []


@pytest.mark.parametrize(
    ("change", "status", "rule"),
    [(lambda data: data[:-1] + b"\x00", 422, "wrong-hash"),
     (lambda data: data[:-1], 422, "wrong-length"),
     (lambda data: data + b"!", 413, "length-exceeded")],
)  # fmt: skip
def test_bytes_that_are_not_the_signed_ones_are_refused_and_kept_nowhere(
    world: World, without_file: bytes, change: Callable[[bytes], bytes], status: int, rule: str
) -> None:
    """TUF arbitrary software and endless data attacks on the late upload."""
    before = repository_files(world.repository)
    answer = _put(world, change(without_file))
    assert answer.status_code == status
    assert answer.get_json()["rule"] == rule
    assert repository_files(world.repository) == before
    assert list(_entries(world.config.incoming_dir)) == []
    assert ("release.upload_target", f"target:{PATH}", "refused") in _audited(world)


def test_a_target_the_published_metadata_does_not_list_is_not_found(
    world: World, without_file: bytes
) -> None:
    answer = _put(world, without_file, path="pump-x100/fw-9.9.9.bin")
    assert answer.status_code == 404
    assert answer.get_json()["rule"] == "unknown-target"


def test_only_uploaders_may_upload_a_target_file(world: World, without_file: bytes) -> None:
    """R6 least privilege: the same people as for a release's files."""
    auditor = world.login("audrey", Role.AUDITOR)
    answer = world.client.put(f"/api/v1/targets/{PATH}", data=without_file, headers=auditor)
    assert answer.status_code == 403
    anonymous = world.client.put(f"/api/v1/targets/{PATH}", data=without_file)
    assert anonymous.status_code == 401
