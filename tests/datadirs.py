"""Server data directories for the server tests: one real init per worker, a copy per test.

``fwserver init``'s own code (``init_data_dir``: the software token and its
keys, the TLS CA and certificate, the secrets, the database migrated to the
head) costs 0.15 s on SQLite and 0.25 to 0.45 s on PostgreSQL, and about 1,300
server tests each need a fresh data directory on each pass of the suite.
``Templates`` runs that code once per test process and database engine, into
a directory of its own, and gives every test an exact copy:

T1 The files are copied as they are (modes kept). A test's keys, certificate
   and secrets are the template's: no test compares them with another test's.
T2 The database: on SQLite the template's file is copied to the test's path;
   on PostgreSQL the statements that the template's init sent to the
   database (recorded from SQLAlchemy's cursor events, in order, with their
   parameters) are sent again, in one transaction, into the test's fresh,
   empty schema (``tests.pg``: the schema is the connection's search path,
   and the migrations name no schema). The first test of a process gets the
   real init (it is the template).
T3 ``server.json`` is the template's with the test's own ``database_url``.

``tests/test_test_helpers.py`` checks that a copy's schema and migration
version are the real init's on both engines. The tests of init and of the
migrations themselves (tests/update_server/test_setup*.py, test_migrations*)
call them directly, never this.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from fwcommon.files import atomic_write
from hsm_mock import KdfParams
from update_server.config import CONFIG_FILE, ServerConfig, sqlite_file
from update_server.setup import init_data_dir

#: One statement as the driver received it: SQL, parameters, executemany.
Statement = tuple[str, Any, bool]


@dataclass
class _Template:
    data_dir: Path
    database: Path | None  # the SQLite file (T2)
    statements: list[Statement] = field(default_factory=list)  # PostgreSQL (T2)


class Templates:
    """Per-engine templates under ``root``, made on first use (T1-T3)."""

    def __init__(self, root: Path, *, kdf: KdfParams) -> None:
        self._root = root
        self._kdf = kdf
        self._made: dict[str, _Template] = {}

    def data_dir(self, destination: Path, database_url: str) -> ServerConfig:
        """A data directory at ``destination`` on ``database_url`` (empty, not yet migrated)."""
        engine = make_url(database_url).get_backend_name()
        template = self._made.get(engine)
        if template is None:
            self._made[engine] = self._make(engine, database_url)
            template = self._made[engine]
        else:
            _database_from(template, database_url)
        shutil.copytree(template.data_dir, destination, symlinks=True)
        config = ServerConfig.load(destination, env={}).with_changes(database_url=database_url)
        settings = json.dumps(config.to_file_json(), indent=2).encode()
        atomic_write(destination / CONFIG_FILE, settings, mode=0o600)
        return ServerConfig.load(destination, env={})

    def _make(self, engine: str, database_url: str) -> _Template:
        """The real init, once: on SQLite into a file of its own, then copied to the
        test's; on PostgreSQL into the test's schema, its statements recorded."""
        data_dir = self._root / engine / "data"
        if engine == "sqlite":
            database = self._root / engine / "server.db"
            init_data_dir(data_dir, database_url=f"sqlite:///{database}", kdf=self._kdf)
            template = _Template(data_dir, database)
            _database_from(template, database_url)
            return template
        target = make_url(database_url)
        statements: list[Statement] = []

        def record(
            connection: Any,
            _cursor: Any,
            statement: str,
            parameters: Any,
            _context: Any,
            executemany: bool,
        ) -> None:
            if connection.engine.url == target:
                statements.append((statement, parameters, executemany))

        event.listen(Engine, "before_cursor_execute", record)
        try:
            init_data_dir(data_dir, database_url=database_url, kdf=self._kdf)
        finally:
            event.remove(Engine, "before_cursor_execute", record)
        return _Template(data_dir, None, statements)


def _database_from(template: _Template, database_url: str) -> None:
    """The test's database, made the template's (T2)."""
    if template.database is not None:
        destination = sqlite_file(database_url)
        if destination is None:
            raise ValueError(f"not a SQLite file URL: {database_url}")
        for suffix in ("", "-wal"):
            source = Path(f"{template.database}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{destination}{suffix}")
        return
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for statement, parameters, many in template.statements:
                if many:
                    cursor.executemany(statement, parameters)
                else:
                    cursor.execute(statement, parameters or None)
    finally:
        engine.dispose()
