"""Schema migrations (update_server.migrations, rules M1-M5), on SQLite and PostgreSQL.

Each test runs on both database legs (``database_url``): a database built
at a revision and upgraded serves requests; the migrations' head is the
models' schema exactly, so a model change without its migration fails
here; the server refuses a schema it does not know, with a message that
says what to do; a database made before migrations is adopted only if it
is exactly the baseline. Revision 0002 turns the old tombstone of a removed
person (a marker for a password hash) into ``users.removed_at``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import Column, Engine, Integer, MetaData, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from tests.clocks import FakeClock
from tests.update_server.conftest import FAST_KDF
from tests.update_server.people import enrolled_user, login
from update_server import migrations, users
from update_server.app import create_app
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.cli import main
from update_server.config import ServerConfig
from update_server.db import table_metadata
from update_server.errors import ConflictError
from update_server.keys import signer_loader
from update_server.mfa import passwords
from update_server.migrations import SchemaError
from update_server.models import AuditEntry, Role
from update_server.setup import init_data_dir

REVISIONS = migrations.revisions()
#: A row to insert, column name to value.
Row = dict[str, object]
#: A migration after today's head, for a server meeting its own future.
FUTURE = '''"""A column that a later fwserver adds."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("nickname", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("nickname")
'''


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A plain engine on the leg's empty database (SQLite: the file is made on connect)."""
    made = create_engine(database_url)
    with made.connect():
        pass
    yield made
    made.dispose()


@pytest.fixture
def server_config(tmp_path: Path, database_url: str) -> ServerConfig:
    """A data directory (keys, TLS) whose database is the leg's, built by the test."""
    made = init_data_dir(tmp_path / "data", kdf=FAST_KDF).config
    return replace(made, database_url=database_url)


@pytest.fixture
def next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This fwserver's migrations plus one more (head + 1): the code of a later fwserver."""
    later = f"{int(REVISIONS[-1]) + 1:04d}"
    scripts = tmp_path / "later-migrations"
    shutil.copytree(migrations.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    future = FUTURE.format(revision=later, head=REVISIONS[-1])
    (scripts / "versions" / f"{later}_future.py").write_text(future)
    monkeypatch.setattr(migrations, "SCRIPTS", scripts)
    migrations._scripts.cache_clear()
    yield later
    migrations._scripts.cache_clear()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return migrations.current(connection)


def _differences(engine: Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as connection:
        return migrations.schema_differences(connection, metadata)


def _set_revision(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


@pytest.mark.usefixtures("fast_hashing")
def test_baseline_database_upgraded_to_head_serves_requests(
    engine: Engine, server_config: ServerConfig, clock: FakeClock
) -> None:
    """A database built at 0001 and upgraded runs the server: people enrol and log in."""
    assert migrations.upgrade(engine, to=migrations.BASELINE).after == migrations.BASELINE
    done = migrations.upgrade(engine)
    assert (done.before, done.after) == (migrations.BASELINE, migrations.head())
    app = create_app(server_config, clock=clock, signer_loader=signer_loader(server_config))
    app.testing = True
    client = app.test_client()
    try:
        alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
        me = client.get("/api/v1/auth/me", headers=alice.headers)
        assert me.status_code == 200
        assert me.get_json()["name"] == "alice"
    finally:
        app.extensions["fw"].engine.dispose()


@pytest.mark.parametrize("revision", REVISIONS)
def test_every_revision_upgrades_to_the_models_schema(engine: Engine, revision: str) -> None:
    """M1: from each released revision, ``upgrade`` reaches head, equal to the models."""
    migrations.upgrade(engine, to=revision)
    assert _revision(engine) == revision
    migrations.upgrade(engine)
    assert _revision(engine) == migrations.head()
    assert _differences(engine, table_metadata()) == []
    migrations.check_schema(engine)


def test_migrations_head_is_exactly_what_the_models_describe(engine: Engine) -> None:
    """M1: ``upgrade head`` and ``create_all`` give the same schema (empty diff)."""
    migrations.upgrade(engine)
    assert _differences(engine, table_metadata()) == []


def test_a_model_change_without_a_migration_is_seen(engine: Engine) -> None:
    """M1: the comparison the test above relies on does see a column it lacks."""
    migrations.upgrade(engine)
    changed = MetaData()
    for table in table_metadata().tables.values():
        table.to_metadata(changed)
    changed.tables["users"].append_column(Column("nickname", Integer, nullable=True))
    differences = _differences(engine, changed)
    assert [d[0] for d in differences if isinstance(d, tuple)] == ["add_column"]


def test_init_makes_the_schema_through_migrations(tmp_path: Path, database_url: str) -> None:
    """M2: ``fwserver init`` leaves the database at head, with its version recorded."""
    config = init_data_dir(tmp_path / "data", database_url=database_url, kdf=FAST_KDF).config
    made = create_engine(config.database_url)
    try:
        assert _revision(made) == migrations.head()
        assert _differences(made, table_metadata()) == []
    finally:
        made.dispose()


def test_server_refuses_a_database_made_before_migrations(
    engine: Engine, server_config: ServerConfig
) -> None:
    """M3: tables without alembic_version: refused, and told to run db upgrade."""
    table_metadata().create_all(engine)
    with pytest.raises(SchemaError, match=r"made before schema migrations.*'fwserver db upgrade'"):
        create_app(server_config, signer_loader=signer_loader(server_config))


def test_server_refuses_an_empty_database(engine: Engine, server_config: ServerConfig) -> None:
    """M3: no schema at all is no server's database: refused, never created on the fly."""
    with pytest.raises(SchemaError, match=r"holds no fwserver schema: run 'fwserver init'"):
        create_app(server_config, signer_loader=signer_loader(server_config))
    assert inspect(engine).get_table_names() == []


def test_server_refuses_an_older_schema(
    engine: Engine, server_config: ServerConfig, next_revision: str
) -> None:
    """M3: a later fwserver on this one's database asks for ``fwserver db upgrade``."""
    migrations.upgrade(engine, to=REVISIONS[-1])
    expected = (
        f"database schema is at {REVISIONS[-1]}, this fwserver needs {next_revision}:"
        " run 'fwserver db upgrade'"
    )
    with pytest.raises(SchemaError, match=expected):
        create_app(server_config, signer_loader=signer_loader(server_config))
    done = migrations.upgrade(engine)
    assert (done.before, done.after) == (REVISIONS[-1], next_revision)
    columns = {column["name"] for column in inspect(engine).get_columns("users")}
    assert "nickname" in columns


def test_server_and_upgrade_refuse_a_newer_schema(
    engine: Engine, server_config: ServerConfig
) -> None:
    """M3: a schema written by a newer fwserver is refused; upgrade changes nothing."""
    migrations.upgrade(engine)
    _set_revision(engine, "0099")
    newer = r"schema is at 0099, which is newer than this fwserver"
    with pytest.raises(SchemaError, match=newer):
        create_app(server_config, signer_loader=signer_loader(server_config))
    with pytest.raises(SchemaError, match=newer):
        migrations.upgrade(engine)
    assert _revision(engine) == "0099"


def test_db_upgrade_adopts_a_database_equal_to_the_baseline(
    engine: Engine, server_config: ServerConfig
) -> None:
    """M5: a pre-migration database whose schema is the baseline is stamped, then upgraded."""
    migrations.baseline_metadata().create_all(engine)
    done = migrations.upgrade(engine)
    assert done.adopted
    assert (done.before, done.after) == (migrations.BASELINE, migrations.head())
    migrations.check_schema(engine)


def test_db_upgrade_refuses_to_adopt_a_database_that_differs(engine: Engine) -> None:
    """M5: any difference from the baseline is listed and nothing is changed."""
    legacy = MetaData()
    for table in migrations.baseline_metadata().tables.values():
        table.to_metadata(legacy)
    legacy.tables["users"].append_column(Column("shoe_size", Integer, nullable=True))
    legacy.create_all(engine)
    with pytest.raises(SchemaError, match=r"not the baseline.*remove_column.*nothing was changed"):
        migrations.upgrade(engine)
    assert "alembic_version" not in inspect(engine).get_table_names()


def test_db_commands_report_and_upgrade(tmp_path: Path, database_url: str) -> None:
    """``fwserver db current`` and ``db upgrade`` on a database made before migrations."""
    data_dir = init_data_dir(tmp_path / "data", database_url=database_url, kdf=FAST_KDF)
    data = ["--data-dir", str(data_dir.config.data_dir)]
    head = migrations.head()
    runner = CliRunner()
    current = runner.invoke(main, ["db", "current", *data])
    assert current.exit_code == 0, current.output
    assert current.output == f"database schema: {head}; this fwserver: {head}\n  up to date\n"
    made = create_engine(database_url)
    try:  # the same server, as it was before migrations: the baseline, no version table
        with made.begin() as connection:
            command.downgrade(migrations._config(connection), migrations.BASELINE)
            connection.execute(text("DROP TABLE alembic_version"))
    finally:
        made.dispose()
    refused = runner.invoke(main, ["user", "list", *data])
    assert refused.exit_code == 1
    assert "run 'fwserver db upgrade'" in refused.output
    upgraded = runner.invoke(main, ["db", "upgrade", *data])
    assert upgraded.exit_code == 0, upgraded.output
    assert "adopted a database made before migrations" in upgraded.output
    again = runner.invoke(main, ["db", "upgrade", *data])
    assert again.output == f"database schema already at {head}: nothing to do\n"
    assert runner.invoke(main, ["user", "list", *data]).exit_code == 0


#: The password hash that marked a removed person up to revision 0001.
OLD_TOMBSTONE = "!removed"
TOMBSTONES = "0002"


def _person_at_0001(name: str, *, password_hash: str, disabled: bool, created: datetime) -> Row:
    """A ``users`` row as revision 0001 stores it."""
    return {
        "name": name,
        "role": Role.RELEASE_ENGINEER.value,
        "password_hash": password_hash,
        "must_change_password": True,
        "totp_secret": None,
        "totp_enrolled": False,
        "disabled": disabled,
        "created_at": created,
        "last_login_at": None,
        "last_login_source": None,
        "failures_since_login": 0,
    }


def _database_at_0001_with_tombstones(engine: Engine, clock: FakeClock) -> tuple[datetime, str]:
    """0001 holding alice (removed, audited), bob (removed, no audit entry), carol (present).

    Returns when alice's removal was audited, and carol's password.
    """
    migrations.upgrade(engine, to=migrations.BASELINE)
    created, removed_on = clock.now - timedelta(days=30), clock.now - timedelta(days=3)
    carol_password = "correct horse battery staple 0001"
    rows = [
        _person_at_0001("alice", password_hash=OLD_TOMBSTONE, disabled=True, created=created),
        _person_at_0001("bob", password_hash=OLD_TOMBSTONE, disabled=True, created=created),
        _person_at_0001(
            "carol",
            password_hash=passwords.hash_password(carol_password),
            disabled=False,
            created=created,
        ),
    ]
    with engine.begin() as connection:
        connection.execute(migrations.baseline_metadata().tables["users"].insert(), rows)
    operator = Actor(name="cli:root", role="operator", source="local")
    with Session(engine) as db, db.begin():
        for change, time in (("disable", removed_on - timedelta(days=1)), ("remove", removed_on)):
            event = audit_event(
                Action.USER_CHANGE,
                actor=operator,
                object="user:alice",
                outcome="success",
                time=time,
                detail={"change": change, "sessions": 0},
            )
            append(db, event)
    return removed_on, carol_password


def test_the_tombstone_migration_follows_the_baseline() -> None:
    """M1: 0002 is in the one line of revisions, so every test above runs from it too."""
    assert REVISIONS[:2] == [migrations.BASELINE, TOMBSTONES]


@pytest.mark.usefixtures("fast_hashing")
def test_r47_0002_keeps_a_person_removed_at_0001_removed_and_unable_to_log_in(
    engine: Engine, server_config: ServerConfig, clock: FakeClock
) -> None:
    """R47: the old tombstone becomes ``removed_at``; the name stays unusable for good.

    The removal time comes from the audit log where it has the removal
    (alice), else it is the migration's time (bob); a present person (carol)
    is left as she was and still logs in.
    """
    removed_on, carol_password = _database_at_0001_with_tombstones(engine, clock)
    started = datetime.now(UTC)
    migrations.upgrade(engine)
    finished = datetime.now(UTC)
    with Session(engine) as db:
        alice, bob, carol = (users.get(db, name) for name in ("alice", "bob", "carol"))
        assert alice.removed_at is not None and bob.removed_at is not None
        assert users.aware(alice.removed_at) == removed_on
        assert started <= users.aware(bob.removed_at) <= finished
        for person in (alice, bob):
            assert users.removed(person) and person.disabled
            assert person.password_hash == users.UNUSABLE_HASH
            assert not passwords.verify(person.password_hash, users.UNUSABLE_HASH)
        assert carol.removed_at is None and not users.removed(carol)
        with pytest.raises(ConflictError, match="never reused"):
            users.add_user(db, name="alice", role=Role.AUDITOR, now=clock.now)
        with pytest.raises(ConflictError, match="bob was removed"):
            users.enable(db, "bob", now=clock.now)
    app = create_app(server_config, clock=clock, signer_loader=signer_loader(server_config))
    app.testing = True
    client = app.test_client()
    try:
        for name in ("alice", "bob"):
            assert login(client, name, OLD_TOMBSTONE).status_code == 401
        assert login(client, "carol", carol_password).status_code == 200
        with Session(engine) as db:
            reasons = db.scalars(
                select(AuditEntry.detail)
                .where(AuditEntry.action == Action.LOGIN, AuditEntry.outcome != "success")
                .order_by(AuditEntry.seq)
            ).all()
        assert [json.loads(reason)["reason"] for reason in reasons] == ["user removed"] * 2
    finally:
        app.extensions["fw"].engine.dispose()


def test_0002_downgrade_writes_the_old_tombstone_back(engine: Engine, clock: FakeClock) -> None:
    """R47: back at 0001 a removed person is a tombstone again, so older code keeps them out."""
    _database_at_0001_with_tombstones(engine, clock)
    migrations.upgrade(engine)
    with engine.begin() as connection:
        command.downgrade(migrations._config(connection), migrations.BASELINE)
    assert _revision(engine) == migrations.BASELINE
    assert _differences(engine, migrations.baseline_metadata()) == []
    with engine.connect() as connection:
        hashes = dict(connection.execute(text("SELECT name, password_hash FROM users")).all())
    assert hashes["alice"] == hashes["bob"] == OLD_TOMBSTONE
    assert passwords.verify(hashes["carol"], "correct horse battery staple 0001")
