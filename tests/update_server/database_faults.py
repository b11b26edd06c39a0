"""Database faults for server tests: a lock held by another process, a truncated file.

``database_locked(url)`` holds the database the way another program would:
on SQLite a write transaction (``BEGIN EXCLUSIVE``) on a connection of its
own, on PostgreSQL an ``ACCESS EXCLUSIVE`` lock on every table of the
schema. ``truncated(file)`` empties an SQLite file and puts its bytes back
afterwards, as an operator restoring it would.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, make_url

from update_server.db import table_metadata


@contextlib.contextmanager
def database_locked(url: str) -> Iterator[None]:
    """Another process holds the database for the duration of the block."""
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(str(make_url(url).database), timeout=10)) as db:
            db.isolation_level = None
            db.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                db.execute("ROLLBACK")
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = ", ".join(f'"{name}"' for name in table_metadata().tables)
            connection.exec_driver_sql(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.rollback()
    finally:
        engine.dispose()


@contextlib.contextmanager
def truncated(file: Path) -> Iterator[None]:
    """``file`` is empty for the duration of the block, then restored in place."""
    saved = file.read_bytes()
    with file.open("r+b") as handle:
        handle.truncate(0)
    try:
        yield
    finally:
        with file.open("r+b") as handle:
            handle.write(saved)
