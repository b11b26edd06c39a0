"""The database in a backup: one consistent snapshot, exported table by table as JSON lines.

The same export for SQLite and PostgreSQL, read through SQLAlchemy, rather
than ``pg_dump``: ``pg_dump`` must be at least as new as the server (a host's
client often is not), its output names the schema it was made in, and it
could only be restored into PostgreSQL. This one restores into an empty
database of either engine (a server can move from SQLite to PostgreSQL by a
backup and a restore), and its rows are hashed in the manifest like any file.

D1 Consistent: PostgreSQL is read in one ``REPEATABLE READ, READ ONLY``
transaction (one snapshot for every table; writers are not blocked); SQLite
is first copied with SQLite's online backup API (a read transaction: in WAL
mode writers go on), and the copy is read.
D2 Every table but ``alembic_version`` is exported in primary-key order: a
first line ``{"columns": [...]}``, then one JSON array per row. A column's
value is encoded by its type: bytes in base64, date and time in ISO 8601
(an aware time keeps its offset), JSON as JSON, anything else as itself.
D3 The schema revision goes in the manifest; a database at a revision this
fwserver does not know is refused (restore could not rebuild it).
D4 Import into an empty database only: the schema is rebuilt by the migrations
at the archive's revision, the rows are inserted in foreign-key order in one
transaction, PostgreSQL's sequences are moved past the restored ids, and the
schema is then upgraded to this fwserver's head (``fwserver db upgrade``).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Time,
    create_engine,
    func,
    inspect,
    select,
    text,
)

from update_server import migrations
from update_server.backup.errors import BackupError
from update_server.config import sqlite_file
from update_server.db import make_engine

#: Seconds one export or import may take (the server's per-request bound would cut it).
TIMEOUT = 3600.0
BATCH = 500
Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def export(url: str, work: Path) -> tuple[str, dict[str, Path]]:
    """D1-D3: the schema revision and one JSON-lines file per table, written in ``work``."""
    file = sqlite_file(url)
    if file is not None:
        copy = work / "snapshot.db"
        _sqlite_snapshot(file, copy)
        engine = create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as connection:
                return _export(connection, work)
        finally:
            engine.dispose()
            copy.unlink()
    # A plain engine: the server's checks out each connection with a ping, whose
    # transaction a snapshot's isolation level could not be set on.
    engine = create_engine(url)
    snapshot = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    try:
        with engine.connect().execution_options(**snapshot) as connection:
            return _export(connection, work)
    finally:
        engine.dispose()


def _sqlite_snapshot(file: Path, copy: Path) -> None:
    if not file.is_file():
        raise BackupError(f"the database file {file} is missing: nothing to back up")
    source = sqlite3.connect(f"file:{file}?mode=ro", uri=True, timeout=TIMEOUT)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _export(connection: Connection, work: Path) -> tuple[str, dict[str, Path]]:
    revision = migrations.current(connection)
    if revision is None or revision not in migrations.revisions():
        raise BackupError(
            f"the database schema is {revision or 'none'}, not one this fwserver knows"
            f" (up to {migrations.head()}): back it up with the fwserver that runs it"
        )
    metadata = MetaData()
    metadata.reflect(connection)
    files = {}
    for table in metadata.sorted_tables:
        if table.name != migrations.VERSION_TABLE:
            files[table.name] = work / f"{table.name}.jsonl"
            _export_table(connection, table, files[table.name])
    return revision, files


def _export_table(connection: Connection, table: Table, out: Path) -> None:
    columns = list(table.columns)
    codecs = [_codec(column)[0] for column in columns]
    order = list(table.primary_key.columns) or columns
    rows = connection.execution_options(yield_per=BATCH).execute(select(table).order_by(*order))
    with out.open("w", encoding="utf-8") as stream:
        stream.write(json.dumps({"columns": [column.name for column in columns]}) + "\n")
        for row in rows:
            values = [encode(value) for encode, value in zip(codecs, row, strict=True)]
            stream.write(json.dumps(values, separators=(",", ":")) + "\n")


def import_rows(url: str, revision: str, tables: dict[str, Path]) -> None:
    """D4: rebuild the schema at ``revision``, insert every row, upgrade to head."""
    if revision not in migrations.revisions():
        raise BackupError(
            f"the archive's database schema is {revision}, newer than this fwserver's"
            f" {migrations.head()}: restore it with the fwserver that made it"
        )
    engine = make_engine(url, timeout=TIMEOUT, create=True)
    try:
        _refuse_used(engine)
        try:
            migrations.upgrade(engine, to=revision)
            with engine.begin() as connection:
                _insert_all(connection, tables)
            migrations.upgrade(engine)
        except BaseException:
            _drop_all(engine)
            raise
    finally:
        engine.dispose()


def _refuse_used(engine: Engine) -> None:
    with engine.connect() as connection:
        found = inspect(connection).get_table_names()
    if found:
        where = engine.url.render_as_string(hide_password=True)
        raise BackupError(
            f"the database {where} already holds tables ({', '.join(sorted(found)[:5])}...):"
            " restore into an empty database (--database-url); nothing was changed"
        )


def _drop_all(engine: Engine) -> None:
    """What a failed import made, dropped: the database is empty again."""
    metadata = MetaData()
    with engine.begin() as connection:
        metadata.reflect(connection)
        metadata.drop_all(connection)


def _insert_all(connection: Connection, tables: dict[str, Path]) -> None:
    metadata = MetaData()
    metadata.reflect(connection)
    known = {table.name for table in metadata.sorted_tables} - {migrations.VERSION_TABLE}
    if set(tables) != known:
        raise BackupError(
            f"the archive's tables {sorted(tables)} are not the schema's {sorted(known)}:"
            " the archive is damaged; nothing was restored"
        )
    for table in metadata.sorted_tables:
        if table.name in tables:
            _insert_table(connection, table, tables[table.name])
    if connection.dialect.name == "postgresql":
        _advance_sequences(connection, metadata)


def _insert_table(connection: Connection, table: Table, source: Path) -> None:
    with source.open(encoding="utf-8") as stream:
        header = json.loads(next(stream))
        columns = [table.columns[name] for name in header["columns"]]
        decoders = [_codec(column)[1] for column in columns]
        batch: list[dict[str, Any]] = []
        for line in stream:
            values = json.loads(line)
            batch.append(
                {
                    column.name: decode(value)
                    for column, decode, value in zip(columns, decoders, values, strict=True)
                }
            )
            if len(batch) == BATCH:
                connection.execute(table.insert(), batch)
                batch = []
        if batch:
            connection.execute(table.insert(), batch)


def _advance_sequences(connection: Connection, metadata: MetaData) -> None:
    for table in metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer):
            continue
        sequence = connection.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table.name, "column": keys[0].name},
        ).scalar()
        highest = connection.execute(select(func.max(keys[0]))).scalar()
        if sequence is not None and highest is not None:
            connection.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": highest})


def _codec(column: Column[Any]) -> Codec:
    """D2: how one column's values are written to JSON and read back."""
    kind = column.type
    if isinstance(kind, LargeBinary):
        return _b64encode, _b64decode
    if isinstance(kind, DateTime):
        aware = bool(kind.timezone)
        return _isoformat, lambda value: _datetime(value, aware=aware)
    if isinstance(kind, Date):
        return _isoformat, lambda value: None if value is None else date.fromisoformat(value)
    if isinstance(kind, Time):
        return _isoformat, lambda value: None if value is None else time.fromisoformat(value)
    return _same, _same  # JSON, text, numbers, booleans: JSON already


def _same(value: Any) -> Any:
    return value


def _b64encode(value: Any) -> Any:
    return None if value is None else base64.b64encode(bytes(value)).decode()


def _b64decode(value: Any) -> Any:
    return None if value is None else base64.b64decode(value)


def _isoformat(value: Any) -> Any:
    return None if value is None else value.isoformat()


def _datetime(value: Any, *, aware: bool) -> datetime | None:
    """Naive values are UTC here (SQLite keeps no offset); PostgreSQL's carry one."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if aware and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    if not aware and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def table_rows(files: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """How many rows each exported table holds (for the command's summary)."""
    for name, path in files.items():
        with path.open(encoding="utf-8") as stream:
            yield name, sum(1 for _ in stream) - 1
