"""``PUT /api/v1/releases/<id>/targets/<path>``: firmware bytes checked while they stream.

Each threat: wrong hash, wrong length, more than signed (declared or
streamed without end), above the server's limit, a path that tries to leave
staging, someone else's release. Memory stays flat whatever the size.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import TestResponse

from tests.update_server.repo_world import Body, World
from update_server.models import AuditEntry
from update_server.publication.errors import TooLargeError
from update_server.publication.release import ExpectedTarget
from update_server.publication.renewal import RenewalThread
from update_server.publication.upload import CHUNK_BYTES, receive

BLOCK = bytes(range(256)) * 16


def _uploaded(
    world: World, version: str = "2.4.0", data: bytes | None = None
) -> tuple[str, str, bytes]:
    path, data = world.add_release(version, data=data)
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201
    return answer.get_json()["id"], path, data


def _put_stream(world: World, release: str, path: str, body: Body, **kw: Any) -> TestResponse:
    return world.client.put(
        f"/api/v1/releases/{release}/targets/{path}",
        input_stream=body,
        headers={**world.as_("alice"), "Content-Type": "application/octet-stream"},
        **kw,
    )


def _staging_is_clean(world: World, release: str) -> None:
    directory = world.config.staging_dir / release
    assert not directory.exists() or list(directory.iterdir()) == []


def _last_audit(world: World) -> tuple[str, str, str]:
    with world.services.sessions() as db:
        row = db.query(AuditEntry).order_by(AuditEntry.seq.desc()).first()
        assert row is not None
        return row.action, row.outcome, row.detail


def test_target_bytes_are_staged_under_their_hash(world: World) -> None:
    release, path, data = _uploaded(world)
    answer = world.put("alice", release, path, data)
    assert answer.status_code == 201
    digest = hashlib.sha256(data).hexdigest()
    assert answer.get_json() == {"path": path, "length": len(data), "sha256": digest}
    assert (world.config.staging_dir / release / digest).read_bytes() == data


def test_wrong_hash_is_refused_and_nothing_is_staged(world: World) -> None:
    """TUF arbitrary software attack: the right length, other bytes."""
    release, path, data = _uploaded(world)
    answer = world.put("alice", release, path, bytes(len(data)))
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "wrong-hash"
    _staging_is_clean(world, release)
    assert _last_audit(world)[:2] == ("release.upload_target", "refused")


def test_wrong_length_is_refused(world: World) -> None:
    release, path, data = _uploaded(world)
    answer = world.put("alice", release, path, data[:-1])
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "wrong-length"
    _staging_is_clean(world, release)


def test_more_bytes_declared_than_signed_is_refused_before_reading(world: World) -> None:
    release, path, data = _uploaded(world)
    body = Body(data, len(data) + 1)
    answer = _put_stream(world, release, path, body)
    assert answer.status_code == 413
    assert answer.get_json()["rule"] == "length-exceeded"
    assert body.read_bytes == 0
    _staging_is_clean(world, release)


def test_endless_data_is_cut_right_after_the_signed_length(world: World) -> None:
    """TUF endless data attack: a chunked body that never ends is stopped at once."""
    release, path, data = _uploaded(world)
    body = Body(data, None)
    answer = _put_stream(
        world,
        release,
        path,
        body,
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert answer.status_code == 413
    assert answer.get_json()["rule"] == "length-exceeded"
    assert len(data) < body.read_bytes <= len(data) + CHUNK_BYTES
    _staging_is_clean(world, release)


def test_a_target_above_the_servers_upload_limit_is_refused(world: World) -> None:
    release, path, data = _uploaded(world)
    world.services.config = world.config.with_changes(max_upload_bytes=len(data) - 1)
    body = Body(data, len(data))
    answer = _put_stream(world, release, path, body)
    assert answer.status_code == 413
    assert answer.get_json()["rule"] == "upload-too-large"
    assert body.read_bytes == 0


@pytest.mark.parametrize(
    "path",
    [
        "../../../../etc/passwd",
        "pump-x100/../../../server.json",
        "%2e%2e/%2e%2e/server.json",
        "pump-x100/..%2f..%2fserver.json",
        "pump-x100/fw-2.4.0.bin%00.txt",
        "pump-x100\\fw-2.4.0.bin",
    ],
)
def test_path_traversal_in_the_target_path_reaches_nothing(
    world: World, tmp_path: Path, path: str
) -> None:
    release, _path, data = _uploaded(world)
    before = sorted(p.as_posix() for p in tmp_path.rglob("*") if p.is_file())
    answer = world.put("alice", release, path, data)
    assert answer.status_code in (404, 422)
    assert sorted(p.as_posix() for p in tmp_path.rglob("*") if p.is_file()) == before


def test_a_target_not_in_the_release_is_refused(world: World) -> None:
    release, _path, data = _uploaded(world)
    answer = world.put("alice", release, "pump-x100/other.bin", data)
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "unexpected-target"


def test_someone_elses_release_cannot_receive_bytes(world: World) -> None:
    release, path, data = _uploaded(world)
    world.login("bob", "release_engineer")
    answer = world.put("bob", release, path, data)
    assert answer.status_code == 404
    _staging_is_clean(world, release)


def test_unknown_or_malformed_release_ids_are_not_found(world: World) -> None:
    for release in ("0" * 32, "../../etc", "x"):
        assert world.put("alice", release, "pump-x100/fw.bin", b"x").status_code == 404


def test_uploading_a_verified_target_again_is_fine(world: World) -> None:
    release, path, data = _uploaded(world)
    assert world.put("alice", release, path, data).status_code == 201
    assert world.put("alice", release, path, data).status_code == 201
    assert len(list((world.config.staging_dir / release).iterdir())) == 1


def test_a_large_upload_streams_in_flat_memory(world: World, tmp_path: Path) -> None:
    """64 MiB through the whole view: peak Python memory stays a few chunks."""
    size = 64 * 1024 * 1024
    data = Body(BLOCK, size).content()
    release, path, _ = _uploaded(world, data=data)
    del data
    tracemalloc.start()
    try:
        answer = _put_stream(world, release, path, Body(BLOCK, size))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 201, answer.get_json()
    assert peak < 8 * CHUNK_BYTES, f"peak {peak / 2**20:.1f} MiB for a 64 MiB upload"


def test_receive_stops_reading_at_the_first_byte_past_the_signed_length(tmp_path: Path) -> None:
    """The pure core, without Flask: not one chunk more than needed is read."""
    data = BLOCK * 1024
    target = ExpectedTarget(
        path="pump-x100/fw.bin",
        length=len(data) - 1,
        hashes={"sha256": hashlib.sha256(data[:-1]).hexdigest()},
    )
    body = Body(BLOCK, None)
    with pytest.raises(TooLargeError, match="signed bytes"):
        receive(body, target, directory=tmp_path / "staging", limit=10**9)
    assert body.read_bytes <= len(data) + CHUNK_BYTES
    assert list((tmp_path / "staging").iterdir()) == []


def test_staging_left_by_a_closed_release_is_swept(world: World) -> None:
    """A target upload racing a cancellation leaves a directory: the next tick removes it."""
    release, _path, data = _uploaded(world)
    kept, kept_path, kept_data = _uploaded(world, version="2.5.0")
    assert world.put("alice", kept, kept_path, kept_data).status_code == 201
    answer = world.client.delete(f"/api/v1/releases/{release}", headers=world.as_("alice"))
    assert answer.status_code == 204
    digest = hashlib.sha256(data).hexdigest()
    (world.config.staging_dir / release).mkdir()
    (world.config.staging_dir / release / digest).write_bytes(data)  # the racing upload
    (world.config.staging_dir / ("f" * 32)).mkdir()  # no such release at all

    RenewalThread(world.services).tick()

    assert sorted(p.name for p in world.config.staging_dir.iterdir()) == [kept]
