"""Schema migrations of the server database (Alembic), and the check that the
server runs only on the schema it knows.

Rules:

- M1 Every schema change ships as a migration in ``versions/`` (revision ids
  ``0001``, ``0002``... in one line, no branches). ``0001`` is the schema as it
  was when migrations began. A test compares the schema ``upgrade`` makes
  with the models' on SQLite and PostgreSQL, so a model change without its
  migration fails.
- M2 ``fwserver init`` makes the schema by upgrading the new, empty database
  to the head revision; nothing else creates tables.
- M3 The server (the app, ``serve``, every command that opens the database)
  refuses a database that is not at this code's head revision: an older one
  is upgraded with ``fwserver db upgrade``; a newer one was written by a
  newer fwserver (run that one, or restore the backup taken before it).
- M4 An upgrade is one transaction (DDL is transactional on SQLite and
  PostgreSQL alike): a failing migration leaves the database at the revision
  it had.
- M5 A database made before migrations (tables, no ``alembic_version``) is
  adopted by ``fwserver db upgrade`` only if its schema equals the baseline
  exactly (Alembic's ``compare_metadata``): it is stamped ``0001``, then
  upgraded. Any difference is refused, listed, and nothing is changed.

Alembic runs from code: the configuration is built here with the script
location inside this package, so no ``alembic.ini`` is needed at runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect

SCRIPTS = Path(__file__).resolve().parent
BASELINE = "0001"
VERSION_TABLE = "alembic_version"
UPGRADE_HINT = "run 'fwserver db upgrade'"


class SchemaError(RuntimeError):
    """The database schema is not the one this fwserver knows; the message says what to do."""


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` did: from which revision (None: no schema) to which.

    ``before`` of an adopted database is the baseline it was stamped at.
    """

    before: str | None
    after: str
    #: A database made before migrations, found equal to the baseline (M5).
    adopted: bool = False


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def revisions() -> list[str]:
    """Every revision this fwserver knows, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def head() -> str:
    """The revision this fwserver's models describe."""
    revision = _scripts().get_current_head()
    if revision is None:  # pragma: no cover - the baseline ships with the package
        raise SchemaError(f"no migrations found in {SCRIPTS}")
    return revision


def current(connection: Connection) -> str | None:
    """The database's revision, or None if it has no ``alembic_version`` table."""
    return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """M3: raise ``SchemaError`` unless the database is at this fwserver's head."""
    with engine.connect() as connection:
        problem = schema_problem(connection)
    if problem is not None:
        raise problem


def schema_problem(connection: Connection) -> SchemaError | None:
    """What keeps this fwserver from running on the database (M3), or None."""
    found = current(connection)
    expected = head()
    if found == expected:
        return None
    if found is None and _tables(connection):
        return SchemaError(
            "the database was made before schema migrations (it has no alembic_version"
            f" table); this fwserver needs schema {expected}: {UPGRADE_HINT}"
        )
    if found is None:
        return SchemaError(
            "the database holds no fwserver schema: run 'fwserver init' for a new server,"
            " or check database_url in server.json"
        )
    return _mismatch(found, expected)


def _mismatch(found: str, expected: str) -> SchemaError:
    if found not in revisions():
        return SchemaError(
            f"the database schema is at {found}, which is newer than this fwserver"
            f" (it knows up to {expected}): run the fwserver that upgraded it,"
            " or restore the backup taken before the upgrade"
        )
    return SchemaError(
        f"the database schema is at {found}, this fwserver needs {expected}: {UPGRADE_HINT}"
    )


def upgrade(engine: Engine, *, to: str = "head") -> Upgrade:
    """Bring the database to revision ``to`` in one transaction (M4, M5)."""
    with engine.begin() as connection:
        before = current(connection)
        adopted = before is None and bool(_tables(connection))
        if adopted:
            _check_baseline(connection)
            command.stamp(_config(connection), BASELINE)
            before = BASELINE
        elif before is not None and before not in revisions():
            raise _mismatch(before, head())
        command.upgrade(_config(connection), to)
        after = current(connection)
    if after is None:  # pragma: no cover - alembic always writes its version
        raise SchemaError("the upgrade left no schema revision")
    return Upgrade(before, after, adopted=adopted)


def schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    """Alembic's differences between the database and ``metadata`` (empty: equal)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences: list[Any] = compare_metadata(context, metadata)
    return differences


def baseline_metadata() -> MetaData:
    """The tables of revision 0001, frozen in that migration."""
    script = _scripts().get_revision(BASELINE)
    if script is None:  # pragma: no cover - the baseline ships with the package
        raise SchemaError(f"migration {BASELINE} not found in {SCRIPTS}")
    metadata: MetaData = script.module.BASELINE
    return metadata


def _check_baseline(connection: Connection) -> None:
    differences = schema_differences(connection, baseline_metadata())
    if differences:
        listed = "; ".join(_describe(difference) for difference in differences[:10])
        raise SchemaError(
            "the database was made before schema migrations and its schema is not the"
            f" baseline ({BASELINE}), so it cannot be adopted safely: {listed};"
            " nothing was changed: restore it from a backup made by fwserver,"
            " or migrate its data by hand into a database made by 'fwserver init'"
        )


def _describe(difference: Any) -> str:
    """One difference in words: the operation and the table, column or index it names."""
    if isinstance(difference, list):  # column changes come as a list of modify ops
        return ", ".join(_describe(change) for change in difference)
    operation = str(difference[0])
    names = [getattr(item, "name", None) for item in difference[1:] if hasattr(item, "name")]
    named = [str(name) for name in names if name]
    if operation.startswith("modify_") and len(difference) > 3:
        named = [f"{difference[2]}.{difference[3]}"]
    return f"{operation} {' '.join(named)}".strip()


def _tables(connection: Connection) -> list[str]:
    return [name for name in inspect(connection).get_table_names() if name != VERSION_TABLE]
