"""Migration 0005 (the freeze's table): a frozen server is never downgraded into a normal one.

An fwserver older than 0005 has no freeze: dropping the table of a frozen
server would lift the freeze without the two officers (F2). The downgrade
refuses while frozen, and drops the table once the freeze is lifted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, inspect, text

from tests.clocks import RUN_START
from update_server import migrations


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = create_engine(database_url)
    migrations.upgrade(made, to="0005")
    yield made
    made.dispose()


def _set_mode(engine: Engine, mode: str) -> None:
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM freeze_state"))
        connection.execute(
            text("INSERT INTO freeze_state (id, mode, since) VALUES (1, :mode, :since)"),
            {"mode": mode, "since": RUN_START},
        )


def _downgrade(engine: Engine) -> None:
    with engine.begin() as connection:
        command.downgrade(migrations._config(connection), "0004")


def test_f2_a_frozen_server_is_not_downgraded_below_the_freeze(engine: Engine) -> None:
    _set_mode(engine, "frozen")
    with pytest.raises(RuntimeError, match="two security officers lift the freeze"):
        _downgrade(engine)
    assert "freeze_state" in inspect(engine).get_table_names()


def test_a_normal_server_downgrades_and_the_table_goes(engine: Engine) -> None:
    _set_mode(engine, "normal")
    _downgrade(engine)
    assert "freeze_state" not in inspect(engine).get_table_names()
