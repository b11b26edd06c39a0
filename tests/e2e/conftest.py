"""End-to-end harness: the real ``fwserver serve`` (gunicorn, TLS) in a subprocess.

``start_server`` runs the command exactly as an operator would, on 127.0.0.1
and port 0 (the kernel picks a free port, so parallel runs never collide),
reads the URL and the CA file the server prints once it listens, and waits
until ``/api/v1/health`` answers over HTTPS, verified against that CA (the
``tls/ca.crt`` that ``fwserver init`` made, which every device and client in
these tests is given, never the served certificate). On leaving it sends
SIGTERM (a graceful stop) and waits; a server that does not stop in time is
killed with its whole process group. Every wait is bounded.

The server refuses root (R6): when the tests run as root (CI), the data
directory is handed to an unprivileged user and the server runs as that
user (``tests.unprivileged.served``), as the deployment's systemd unit runs
it; the tests keep using ``data_dir`` (a link to it while it is served).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from cryptography import x509

from tests.hsm_mock.helpers import FAST_KDF
from tests.unprivileged import as_server_user, served
from update_server.setup import init_data_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful timeout is 30 s


@dataclass(frozen=True)
class RunningServer:
    """A server started by the harness."""

    url: str
    #: The server's CA certificate: what devices are provisioned with (``--ca``).
    ca: Path
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    stdout: Path

    def pool(self, **settings: Any) -> urllib3.PoolManager:
        """A client that verifies the server against its CA file."""
        return urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(self.ca),
            retries=False,
            timeout=urllib3.Timeout(total=10),
            **settings,
        )

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(stat.parent.name))
    return children


def server_command() -> list[str]:
    """``fwserver``, run by this interpreter with this test run's import path."""
    flags = ["-S"] if sys.flags.no_site else []
    return [sys.executable, *flags, "-c", "from update_server.cli import main; main()"]


@contextlib.contextmanager
def start_server(data_dir: Path, *, workers: int = 2) -> Iterator[RunningServer]:
    """Run ``fwserver serve`` for ``data_dir`` for the duration of the block."""
    out, err = data_dir.parent / "server.out", data_dir.parent / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSERVER_")}
    env["PYTHONUNBUFFERED"] = "1"
    # The server runs this checkout's code, as the tests do.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with served(data_dir) as reachable:
        argv = [*server_command(), "serve", "--data-dir", str(reachable), "--port", "0"]
        argv += ["--workers", str(workers)]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                as_server_user(argv),
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=reachable.parent,
                start_new_session=True,
            )
        try:
            url, ca = _wait_for_url(process, out, err)
            ca = data_dir / ca.relative_to(reachable) if ca.is_relative_to(reachable) else ca
            _require_ca(ca)
            server = RunningServer(url, ca, data_dir, process, log=err, stdout=out)
            _wait_for_health(server)
            _wait_for_workers(server, workers)
            yield server
        finally:
            stop_server(process)


def stop_server(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then wait; kill the process group if it outlives the timeout."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return process.wait(timeout=10)
    return process.returncode


def _wait_for_url(process: subprocess.Popen[bytes], out: Path, err: Path) -> tuple[str, Path]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines()
        urls = [line.split()[-1] for line in lines if line.startswith("serving https://")]
        cas = [line.split(": ", 1)[1] for line in lines if line.startswith("CA certificate")]
        if urls and cas:
            return urls[0], Path(cas[0])
        if process.poll() is not None:
            pytest.fail(f"fwserver serve exited with {process.returncode}:\n{err.read_text()}")
        time.sleep(0.05)
    pytest.fail(f"fwserver serve printed no URL within {START_TIMEOUT} s:\n{err.read_text()}")


def _require_ca(path: Path) -> None:
    """Devices in these tests are given a CA certificate, never a leaf they would pin."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    if not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
        pytest.fail(f"fwserver serve names {path} as the CA for clients; it is no CA")


def _wait_for_health(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with server.pool() as pool:
        while time.monotonic() < deadline:
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                if pool.request("GET", f"{server.url}/api/v1/health").status == 200:
                    return
            time.sleep(0.05)
    pytest.fail(f"{server.url}/api/v1/health did not answer in time:\n{server.log.read_text()}")


def _wait_for_workers(server: RunningServer, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while len(server.worker_pids()) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} workers after {START_TIMEOUT} s")
        time.sleep(0.05)


def fwclient(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``fwclient`` in its own process, as a device runs it (``env`` added to the caller's)."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    argv = [sys.executable, "-c", "from client.cli import main; main()", *args]
    return subprocess.run(
        argv, capture_output=True, text=True, env=environment, timeout=120, check=False
    )


def new_data_dir(parent: Path) -> Path:
    """A data directory made by ``fwserver init`` (fast KDF for the test token)."""
    return init_data_dir(parent / "data", kdf=FAST_KDF).config.data_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One running server for a test module (SQLite, a certificate of its own CA)."""
    data_dir = new_data_dir(tmp_path_factory.mktemp("server"))
    with start_server(data_dir) as running:
        yield running
