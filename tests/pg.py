"""A real PostgreSQL server for the test session, started by the tests themselves.

``start_postgres`` runs ``initdb`` in a fresh temporary directory and
``pg_ctl start`` on a free port of 127.0.0.1 (its unix socket stays inside
that directory), with password authentication (a random password, scram)
and durability off (fsync, full-page writes: the data dies with the test).

Each test gets a fresh, empty namespace (``fresh_schema``): its own schema in
the session's database, made the connection's ``search_path`` through the
URL, and dropped with everything in it afterwards; connections a test leaves
open are ended first (they carry the schema's name as ``application_name``).
A schema costs about 3 ms; ``CREATE DATABASE`` costs 130 to 300 ms (it
copies the whole catalogue), which over hundreds of server tests would
double the suite's time for no better isolation.

``stopped()`` freezes the whole server (SIGSTOP to the postmaster, then to
every process it started) for the duration of a block and always resumes
it (SIGCONT): a server that hangs while the host's kernel still
acknowledges every packet, which no TCP timeout notices.

PostgreSQL refuses to run as root, so when the tests run as root (CI on a
fresh Debian machine) the server runs as the ``postgres`` system user, or
``nobody`` where there is none, through ``runuser``; the temporary
directory is handed to that user.

The binaries are found in ``$FW_PG_BINDIR``, Debian's
``/usr/lib/postgresql/<version>/bin`` (newest first), or on ``PATH``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

BINDIR_ENV = "FW_PG_BINDIR"
SUPERUSER = "fwtest"
START_TIMEOUT = 30
COMMAND_TIMEOUT = 120
PREFIX = "fwtest-pg-"
#: The pid of the test session that started the server in this directory.
OWNER_FILE = "owner.pid"
#: The database that holds one schema per test.
DATABASE = "fw_tests"
SERVER_SETTINGS = (
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
)


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are, or None."""
    configured = os.environ.get(BINDIR_ENV)
    candidates = [Path(configured)] if configured else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


@dataclass
class PostgresServer:
    """A running server and an admin connection to it."""

    bindir: Path
    directory: Path
    port: int
    password: str
    run_as: str | None
    _admin: psycopg.Connection[tuple[object, ...]] | None = None
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def url(self, schema: str) -> str:
        """The SQLAlchemy URL (psycopg 3) whose connections live in ``schema``."""
        return (
            f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"
            f"?options=-csearch_path%3D{schema}&application_name={schema}"
        )

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._admin is None or self._admin.closed:
            self._admin = self._connect(DATABASE)
        return self._admin

    def _connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=self.password,
            dbname=database,
            autocommit=True,
            connect_timeout=10,
        )

    def fresh_schema(self) -> str:
        """A new, empty schema; return its name."""
        name = f"t{os.getpid()}_{next(self._numbers)}"
        self.admin().execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def drop_schema(self, name: str) -> None:
        """Drop ``name`` and everything in it, ending connections left open on it."""
        admin = self.admin()
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server and every backend frozen (SIGSTOP) in the block, resumed after."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        frozen: list[int] = []
        try:
            for pid in (postmaster, *_children_of(postmaster)):  # no new backend once it stops
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
            yield
        finally:
            for pid in reversed(frozen):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        with contextlib.suppress(PostgresUnavailableError):
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(self.run_as, [str(self.bindir / tool), *args])


def start_postgres() -> PostgresServer:
    """initdb + pg_ctl start in a new temporary directory; raise if impossible."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailableError(
            f"PostgreSQL binaries not found (initdb, pg_ctl; set {BINDIR_ENV}"
            " or apt-get install postgresql)"
        )
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    base = _temp_base(run_as)
    _stop_orphans(bindir, base, run_as)
    directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    (directory / OWNER_FILE).write_text(str(os.getpid()))
    server = PostgresServer(
        bindir, directory, port=0, password=secrets.token_hex(16), run_as=run_as
    )
    try:
        _initdb(server)
        _start(server)
        with server._connect("postgres") as bootstrap:
            bootstrap.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except BaseException:
        server.stop()
        raise
    return server


def postgres_session() -> Iterator[PostgresServer | PostgresUnavailableError]:
    """For a session fixture: the server, or why there is none; stopped at the end."""
    try:
        server = start_postgres()
    except PostgresUnavailableError as exc:
        yield exc
        return
    try:
        yield server
    finally:
        server.stop()


def _children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresUnavailableError("running as root, and no postgres or nobody user to run it as")


def _stop_orphans(bindir: Path, base: str, run_as: str | None) -> None:
    """Stop servers whose test session died without stopping them (SIGKILL, timeout)."""
    for directory in Path(base).glob(f"{PREFIX}*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        orphan = PostgresServer(bindir, directory, port=0, password="", run_as=run_as)
        orphan.stop()


def _temp_base(run_as: str | None) -> str:
    """A temporary directory the PostgreSQL user can reach (/tmp if TMPDIR is private)."""
    base = Path(tempfile.gettempdir()).resolve()
    if run_as is None or all(p.stat().st_mode & 0o001 for p in (base, *base.parents)):
        return str(base)
    return "/tmp"  # mkdtemp makes a private directory inside


def _initdb(server: PostgresServer) -> None:
    password_file = server.directory / "password"
    password_file.write_text(server.password)
    password_file.chmod(0o600)
    (server.directory / "socket").mkdir()
    if server.run_as is not None:
        entry = pwd.getpwnam(server.run_as)
        for path in (server.directory, password_file, server.directory / "socket"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    server._pg(
        "initdb",
        "-D",
        str(server.data_dir),
        "-U",
        SUPERUSER,
        f"--pwfile={password_file}",
        "--auth=scram-sha-256",
        "--no-locale",
        "--encoding=UTF8",
        "--no-sync",
        "--no-instructions",
    )
    password_file.unlink()


def _start(server: PostgresServer) -> None:
    options = " ".join(f"-c {setting}" for setting in SERVER_SETTINGS)
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between pick and bind
        server.port = _free_port()
        try:
            server._pg(
                "pg_ctl",
                "start",
                "-D",
                str(server.data_dir),
                "-l",
                str(server.directory / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT),
                "-o",
                f"-p {server.port} -k {server.directory / 'socket'} {options}",
            )
        except PostgresUnavailableError as exc:
            last_error = str(exc)
            continue
        return
    log = server.directory / "server.log"
    tail = log.read_text()[-2000:] if log.is_file() else ""
    raise PostgresUnavailableError(f"pg_ctl start failed: {last_error}\n{tail}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(run_as: str | None, argv: list[str]) -> subprocess.CompletedProcess[str]:
    tool = Path(argv[0]).name
    if run_as is not None:
        argv = ["runuser", "-u", run_as, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    try:
        return subprocess.run(
            argv,
            check=True,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=env,
            cwd="/",
        )
    except subprocess.CalledProcessError as exc:
        output = (exc.stderr or exc.stdout or "").strip()[-2000:]
        raise PostgresUnavailableError(f"{tool} failed: {output}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresUnavailableError(f"cannot run {tool}: {exc}") from None
