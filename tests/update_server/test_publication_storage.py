"""A full disk under an upload, a publish and an audit write: 507 or 503, never 500.

The disk is filled the way a process meets it, with a file-size limit
(``RLIMIT_FSIZE``) on this process, which runs the app: past it, a write
fails with ``EFBIG`` as it would with ``ENOSPC`` on a full file system.
Refused writes leave nothing behind (no staged bytes, the published
repository as it was), and the same request succeeds once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.clocks import FakeClock
from tests.update_server.conftest import FAST_KDF
from tests.update_server.people import enrolled_user, login
from tests.update_server.repo_world import World, image_bytes, repository_files
from update_server.access import public
from update_server.app import create_app
from update_server.keys import signer_loader
from update_server.setup import init_data_dir

MIB = 1024**2
SERVER_TROUBLE = (503, 507)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """No file of this process grows past ``limit`` bytes in the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _largest_file(directory: Path) -> int:
    return max(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _problem(answer: object, statuses: tuple[int, ...]) -> dict[str, object]:
    status, mimetype = answer.status_code, answer.mimetype  # type: ignore[attr-defined]
    assert status in statuses, answer.get_json()  # type: ignore[attr-defined]
    assert mimetype == "application/problem+json"
    body: dict[str, object] = answer.get_json()  # type: ignore[attr-defined]
    return body


def test_a_full_disk_during_an_upload_is_507_and_no_staged_bytes_remain(world: World) -> None:
    limit = _largest_file(world.config.data_dir) + MIB  # room for the database, not the firmware
    path, data = world.add_release("2.4.0", data=image_bytes("big", limit + MIB))
    release = world.upload("alice", {"pump-x100": world.role_json("pump-x100")}).get_json()["id"]
    with file_size_limit(limit):
        answer = world.put("alice", release, path, data)
    body = _problem(answer, (507,))
    assert body["rule"] == "storage-full"
    staging = world.config.staging_dir / release
    assert not staging.exists() or list(staging.iterdir()) == []
    assert world.put("alice", release, path, data).status_code == 201


def test_a_full_disk_during_a_publish_keeps_the_previous_version_served(world: World) -> None:
    release = world.release("alice", "2.4.0")
    before = repository_files(world.repository)
    with file_size_limit(1024):  # below a signed snapshot: the switch cannot be written
        _problem(world.publish("alice", release), SERVER_TROUBLE)
    assert repository_files(world.repository) == before
    assert (
        world.client.get("/metadata/timestamp.json").get_data()
        == (before["metadata/timestamp.json"])
    )
    assert world.publish("alice", release).status_code == 200


def test_a_full_disk_during_an_audit_write_refuses_the_login(
    tmp_path: Path, clock: FakeClock
) -> None:
    """SQLite in the data directory: the login's audit entry cannot be written."""
    config = init_data_dir(tmp_path / "data", kdf=FAST_KDF).config
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    client: FlaskClient = app.test_client()
    try:
        alice = enrolled_user(app, client, clock, "alice")
        code = alice.next_otp(clock)
        with file_size_limit(1024):
            _problem(login(client, "alice", alice.password, code), SERVER_TROUBLE)
        assert login(client, "alice", alice.password, code).status_code == 200
    finally:
        app.extensions["fw"].engine.dispose()


@pytest.mark.parametrize(
    ("error", "status"),
    [(errno.EROFS, 503), (errno.EACCES, 503), (errno.ENOSPC, 507), (errno.EDQUOT, 507)],
)
def test_a_disk_refusal_under_any_view_is_a_problem_never_a_500(
    app: Flask, client: FlaskClient, error: int, status: int
) -> None:
    """The boundary's net for writers without their own translation (a read-only directory)."""

    @public
    def write() -> str:
        raise OSError(error, os.strerror(error), "/srv/fw/repository/metadata/x.json")

    app.add_url_rule("/write", "write", write)
    response = client.get("/write")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert "/srv/fw" not in response.get_data(as_text=True)
