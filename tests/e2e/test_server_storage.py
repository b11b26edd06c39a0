"""A full disk under the real server (gunicorn, TLS): an answer, never a dropped connection.

The disk fills the way a worker meets it: the test lowers the file-size
limit (``RLIMIT_FSIZE``, ``prlimit``) of every running worker, so a write
past it fails with ``EFBIG`` as on a full file system. A firmware upload
then answers 507 problem+json while its body is still arriving (the client
reads it: no reset), leaves no staged bytes, and succeeds once there is
room; a publish and a login (their database and audit writes) answer 503
or 507, and the published version stays served.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import urllib3
from securesystemslib.signer import CryptoSigner

from fwcommon.keyref import public_key_from_uri
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate, init_repository
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.people import LOGIN, Person, call, enrolled
from tests.unprivileged import as_server_user, invoke_fwserver
from update_server.config import ServerConfig

LINE = "pump-x100"
MIB = 1024**2
SERVER_TROUBLE = (503, 507)


@contextlib.contextmanager
def workers_file_size_limit(server: RunningServer, limit: int) -> Iterator[None]:
    """No file of any worker grows past ``limit`` bytes in the block."""
    pids = server.worker_pids()
    before = {pid: _file_size_limit(pid) for pid in pids}
    for pid, (_soft, hard) in before.items():
        _file_size_limit(pid, f"{limit}:{hard}")
    try:
        yield
    finally:
        for pid, (soft, hard) in before.items():
            with contextlib.suppress(subprocess.CalledProcessError):  # the worker is gone
                _file_size_limit(pid, f"{soft}:{hard}")


def _file_size_limit(pid: int, new: str | None = None) -> tuple[str, str]:
    """A worker's RLIMIT_FSIZE (soft, hard), set to ``new`` if given, by util-linux prlimit.

    Run as the workers' own user (the server runs unprivileged, R6): root
    itself may lack CAP_SYS_RESOURCE over another user's process (a container).
    """
    argv = ["prlimit", "--pid", str(pid), "--fsize" + ("" if new is None else f"={new}")]
    argv += ["--raw", "--noheadings", "--output=SOFT,HARD"] if new is None else []
    done = subprocess.run(as_server_user(argv), capture_output=True, text=True, check=True)
    soft, hard = done.stdout.split() if new is None else new.split(":")
    return soft, hard


def _offline_release(directory: Path, config: ServerConfig, firmware: bytes) -> Path:
    """Root, targets and ``pump-x100`` one key each, one firmware signed."""
    now = datetime.now(UTC)
    officer, manager, engineer = (CryptoSigner.generate_ed25519() for _ in range(3))
    online = {r: public_key_from_uri(config.online_keys[r]) for r in ("snapshot", "timestamp")}
    init_repository(
        OfflineRepository(directory, now=now, signers=[officer, manager], create=True),
        root=RoleKeys([officer.public_key], 1),
        targets=RoleKeys([manager.public_key], 1),
        snapshot=online["snapshot"],
        timestamp=online["timestamp"],
    )
    delegate(
        OfflineRepository(directory, now=now, signers=[manager]),
        name=LINE,
        path_prefix=f"{LINE}/",
        keys=RoleKeys([engineer.public_key], 1),
    )
    sign_roles(OfflineRepository(directory, now=now, signers=[engineer]), roles=[LINE])
    result = invoke_fwserver(["import", "--data-dir", str(config.data_dir), str(directory)])
    assert result.exit_code == 0, result.output
    image = directory.parent / "fw.bin"
    image.write_bytes(firmware)
    info = FirmwareInfo(version="2.4.0", security_version=1, hardware_models=(LINE,))
    release = OfflineRepository(directory, now=now, signers=[engineer])
    add_firmware(release, image=image, name="fw", info=info)
    return directory / "metadata" / f"{LINE}.json"


def _largest_file(directory: Path) -> int:
    return max(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _put(
    server: RunningServer, person: Person, release: str, data: bytes
) -> urllib3.BaseHTTPResponse:
    with server.pool() as pool:
        return pool.request(
            "PUT",
            f"{server.url}/api/v1/releases/{release}/targets/{LINE}/fw-2.4.0.bin",
            body=data,
            headers={**person.headers, "Content-Type": "application/octet-stream"},
        )


def test_a_full_disk_answers_uploads_publishes_and_logins_never_500_or_a_reset(
    tmp_path: Path,
) -> None:
    data_dir = new_data_dir(tmp_path)
    config = ServerConfig.load(data_dir)
    # Room for the database and its log, not for the firmware.
    limit = _largest_file(data_dir) + 4 * MIB
    firmware = os.urandom(limit + 4 * MIB)
    role_file = _offline_release(tmp_path / "offline", config, firmware)
    with start_server(data_dir) as server:
        alice = enrolled(server, "alice")
        metadata = {"metadata": {LINE: json.loads(role_file.read_bytes())}}
        status, answer, _ = call(server, "POST", "/api/v1/releases", metadata, alice.headers)
        assert status == 201, answer
        release = answer["id"]
        published = call(server, "GET", "/metadata/timestamp.json")[1]

        with workers_file_size_limit(server, limit):
            refused = _put(server, alice, release, firmware)  # a reset would raise here
        assert refused.status == 507, refused.data[:300]
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["rule"] == "storage-full"
        staging = data_dir / "staging" / release
        assert not staging.exists() or list(staging.iterdir()) == []
        assert _put(server, alice, release, firmware).status == 201

        publish = f"/api/v1/releases/{release}/publish"
        with workers_file_size_limit(server, 1024):
            confirm = {**alice.headers, "X-OTP": alice.unused_code()}
            status, body, _ = call(server, "POST", publish, None, confirm)
            assert status in SERVER_TROUBLE, body
            assert body["status"] == status
            status, body, _ = call(server, "POST", LOGIN, alice.login_body())
            assert status in SERVER_TROUBLE, body
        assert call(server, "GET", "/metadata/timestamp.json")[1] == published
        confirm = {**alice.headers, "X-OTP": alice.unused_code()}
        assert call(server, "POST", publish, None, confirm)[0] == 200
