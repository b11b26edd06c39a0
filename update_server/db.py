"""The database: SQLAlchemy 2 engine and sessions, SQLite or PostgreSQL.

The same code runs on both. SQLite gets foreign keys on and a busy timeout so
several gunicorn workers share it; on PostgreSQL the counters that must hold
across workers (failed logins, used TOTP steps, the audit chain head) rely on
row locks and unique constraints, never on process memory.

A database that is locked, unreachable or failing never makes a request
wait long nor answer as if all were well (rules D1-D3):

- D1 Every wait is bounded by ``timeout`` (``ServerConfig.database_timeout``,
  5 s): SQLite's busy timeout; on PostgreSQL the connection (libpq counts
  whole seconds, at least 2), each lock and statement (``lock_timeout``,
  ``statement_timeout``, set on every new connection), the wait for a
  pooled connection, and a network that stops carrying data (TCP
  keepalives, ``tcp_user_timeout``). Past it the driver raises, and the app
  answers 503 (``failure_of``).
- D4 A PostgreSQL server that stops answering (a hung or stopped process,
  whose host still acknowledges every packet) holds no request either:
  every statement, rollback and checkout ping is armed with a deadline
  (``timeout`` plus ``CUT_GRACE``, so that the server's own timeouts fire
  first while it runs), and a connection still busy past it is cut (its
  socket shut down) by one watchdog thread per engine (``_Deadlines``). A
  ping that was cut is not retried on a new connection (that would wait
  again): it answers ``DatabaseUnavailableError``. A COMMIT is not armed:
  cut, it may still have landed, and a publication would undo its files
  while the database says published; a hung one waits for gunicorn's
  worker timeout instead. A connection back in the pool for less than
  ``PING_IDLE`` is not pinged (a request's second transaction takes the
  connection its first one just gave back): it answered a moment ago, its
  first statement is armed like every other, and if the server died in
  that moment the request answers 503 like one that was under way then.
- D2 The SQLite file a worker opened is the one it keeps writing: before
  each transaction and each commit, the file must still be there, be the
  same file (device, inode), and not be shorter than it has been seen by
  this process. SQLite never shrinks it here (no VACUUM), so a shorter file
  was truncated or replaced under the server; with WAL, a transaction could
  otherwise still read and commit pages from the log and a login succeed
  on a database that is gone (``DatabaseUnavailableError``).
- D3 A commit that fails raises: a view answers success only after its
  commit returned (a login's spent one-time code is then durable:
  ``synchronous=FULL`` on SQLite, PostgreSQL's default on the server).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import (
    DatabaseError,
    DisconnectionError,
    InterfaceError,
    InternalError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from update_server.config import sqlite_file

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
#: D4: a connection is cut this long after ``timeout``; a server that runs
#: answers first with its own lock or statement timeout.
CUT_GRACE = 0.5
#: D4: a connection idle in the pool at least this long (s) is pinged at checkout.
PING_IDLE = 1.0
#: D4: where a pooled connection's record keeps when it was given back.
_RETURNED = "fw.returned"
#: libpq's PQTRANS_ACTIVE (psycopg and psycopg2 alike): a command is in progress.
_PQTRANS_ACTIVE = 1
#: SQLSTATE class 53: insufficient resources (53100: disk full).
_PG_DISK_FULL = "53100"


class Base(DeclarativeBase):
    """Declarative base of every table."""


class DatabaseUnavailableError(SQLAlchemyError):
    """The database file was truncated, removed or replaced under the server (D2)."""


class DatabaseMissingError(RuntimeError):
    """D5: the SQLite database file is not there; only ``fwserver init`` creates one."""


def make_engine(url: str, *, timeout: float = DEFAULT_TIMEOUT, create: bool = False) -> Engine:
    """An engine for ``url`` with the settings our invariants need.

    D5 A SQLite file that does not exist is an error (``DatabaseMissingError``),
    never a new empty database answering as if it were the server's, unless
    ``create`` (``fwserver init``); connections open it read-write only.
    """
    if url.startswith("sqlite"):
        file = sqlite_file(url)
        database = None if file is None else str(file)
        if database is not None and not create:
            require_existing(url)
        engine = create_engine(url, connect_args={"timeout": timeout}, pool_timeout=timeout)
        if database is not None and not create:
            event.listen(engine, "do_connect", _read_write_only(database))
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so
        # that BEGIN IMMEDIATE serialises writers (audit chain, counters).
        event.listen(engine, "begin", _sqlite_begin_immediate)
        if database is not None:
            guard = _FileGuard(database)
            event.listen(engine, "begin", guard.check, insert=True)
            event.listen(engine, "commit", guard.check)
        return engine
    given = make_url(url).query
    arguments = {k: v for k, v in _libpq_timeouts(timeout).items() if k not in given}
    # D4 replaces pool_pre_ping: its ping cannot be given a deadline.
    engine = create_engine(url, pool_timeout=timeout, connect_args=arguments)
    deadlines = _Deadlines(timeout + CUT_GRACE, engine.dialect.loaded_dbapi.Error)
    event.listen(engine, "connect", _postgres_timeouts(timeout, deadlines))
    event.listen(engine, "checkout", deadlines.ping)
    event.listen(engine, "reset", deadlines.arm_pooled)
    event.listen(engine, "checkin", deadlines.disarm_pooled)
    event.listen(engine, "before_cursor_execute", deadlines.arm_cursor)
    event.listen(engine, "after_cursor_execute", deadlines.disarm_cursor)
    # Not "commit": a COMMIT cut by the watchdog may still have landed (D4).
    event.listen(engine, "rollback", deadlines.arm_connection)
    return engine


def require_existing(url: str) -> None:
    """D5: a SQLite database file that is missing is an error, never created here."""
    file = sqlite_file(url)
    if file is not None and not file.is_file():
        raise DatabaseMissingError(
            f"database {file} does not exist: run 'fwserver init' or restore a backup"
        )


def _read_write_only(file: str) -> Any:
    """D5 at connect: SQLite's ``mode=rw`` fails where it would create the file."""
    uri = f"file:{quote(str(Path(file).absolute()))}?mode=rw"

    def connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        cargs[:1] = [uri]
        cparams["uri"] = True

    return connect


def _libpq_timeouts(timeout: float) -> dict[str, int]:
    """D1 for libpq; a setting given in the URL wins."""
    seconds = max(1, math.ceil(timeout))
    return {
        # Whole seconds, at least 2 (libpq and psycopg round up to that).
        "connect_timeout": max(2, seconds),
        # An idle pooled connection whose peer is gone is found before use.
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        # Data not acknowledged this long (a network partition) ends the connection.
        "tcp_user_timeout": round((timeout + CUT_GRACE) * 1000),
    }


def failure_of(exc: BaseException) -> Literal["full", "unavailable"] | None:
    """What a database exception says of the database itself, if anything.

    ``full``: its storage is full; ``unavailable``: locked past the timeout,
    unreachable, failing, or its file gone (D1, D2); None: something else
    (a constraint, a bug).
    """
    if isinstance(exc, DatabaseUnavailableError | PoolTimeoutError | DisconnectionError):
        return "unavailable"
    if not isinstance(exc, DatabaseError):
        return None
    orig = exc.orig
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return "full"
    if getattr(orig, "sqlstate", None) == _PG_DISK_FULL:
        return "full"
    if isinstance(exc, OperationalError | InterfaceError | InternalError):
        return "unavailable"
    # A bare DatabaseError: SQLite's "file is not a database", "malformed".
    return "unavailable" if type(exc) is DatabaseError else None


class _FileGuard:
    """D2 for one SQLite file: the same file, never shorter than seen."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._identity: tuple[int, int] | None = None
        self._largest = 0
        self._lock = threading.Lock()

    def check(self, _connection: Any) -> None:
        try:
            info = self.path.stat()
        except OSError:
            raise DatabaseUnavailableError(f"the database file {self.path} is gone") from None
        with self._lock:
            identity = (info.st_dev, info.st_ino)
            if self._identity is None:
                self._identity = identity
            if identity != self._identity:
                raise DatabaseUnavailableError(f"the database file {self.path} was replaced")
            if info.st_size < self._largest:
                raise DatabaseUnavailableError(
                    f"the database file {self.path} was truncated"
                    f" ({info.st_size} bytes, {self._largest} before)"
                )
            self._largest = info.st_size


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _postgres_timeouts(timeout: float, deadlines: _Deadlines) -> Any:
    milliseconds = max(1, round(timeout * 1000))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # D1: a lock held elsewhere, or a statement, is waited for this long.
        deadlines.arm(dbapi_connection)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {milliseconds}")
        cursor.execute(f"SET statement_timeout = {milliseconds}")
        cursor.close()
        dbapi_connection.commit()
        deadlines.disarm(dbapi_connection)

    return on_connect


class _Deadlines:
    """D4: connections busy past their deadline are cut by one watchdog thread.

    Each wait on the server is armed with ``now + bound``. The watchdog cuts
    a connection whose deadline has passed only if a command is still in
    progress on it (libpq's transaction status), so an arm that nothing
    disarmed (a commit, after which the connection idles) never cuts an
    idle connection. Shutting the socket down wakes the thread waiting on it
    with a broken connection, which SQLAlchemy then discards. The thread
    starts with the first arm in each process (gunicorn forks workers).

    Every deadline is ``now + bound``, so a new one is never earlier than
    those armed already: the watchdog, asleep until the soonest of them (or,
    with none armed, for ``bound``), wakes in time for it without being told.
    An arm wakes it only when its deadline comes before that wake-up (never,
    in a running process); otherwise each statement would wake the thread.
    """

    def __init__(self, bound: float, driver_error: type[Exception]) -> None:
        self.bound = bound
        self.driver_error = driver_error
        self._armed: dict[int, tuple[float, Any]] = {}
        self._cut: set[int] = set()
        self._changed = threading.Condition()
        self._watcher_pid = 0
        #: When the watchdog wakes next (it sets this each time it goes to sleep).
        self._wake_at = -math.inf

    def arm(self, dbapi_connection: Any) -> None:
        deadline = time.monotonic() + self.bound
        with self._changed:
            self._armed[id(dbapi_connection)] = (deadline, dbapi_connection)
            self._cut.discard(id(dbapi_connection))
            if self._watcher_pid != os.getpid():
                self._watcher_pid = os.getpid()
                self._wake_at = -math.inf  # forked: the parent's watchdog is not here
                threading.Thread(target=self._watch, name="db-deadlines", daemon=True).start()
            elif deadline < self._wake_at:
                self._changed.notify()

    def disarm(self, dbapi_connection: Any) -> bool:
        """No deadline any more; True if the connection was cut."""
        with self._changed:
            self._armed.pop(id(dbapi_connection), None)
            if id(dbapi_connection) in self._cut:
                self._cut.discard(id(dbapi_connection))
                return True
            return False

    def ping(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """At checkout: a dead connection is replaced, a server that hangs is a 503."""
        returned = record.info.get(_RETURNED)
        if returned is not None and time.monotonic() - returned < PING_IDLE:
            return
        self.arm(dbapi_connection)
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except self.driver_error as exc:
            if self.disarm(dbapi_connection):
                raise DatabaseUnavailableError(
                    f"the database did not answer within {self.bound:g} s"
                ) from None
            raise DisconnectionError(type(exc).__name__) from exc
        self.disarm(dbapi_connection)

    def arm_pooled(self, dbapi_connection: Any, *_args: Any) -> None:
        self.arm(dbapi_connection)

    def disarm_pooled(self, dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            self.disarm(dbapi_connection)
            record.info[_RETURNED] = time.monotonic()

    def arm_cursor(self, _conn: Any, cursor: Any, *_args: Any) -> None:
        self.arm(cursor.connection)

    def disarm_cursor(self, _conn: Any, cursor: Any, *_args: Any) -> None:
        self.disarm(cursor.connection)

    def arm_connection(self, conn: Connection) -> None:
        if not (conn.closed or conn.invalidated):
            dbapi_connection = conn.connection.dbapi_connection
            if dbapi_connection is not None:
                self.arm(dbapi_connection)

    def _watch(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for key, (deadline, dbapi_connection) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[key]
                        if _busy(dbapi_connection) and _shut_down(dbapi_connection):
                            self._cut.add(key)
                soonest = min(
                    (deadline for deadline, _ in self._armed.values()), default=now + self.bound
                )
                self._wake_at = soonest
                self._changed.wait(max(0.0, soonest - now))


def _busy(dbapi_connection: Any) -> bool:
    try:
        return bool(dbapi_connection.info.transaction_status == _PQTRANS_ACTIVE)
    except Exception:  # noqa: BLE001 - a closed connection: nothing to cut
        return False


def _shut_down(dbapi_connection: Any) -> bool:
    """Shut the connection's socket down (its file descriptor stays its owner's)."""
    try:
        with socket.socket(fileno=os.dup(dbapi_connection.fileno())) as copy:
            copy.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001 - closed meanwhile: nothing to cut
        return False
    logger.warning("database connection cut: no answer within the timeout (D4)")
    return True


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def table_metadata() -> MetaData:
    """Every table the models describe (the schema is made by migrations, not from this)."""
    from update_server import models  # noqa: F401, PLC0415 - registers the tables
    from update_server.alerts import models as _alerts  # noqa: F401, PLC0415
    from update_server.authorizations import models as _authorizations  # noqa: F401, PLC0415
    from update_server.deployments import models as _deployments  # noqa: F401, PLC0415
    from update_server.devices import models as _devices  # noqa: F401, PLC0415
    from update_server.freeze import models as _freeze  # noqa: F401, PLC0415
    from update_server.publication import models as _publication  # noqa: F401, PLC0415

    return Base.metadata


AFTER_COMMIT_ERROR = "fw.after_commit_error"


def after_commit_error(session: Session) -> Exception | None:
    """What a commit hook could not do after the session's last commit (taken once).

    Raising inside SQLAlchemy's ``after_commit`` would leave the session's
    connection checked out, so a hook leaves its error in
    ``session.info[AFTER_COMMIT_ERROR]`` and the caller of the commit raises
    it (the audit anchor: the action is committed but must not be answered
    as done, R27/R28).
    """
    failure: Exception | None = session.info.pop(AFTER_COMMIT_ERROR, None)
    return failure


def _raise_after_commit_error(session: Session) -> None:
    failure = after_commit_error(session)
    if failure is not None:
        raise failure


def commit_checked(session: Session) -> None:
    """Commit, then raise what a commit hook could not do (``after_commit_error``).

    For code that commits a session of its own outside ``transaction``.
    """
    session.commit()
    _raise_after_commit_error(session)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed if the block succeeds, rolled back if not.

    An error a commit hook met after the commit (``after_commit_error``) is
    raised here: the work stands, but it is not reported as done.
    """
    session = factory()
    try:
        yield session
        session.commit()
        _raise_after_commit_error(session)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
