"""The database: SQLAlchemy 2 engine and sessions, SQLite or PostgreSQL.

The same code runs on both. SQLite gets foreign keys on and a busy timeout so
several gunicorn workers share it; on PostgreSQL the counters that must hold
across workers (failed logins, used TOTP steps, the audit chain head) rely on
row locks and unique constraints, never on process memory.

A database that is locked, unreachable or failing never makes a request
wait long nor answer as if all were well (rules D1-D3):

- D1 Every wait is bounded by ``timeout`` (``ServerConfig.database_timeout``,
  5 s): SQLite's busy timeout, PostgreSQL's connect and lock timeouts, and
  the wait for a pooled connection. Past it the driver raises, and the app
  answers 503 (``failure_of``).
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

import math
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event, make_url
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

DEFAULT_TIMEOUT = 5.0
#: SQLSTATE class 53: insufficient resources (53100: disk full).
_PG_DISK_FULL = "53100"


class Base(DeclarativeBase):
    """Declarative base of every table."""


class DatabaseUnavailableError(SQLAlchemyError):
    """The database file was truncated, removed or replaced under the server (D2)."""


def make_engine(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> Engine:
    """An engine for ``url`` with the settings our invariants need."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": timeout}, pool_timeout=timeout)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so
        # that BEGIN IMMEDIATE serialises writers (audit chain, counters).
        event.listen(engine, "begin", _sqlite_begin_immediate)
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            guard = _FileGuard(database)
            event.listen(engine, "begin", guard.check, insert=True)
            event.listen(engine, "commit", guard.check)
        return engine
    # libpq counts whole seconds, at least 2; a timeout in the URL wins.
    arguments = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": 0}
    if arguments:
        arguments["connect_timeout"] = max(2, math.ceil(timeout))
    engine = create_engine(url, pool_pre_ping=True, pool_timeout=timeout, connect_args=arguments)
    event.listen(engine, "connect", _postgres_lock_timeout(timeout))
    return engine


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


def _postgres_lock_timeout(timeout: float) -> Any:
    milliseconds = max(1, round(timeout * 1000))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # D1: a row or table lock held elsewhere is waited for this long.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET lock_timeout = {milliseconds}")
        cursor.close()
        dbapi_connection.commit()

    return on_connect


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def create_schema(engine: Engine) -> None:
    """Create every table that does not exist yet."""
    from update_server import models  # noqa: F401, PLC0415 - registers the tables
    from update_server.publication import models as _publication  # noqa: F401, PLC0415

    Base.metadata.create_all(engine)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed if the block succeeds, rolled back if not."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
