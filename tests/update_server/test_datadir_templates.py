"""The server tests' data directories (tests.datadirs) are what a real init makes.

A copy that differed from ``fwserver init`` would make every server test
test something else than the product: these compare, on both engines, the
first copy (the template's own init) and a later one (its database copied or
its recorded statements replayed) with a real init on another empty database.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from tests.datadirs import Templates
from tests.pg import PostgresServer
from tests.update_server.conftest import FAST_KDF
from update_server.config import CONFIG_FILE
from update_server.db import make_engine
from update_server.setup import init_data_dir


@pytest.fixture
def another_database(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[Callable[[], str]]:
    """Makes more empty databases on the same engine as ``database_url``."""
    schemas: list[str] = []
    server: PostgresServer | None = None
    if make_url(database_url).get_backend_name() == "postgresql":
        server = request.getfixturevalue("postgres")
        assert isinstance(server, PostgresServer), server

    made = itertools.count()

    def another() -> str:
        if server is None:
            return f"sqlite:///{tmp_path / f'other-{next(made)}.db'}"
        schemas.append(server.fresh_schema())
        return server.url(schemas[-1])

    yield another
    for schema in schemas:
        assert server is not None
        server.drop_schema(schema)


def _schema(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            tables = {
                name: {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)
                    ],
                    "primary key": found.get_pk_constraint(name)["constrained_columns"],
                    "indexes": sorted(
                        (i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                        for i in found.get_indexes(name)
                    ),
                    "unique": sorted(
                        tuple(u["column_names"]) for u in found.get_unique_constraints(name)
                    ),
                    "foreign keys": sorted(
                        (tuple(f["constrained_columns"]), f["referred_table"])
                        for f in found.get_foreign_keys(name)
                    ),
                }
                for name in found.get_table_names()
            }
            version = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    return {"tables": tables, "migration": sorted(row[0] for row in version)}


def _files(data_dir: Path) -> dict[str, int]:
    return {
        str(path.relative_to(data_dir)): path.stat().st_mode for path in sorted(data_dir.rglob("*"))
    }


def _settings(data_dir: Path) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads((data_dir / CONFIG_FILE).read_text())
    settings.pop("database_url")
    return settings


def test_t1_t3_the_first_and_a_later_copy_are_a_real_inits_data_dir(
    tmp_path: Path, database_url: str, another_database: Callable[[], str]
) -> None:
    second_url, third_url = another_database(), another_database()
    templates = Templates(tmp_path / "templates", kdf=FAST_KDF)
    first = templates.data_dir(tmp_path / "first", database_url)
    later = templates.data_dir(tmp_path / "later", second_url)
    real = init_data_dir(tmp_path / "real", database_url=third_url, kdf=FAST_KDF).config

    expected = _schema(third_url)
    assert expected["tables"], "the real init made no table: nothing was compared"
    assert _schema(database_url) == expected
    assert _schema(second_url) == expected
    for copy, url in ((first, database_url), (later, second_url)):
        assert copy.database_url == url
        assert _files(copy.data_dir) == _files(real.data_dir)
        assert _settings(copy.data_dir) == _settings(real.data_dir)
