"""A throwaway PostgreSQL server for the fleet benchmark's PostgreSQL leg.

``initdb`` in a new temporary directory, ``pg_ctl start`` on a free port of
127.0.0.1 (its unix socket inside that directory), password authentication
(scram, a random password), one database; stopped and removed at the end.
Unlike the test suite's server (``tests/pg.py``, durability off for speed),
this one keeps PostgreSQL's defaults for durability (``fsync``,
``synchronous_commit``): the benchmark measures what a production server
pays for each commit, as the SQLite leg does (WAL, ``synchronous=FULL``).

PostgreSQL refuses to run as root: as root, the server runs as the
``postgres`` system user (or ``nobody``) through ``runuser``. The binaries
are found in ``$FW_PG_BINDIR``, Debian's ``/usr/lib/postgresql/<version>/bin``
(newest first), or on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks.server_procs import children_of, free_port

BINDIR_ENV = "FW_PG_BINDIR"
USER = "fwbench"
DATABASE = "fwserver"
TIMEOUT = 60
SETTINGS = ("listen_addresses=127.0.0.1", "max_connections=200", "shared_buffers=128MB")


class PostgresMissingError(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass(frozen=True)
class Postgres:
    """A running server: its SQLAlchemy URL and its postmaster's pid (for CPU and memory)."""

    url: str
    postmaster: int

    def processes(self) -> list[int]:
        """The postmaster and every backend it started."""
        return [self.postmaster, *children_of(self.postmaster)]


def missing() -> str | None:
    """Why PostgreSQL cannot be started here, or None."""
    if _bindir() is None:
        return f"PostgreSQL binaries not found (apt-get install postgresql, or set {BINDIR_ENV})"
    if os.geteuid() == 0 and _run_as() is None:
        return "running as root, and no postgres or nobody user to run PostgreSQL as"
    return None


@contextlib.contextmanager
def postgres(parent: Path) -> Iterator[Postgres]:
    """A fresh PostgreSQL server under ``parent`` for the duration of the block."""
    bindir, run_as = _bindir(), _run_as() if os.geteuid() == 0 else None
    if bindir is None or (os.geteuid() == 0 and run_as is None):
        raise PostgresMissingError(missing() or "PostgreSQL cannot be started")
    base = parent if run_as is None else Path(tempfile.gettempdir())
    directory = Path(tempfile.mkdtemp(prefix="fwbench-pg-", dir=base))
    data = directory / "data"
    password = secrets.token_hex(16)
    try:
        _initdb(bindir, directory, data, password, run_as)
        port = free_port()
        options = " ".join(f"-c {setting}" for setting in SETTINGS)
        _pg(run_as, bindir / "pg_ctl", "start", "-D", str(data), "-w", "-t", str(TIMEOUT),
            "-l", str(directory / "server.log"),
            "-o", f"-p {port} -k {directory / 'socket'} {options}")  # fmt: skip
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        _create_database(port, password)
        yield Postgres(
            f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{port}/{DATABASE}", postmaster
        )
    finally:
        with contextlib.suppress(PostgresMissingError):
            _pg(run_as, bindir / "pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w")
        shutil.rmtree(directory, ignore_errors=True)


def _initdb(bindir: Path, directory: Path, data: Path, password: str, run_as: str | None) -> None:
    secret = directory / "password"
    secret.write_text(password)
    secret.chmod(0o600)
    (directory / "socket").mkdir()
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (directory, secret, directory / "socket"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    _pg(run_as, bindir / "initdb", "-D", str(data), "-U", USER, f"--pwfile={secret}",
        "--auth=scram-sha-256", "--no-locale", "--encoding=UTF8", "--no-instructions")  # fmt: skip
    secret.unlink()


def _create_database(port: int, password: str) -> None:
    with psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=password,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))


def _pg(run_as: str | None, tool: Path, *args: str) -> None:
    argv = [str(tool), *args]
    if run_as is not None:
        argv = ["runuser", "-u", run_as, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    try:
        subprocess.run(
            argv, check=True, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd="/"
        )
    except subprocess.CalledProcessError as exc:
        output = (exc.stderr or exc.stdout or "").strip()[-1000:]
        raise PostgresMissingError(f"{tool.name} failed: {output}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresMissingError(f"cannot run {tool.name}: {exc}") from None


def _bindir() -> Path | None:
    configured = os.environ.get(BINDIR_ENV)
    candidates = [Path(configured)] if configured else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next(
        (b for b in candidates if (b / "initdb").is_file() and (b / "pg_ctl").is_file()), None
    )


def _run_as() -> str | None:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None
