"""A real nginx (Debian's package) started by the tests, with deploy/nginx's configuration.

``start_nginx`` renders ``deploy/nginx/fwserver.conf.in`` with its own
renderer (``deploy/nginx/render.py``), wraps it in a main configuration that
keeps everything in one temporary directory (pid file, error and access
logs, temporary files; one worker; ``daemon off`` so this process holds the
master), and runs ``nginx`` as an unprivileged user: ``www-data``, Debian's
nginx user, when the tests run as root (the server itself runs as another
user, ``tests.unprivileged``), the current user otherwise. It waits until
nginx answers, and on leaving stops it (SIGQUIT: finish and exit; SIGKILL
after a timeout) and removes the directory.

``grant_repository`` gives nginx's group read access to the published
repository the way deploy/README.md tells operators to (the data directory
enterable, not listable; the repository group-readable, its directories
setgid so new files and directories keep the group).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests.hsm_mock.helpers import skip_or_fail

REPO_ROOT = Path(__file__).resolve().parents[2]
RENDERER = REPO_ROOT / "deploy" / "nginx" / "render.py"
NGINX_USER = "www-data"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

MAIN_CONFIG = """\
worker_processes {workers};
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log {level};
events {{ worker_connections {connections}; }}
http {{
    client_body_temp_path {directory}/temp/body;
    proxy_temp_path {directory}/temp/proxy;
    fastcgi_temp_path {directory}/temp/fastcgi;
    uwsgi_temp_path {directory}/temp/uwsgi;
    scgi_temp_path {directory}/temp/scgi;
    include {directory}/{site};
}}
"""


@dataclass(frozen=True)
class RunningNginx:
    url: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"


def nginx_binary() -> str:
    """Debian's nginx, or a skip (a failure under CI=true) naming the package."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        skip_or_fail("nginx is not installed (apt-get install nginx)")
    return found


def renderer() -> ModuleType:
    """deploy/nginx/render.py, loaded as the operator runs it (not an installed package)."""
    spec = importlib.util.spec_from_file_location("fwupdate_nginx_render", RENDERER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nginx_user() -> pwd.struct_passwd | None:
    """Whom nginx runs as: www-data when the tests run as root, else this process's user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(NGINX_USER)
    except KeyError:
        skip_or_fail(f"running as root and there is no {NGINX_USER} user (apt-get install nginx)")


def grant_repository(data_dir: Path) -> None:
    """deploy/README.md's steps: nginx's group may enter the data dir and read the repository."""
    user = nginx_user()
    if user is None:
        return
    os.chown(data_dir, -1, user.pw_gid)
    data_dir.chmod(0o710)  # enter, not list: the secrets beside it stay out of reach
    repository = data_dir / "repository"
    for directory, _names, files in os.walk(repository):
        os.chown(directory, -1, user.pw_gid)
        Path(directory).chmod(0o2750)  # setgid: what the server adds later keeps the group
        for name in files:
            file = Path(directory, name)
            os.chown(file, -1, user.pw_gid, follow_symlinks=False)
            file.chmod(stat.S_IMODE(file.stat().st_mode) | 0o040)


@contextlib.contextmanager
def start_nginx(
    values: Mapping[str, str], *, certificate: Path, key: Path, upstream_ca: Path
) -> Iterator[RunningNginx]:
    """nginx with deploy/nginx's configuration and ``values``, for the duration of the block."""
    binary = nginx_binary()
    user = nginx_user()
    directory = Path(tempfile.mkdtemp(prefix="fwtest-nginx-", dir="/tmp"))
    try:
        (directory / "temp").mkdir()
        for source, name in ((certificate, "site.crt"), (key, "site.key"), (upstream_ca, "ca.crt")):
            shutil.copyfile(source, directory / name)
            (directory / name).chmod(0o600)
        port = _free_port()
        config = renderer().render(
            {
                **values,
                "LISTEN": f"127.0.0.1:{port}",
                "CERTIFICATE": str(directory / "site.crt"),
                "CERTIFICATE_KEY": str(directory / "site.key"),
                "UPSTREAM_CA": str(directory / "ca.crt"),
                "ACCESS_LOG": str(directory / "access.log"),
            }
        )
        (directory / "fwupdate.conf").write_text(config)
        argv = prepare(directory, "fwupdate.conf", user, binary=binary)
        with (directory / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=directory,
                start_new_session=True,
            )
        running = RunningNginx(f"https://127.0.0.1:{port}", port, directory, process)
        try:
            _wait_until_listening(running, upstream_ca)
            yield running
        finally:
            _stop(process)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def prepare(
    directory: Path,
    site: str,
    user: pwd.struct_passwd | None,
    *,
    binary: str,
    workers: int = 1,
    connections: int = 256,
    level: str = "info",
) -> list[str]:
    """Write the main configuration around ``directory/site``, hand ``directory``
    to ``user`` and return the argv that starts nginx as that user."""
    main = MAIN_CONFIG.format(
        directory=directory, site=site, workers=workers, connections=connections, level=level
    )
    (directory / "nginx.conf").write_text(main)
    if user is not None:
        for path in (directory, *directory.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)
    argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    argv += ["-e", str(directory / "error.log")]
    if user is None:
        return argv
    ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return ["setpriv", *ids, "--", *argv]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(nginx: RunningNginx, ca: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if nginx.process.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", nginx.port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            return
        time.sleep(0.05)
    logs = (nginx.directory / "stderr.log", nginx.error_log)
    errors = "".join(log.read_text() for log in logs if log.is_file())
    pytest.fail(f"nginx did not start (exit {nginx.process.poll()}):\n{errors[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGQUIT)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
