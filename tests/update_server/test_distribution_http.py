"""``GET /metadata/...`` and ``GET /targets/...``: caching, ranges, and nothing outside.

Public (devices have no account), with a strong content ETag, ``304`` for
``If-None-Match``, ``206``/``416`` for ranges, ``nosniff``, and names that
can never reach outside the repository directory.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from tests.update_server.repo_world import World


@pytest.fixture
def firmware(world: World) -> tuple[str, bytes]:
    """A published release: its consistent-snapshot URL and bytes."""
    release = world.release("alice", "2.4.0")
    assert world.publish("alice", release).status_code == 200
    data = (world.tmp / "pump-x100-2.4.0.bin").read_bytes()
    return f"/targets/pump-x100/{hashlib.sha256(data).hexdigest()}.fw-2.4.0.bin", data


def test_timestamp_is_served_with_a_content_etag_and_revalidation(world: World) -> None:
    response = world.client.get("/metadata/timestamp.json")
    assert response.status_code == 200
    data = response.get_data()
    assert data == (world.repository / "metadata" / "timestamp.json").read_bytes()
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_versioned_metadata_is_immutable(world: World) -> None:
    response = world.client.get("/metadata/1.root.json")
    assert response.status_code == 200
    assert "immutable" in response.headers["Cache-Control"]
    assert "max-age=31536000" in response.headers["Cache-Control"]


def test_a_matching_etag_gets_304_without_a_body(world: World) -> None:
    etag = world.client.get("/metadata/timestamp.json").headers["ETag"]
    again = world.client.get("/metadata/timestamp.json", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    other = world.client.get("/metadata/timestamp.json", headers={"If-None-Match": '"abc"'})
    assert other.status_code == 200


def test_a_new_timestamp_changes_the_etag(world: World) -> None:
    etag = world.client.get("/metadata/timestamp.json").headers["ETag"]
    release = world.release("alice", "2.4.0")
    assert world.publish("alice", release).status_code == 200
    response = world.client.get("/metadata/timestamp.json", headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert response.get_json()["signed"]["version"] == 2


def test_a_target_is_streamed_with_its_hash_as_etag(
    world: World, firmware: tuple[str, bytes]
) -> None:
    url, data = firmware
    with world.client.get(url) as response:
        assert response.status_code == 200
        assert response.get_data() == data
        assert response.mimetype == "application/octet-stream"
        assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert response.headers["Accept-Ranges"] == "bytes"
        assert "immutable" in response.headers["Cache-Control"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    with world.client.get(url, headers={"If-None-Match": response.headers["ETag"]}) as cached:
        assert cached.status_code == 304


def test_an_interrupted_download_resumes_with_a_range(
    world: World, firmware: tuple[str, bytes]
) -> None:
    url, data = firmware
    with world.client.get(url, headers={"Range": "bytes=100-"}) as rest:
        assert rest.status_code == 206
        assert rest.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert rest.get_data() == data[100:]
    with world.client.get(url, headers={"Range": "bytes=10-19"}) as middle:
        assert middle.status_code == 206
        assert middle.get_data() == data[10:20]


def test_a_range_past_the_end_is_416_with_the_size(
    world: World, firmware: tuple[str, bytes]
) -> None:
    url, data = firmware
    response = world.client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    assert response.mimetype == "application/problem+json"


def test_head_tells_the_size_without_the_body(world: World, firmware: tuple[str, bytes]) -> None:
    url, data = firmware
    with world.client.head(url) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(len(data))
        assert response.get_data() == b""


@pytest.mark.parametrize(
    "url",
    [
        "/metadata/../server.json",
        "/metadata/%2e%2e/server.json",
        "/metadata/..%2fserver.json",
        "/metadata/%2e%2e%2f%2e%2e%2fserver.json",
        "/metadata/root.json%00.txt",
        "/metadata/..%5c..%5cserver.json",
        "/metadata/.root.json.bak",
        "/metadata/nope.json",
        "/targets/../metadata/root.json",
        "/targets/%2e%2e/%2e%2e/server.json",
        "/targets/pump-x100/..%2f..%2f..%2fserver.json",
        "/targets/pump-x100%5c..%5c..%5cserver.json",
        "/targets/pump-x100/fw.bin%00",
        "/targets//etc/passwd",
        "/targets/pump-x100/fw-2.4.0.bin",
    ],
)
def test_path_traversal_in_distribution_reaches_nothing(world: World, url: str) -> None:
    (world.config.data_dir / "server.json").write_text('{"secret": true}')
    (world.repository / "metadata" / ".root.json.bak").write_text("{}")
    response = world.client.get(url, follow_redirects=True)  # werkzeug merges "//"
    assert response.status_code == 404
    assert b"secret" not in response.get_data()


def test_a_symlink_out_of_the_repository_is_not_followed(world: World, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not firmware")
    name = "ab" * 32 + ".fw.bin"
    (world.repository / "targets" / "pump-x100").mkdir(parents=True, exist_ok=True)
    (world.repository / "targets" / "pump-x100" / name).symlink_to(outside)
    assert world.client.get(f"/targets/pump-x100/{name}").status_code == 404


def test_distribution_needs_no_login(world: World) -> None:
    assert world.client.get("/metadata/root.json").status_code == 200


def test_a_large_target_is_streamed_not_read_into_memory(world: World) -> None:
    size = 64 * 1024 * 1024
    directory = world.repository / "targets" / "big"
    directory.mkdir(parents=True)
    file = directory / f"{'cd' * 32}.image.bin"
    with file.open("wb") as out:
        out.truncate(size)
        os.fsync(out.fileno())
    tracemalloc.start()
    try:
        received = 0
        with world.client.get(f"/targets/big/{file.name}", buffered=False) as response:
            assert response.status_code == 200
            for chunk in response.response:
                received += len(chunk)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB serving 64 MiB"


def test_a_metadata_symlink_out_of_the_repository_is_not_followed(
    world: World, tmp_path: Path
) -> None:
    """Metadata names are direct children, checked with lstat: a link is never served."""
    outside = tmp_path / "secret.json"
    outside.write_text('{"not": "metadata"}')
    (world.repository / "metadata" / "99.targets.json").symlink_to(outside)
    assert world.client.get("/metadata/99.targets.json").status_code == 404


class _RecordingWrapper:
    """Stands for the WSGI server's file wrapper; records the block size asked."""

    blocks: list[int] = []  # noqa: RUF012 - shared on purpose, reset by the test

    def __init__(self, filelike: object, blksize: int = 8192) -> None:
        self.filelike = filelike
        _RecordingWrapper.blocks.append(blksize)

    def __iter__(self) -> object:
        return iter(lambda: self.filelike.read(1 << 20), b"")  # type: ignore[attr-defined]

    def close(self) -> None:
        self.filelike.close()  # type: ignore[attr-defined]


def test_targets_stream_in_large_blocks_through_the_servers_own_wrapper(
    world: World, firmware: tuple[str, bytes]
) -> None:
    """Throughput (issue 3 benchmark): 1 MiB blocks, and still the server's wrapper class."""
    url, data = firmware
    _RecordingWrapper.blocks = []
    environ = {"wsgi.file_wrapper": _RecordingWrapper}
    with world.client.get(url, environ_base=environ) as response:
        assert response.status_code == 200
        assert response.get_data() == data
    assert _RecordingWrapper.blocks == [1024 * 1024]


def test_firmware_is_an_attachment_never_rendered_inline_content_sniffing(
    world: World, firmware: tuple[str, bytes]
) -> None:
    """A browser sent to a target URL saves it; it never renders it as a page."""
    url, _data = firmware
    with world.client.get(url) as response:
        assert response.status_code == 200
        name = url.rpartition("/")[2]
        assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
