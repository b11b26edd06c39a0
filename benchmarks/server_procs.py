"""The processes the server benchmarks start, watch and always stop.

Three servers over TLS on 127.0.0.1, each on a port the kernel picks:

- ``fwserver serve``, exactly as an operator runs it (gunicorn, its default
  workers and threads, the data directory's self-signed certificate);
- the baseline app (``server_baseline``): gunicorn configured by the very
  same ``FirmwareServer`` code, so the same workers, threads, TLS settings and
  certificate, serving a minimal Flask app;
- nginx, with as many worker processes as gunicorn has, the same certificate
  and key, its document root the server's published repository directory.

Every wait is bounded; ``stop`` sends SIGTERM, waits, then kills the whole
process group (each server runs in a session of its own).

``fwserver serve`` refuses root (R6): run as root, the gunicorn servers and
the ``fwserver`` commands run as the unprivileged user that owns the data
directory (``tests.unprivileged``), as the tests run them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import urllib3

from tests.unprivileged import as_server_user

PROJECT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # gunicorn's graceful timeout is 30 s
KIB = 1024


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the end of its log."""


@dataclass(frozen=True)
class Service:
    """A running server: where it answers, and its master process."""

    name: str
    url: str
    ca: Path
    process: subprocess.Popen[bytes]
    log: Path

    def pool(self) -> urllib3.PoolManager:
        """A client that verifies the server against the CA file."""
        return urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(self.ca),
            retries=False,
            timeout=urllib3.Timeout(connect=10, read=120),
        )

    def workers(self) -> list[int]:
        return children_of(self.process.pid)


# --- gunicorn: fwserver serve and the baseline app ---------------------------------


def _python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FWSERVER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    return env


def fwserver_command(*args: str) -> list[str]:
    """``fwserver ARGS`` run by this interpreter (this checkout's code)."""
    return [sys.executable, "-c", "from update_server.cli import main; main()", *args]


def run_fwserver(*args: str, timeout: float = 120) -> str:
    """Run one ``fwserver`` command to completion and return its standard output."""
    result = subprocess.run(
        as_server_user(fwserver_command(*args)),
        capture_output=True,
        text=True,
        env=_python_env(),
        cwd=PROJECT,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"fwserver {args[0]} failed ({result.returncode}): {result.stderr}")
    return result.stdout


@contextlib.contextmanager
def gunicorn_server(
    name: str, argv: Sequence[str], *, logdir: Path, workers: int
) -> Iterator[Service]:
    """Run a gunicorn server that prints ``serving URL`` and its CA, until the block ends."""
    out, err = logdir / f"{name}.out", logdir / f"{name}.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            as_server_user(list(argv)),
            stdout=stdout,
            stderr=stderr,
            env=_python_env(),
            cwd=PROJECT,
            start_new_session=True,
        )
    try:
        url, ca = _wait_for_url(process, out, err)
        service = Service(name, url, ca, process, err)
        _wait_until_ok(service, "/api/v1/health")
        deadline = time.monotonic() + START_TIMEOUT
        while len(service.workers()) < workers:
            if time.monotonic() > deadline:
                raise ServerStartError(f"{name}: fewer than {workers} workers after start")
            time.sleep(0.05)
        yield service
    finally:
        stop(process)


def _wait_for_url(process: subprocess.Popen[bytes], out: Path, err: Path) -> tuple[str, Path]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        lines = out.read_text().splitlines()
        urls = [line.split()[-1] for line in lines if line.startswith("serving https://")]
        cas = [line.split(": ", 1)[1] for line in lines if line.startswith("CA certificate")]
        if urls and cas:
            return urls[0], Path(cas[0])
        if process.poll() is not None:
            raise ServerStartError(f"exited with {process.returncode}:\n{_tail(err)}")
        time.sleep(0.05)
    raise ServerStartError(f"printed no URL within {START_TIMEOUT} s:\n{_tail(err)}")


def _wait_until_ok(service: Service, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with service.pool() as pool:
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                break
            with contextlib.suppress(urllib3.exceptions.HTTPError):
                if pool.request("GET", f"{service.url}{path}").status == 200:
                    return
            time.sleep(0.05)
    raise ServerStartError(f"{service.name}: {path} did not answer 200:\n{_tail(service.log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then wait; kill the process group if it outlives the timeout."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # A worker that outlived its master (it should not) goes with the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- nginx -----------------------------------------------------------------------------


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    types {{ application/json json; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {root};
        location /metadata/ {{ }}
        location /targets/ {{ }}
    }}
}}
"""


def nginx_missing() -> str | None:
    """Why nginx cannot be used here, or None."""
    return None if shutil.which("nginx") else "nginx is not installed (bash benchmarks/system.sh)"


@contextlib.contextmanager
def nginx_server(
    *, root: Path, cert: Path, key: Path, ca: Path, workers: int, logdir: Path, probe: str
) -> Iterator[Service]:
    """nginx serving ``root`` over TLS on a free local port, until the block ends.

    The port is found by binding port 0 and closing it; another process could
    take it in between, so a failed start is tried again (three times).
    """
    prefix = logdir / "nginx"
    prefix.mkdir(exist_ok=True)
    nginx = shutil.which("nginx") or "nginx"
    # Run as root (this machine's benchmarks do), nginx's workers would drop to
    # "nobody", who cannot enter the 0700 data directory: keep them as root.
    user = "user root;\n" if os.geteuid() == 0 else ""
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                workers=workers,
                user=user,
                prefix=prefix,
                port=port,
                cert=cert,
                key=key,
                root=root,
            )
        )
        err = prefix / "stderr.log"
        with err.open("wb") as stderr:
            process = subprocess.Popen(
                [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        service = Service("nginx", f"https://127.0.0.1:{port}", ca, process, prefix / "error.log")
        try:
            try:
                _wait_until_ok(service, probe)
            except ServerStartError as exc:
                # nginx says why on its stderr (bad configuration, port taken).
                last_error = " ".join(filter(None, [_tail(err, 1).strip(), str(exc)]))
                continue
            deadline = time.monotonic() + START_TIMEOUT
            while len(service.workers()) < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            yield service
            return
        finally:
            stop(process)
    raise ServerStartError(f"nginx did not start: {last_error}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- memory of processes, from /proc --------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The live child processes of ``pid`` (their PPid in /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                children.append(int(stat.parent.name))
    return sorted(children)


def memory_of(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes; (0, 0) if it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in values:
                values[key] = int(value.split()[0]) * KIB
    return values["VmRSS"], values["VmHWM"]


def sockets_of(pid: int) -> int:
    """How many sockets ``pid`` has open (its listener, its connections)."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += str(fd.readlink()).startswith("socket:")
    return count


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of ``pid`` to its current RSS."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class RssSampler:
    """Samples VmRSS of ``pids`` every ``interval`` s in a thread, keeping each one's peak."""

    pids: Sequence[int]
    interval: float = 0.05
    max_seconds: float = 600.0
    peaks: dict[int, int] = field(default_factory=dict)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self.peaks = dict.fromkeys(self.pids, 0)
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.interval) and time.monotonic() < deadline:
            self._sample()

    def _sample(self) -> None:
        for pid in self.pids:
            rss, _hwm = memory_of(pid)
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss)
        self.samples += 1
