"""The device client against the real server, over HTTPS (issue 4's end to end).

Officers, a release manager and two engineers make a repository offline
with firmware 1.0.0 for ``pump-x100`` (the line 2 of 2); ``fwserver
import`` verifies and publishes it; the firmware's bytes are laid where a
release upload puts them (the upload path itself is tested in
``test_release_story``). Then ``fwclient`` runs as a device runs it, in its
own process, trusting only the first root and the server's CA file:
``provision``, ``check``, ``update``, ``boot`` with a health check,
``status``, ``verify``, ``log verify``; a tampered file on the server is
refused with ``bad_hash``; the agent polls on one reused connection; an
interrupted download resumes with a ``Range`` request the server honours.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.fetcher import HttpsFetcher
from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import REPO_ROOT, RunningServer, fwclient, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.hsm_mock.helpers import skip_or_fail
from update_server.config import ServerConfig

TARGET = f"{LINE}/pump-fw-1.0.0.bin"
HEALTHY = f"{sys.executable} -c 'raise SystemExit(0)'"


@dataclass(frozen=True)
class Published:
    server: RunningServer
    root: Path
    image: bytes
    #: Where the server keeps the firmware's bytes.
    served_file: Path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    work = tmp_path_factory.mktemp("client-e2e")
    data_dir = new_data_dir(work)
    config = ServerConfig.load(data_dir)
    image = work / "pump-fw-1.0.0.bin"
    image.write_bytes(os.urandom(300 * 1024))
    offline = work / "offline"
    info = FirmwareInfo(version="1.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(offline, config, image, info, authorization=False)
    import_repository(data_dir, offline, targets_dir=work)
    data = image.read_bytes()
    served = (
        config.repository_dir
        / "targets"
        / LINE
        / f"{hashlib.sha256(data).hexdigest()}.pump-fw-1.0.0.bin"
    )
    assert served.read_bytes() == data, "the import published the firmware"
    with start_server(data_dir) as server:
        yield Published(server, offline / "metadata" / "1.root.json", data, served)


def provisioned(published: Published, path: Path, device_id: str) -> list[str]:
    result = fwclient(
        "provision", "--state", str(path), "--root", str(published.root),
        "--hardware-model", LINE, "--device-id", device_id,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    server = published.server
    return ["--state", str(path), "--server", server.url, "--ca", str(server.ca)]


def test_a_provisioned_device_updates_boots_and_reports(
    published: Published, tmp_path: Path
) -> None:
    device = provisioned(published, tmp_path / "device", "pump-0001")
    state = device[1]

    checked = fwclient("check", *device)
    assert checked.returncode == 0, checked.stderr
    assert f"{TARGET} version 1.0.0" in checked.stdout

    updated = fwclient("update", *device)
    assert updated.returncode == 0, updated.stderr
    assert "pending a reboot" in updated.stdout

    booted = fwclient("boot", "--state", state, "--health-check", HEALTHY)
    assert booted.returncode == 0, booted.stderr
    assert "committed" in booted.stdout

    status = fwclient("status", "--state", state, "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert (report["running_version"], report["security_floor"], report["mode"]) == (
        "1.0.0",
        1,
        "normal",
    )
    assert Path(state, "slots", f"slot_{report['slot']}.bin").read_bytes() == published.image

    assert fwclient("verify", "--state", state).returncode == 0
    again = fwclient("check", *device)
    assert again.returncode == 0 and "no newer firmware" in again.stdout
    logged = fwclient("log", "verify", "--state", state)
    assert logged.returncode == 0, logged.stderr


@contextlib.contextmanager
def tampered(file: Path) -> Iterator[None]:
    original = file.read_bytes()
    changed = bytearray(original)
    changed[1000] ^= 0xFF
    file.write_bytes(bytes(changed))
    try:
        yield
    finally:
        file.write_bytes(original)


def test_a_tampered_file_on_the_server_is_refused(published: Published, tmp_path: Path) -> None:
    device = provisioned(published, tmp_path / "device", "pump-0002")
    with tampered(published.served_file):
        result = fwclient("update", *device)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fwclient: bad_hash: "), result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(fwclient("status", "--state", device[1], "--json").stdout)["pending"] is None


def test_the_agent_polls_on_one_reused_connection(published: Published, tmp_path: Path) -> None:
    device = provisioned(published, tmp_path / "device", "pump-0003")
    result = fwclient(
        "run", *device, "--max-polls", "3", "--interval", "0.05", "--health-check", HEALTHY
    )
    assert result.returncode == 0, result.stderr
    assert "stopped after 3 poll(s)" in result.stdout
    assert result.stdout.rstrip().endswith("1 connection(s)"), result.stdout


def test_a_download_resumes_with_a_range_request(published: Published) -> None:
    server = published.server
    fetcher = HttpsFetcher(ca=server.ca)
    digest = hashlib.sha256(published.image).hexdigest()
    url = f"{server.url}/targets/{LINE}/{digest}.pump-fw-1.0.0.bin"
    try:
        head = b"".join(fetcher.fetch_from(url, 0))
        tail = b"".join(fetcher.fetch_from(url, 100_000))
        connections = fetcher.connections
    finally:
        fetcher.close()
    assert head == published.image
    assert tail == published.image[100_000:]
    assert (fetcher.traffic.requests, connections) == (2, 1)
    # The server honoured the range: only the tail crossed the wire the second time.
    assert fetcher.traffic.bytes == 2 * len(published.image) - 100_000


def test_time_is_the_system_clock_and_faketime_moves_it(
    published: Published, tmp_path: Path
) -> None:
    if shutil.which("faketime") is None:
        skip_or_fail("faketime is not installed (apt-get install faketime)")
    device = provisioned(published, tmp_path / "device", "pump-0004")
    state = device[1]
    ahead = fwclient_at("+12h", "check", *device)
    assert ahead.returncode == 0, ahead.stderr
    # Back to the real clock, now 12 hours behind the time floor: logged, the floor used.
    behind = fwclient("check", *device)
    assert behind.returncode == 0, behind.stderr
    events = [
        json.loads(line)["type"] for line in Path(state, "events.log").read_text().splitlines()
    ]
    assert "clock_skew" in events
    # Two days on, the server's one-day timestamp has expired: a freeze, and the device runs on.
    frozen = fwclient_at("+2d", "check", *device)
    assert frozen.returncode == 1
    assert frozen.stderr.startswith("fwclient: freeze_attack: "), frozen.stderr


def fwclient_at(offset: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``fwclient`` with its clock moved by ``offset`` (libfaketime)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    argv = ["faketime", "-f", offset, sys.executable, "-c", "from client.cli import main; main()"]
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
