"""db.py D4's checkout ping, on a fake DBAPI connection (no database server).

A connection given back to the pool less than ``PING_IDLE`` ago is handed
out again without a ``SELECT 1`` (a request's second transaction takes the
connection its first one just gave back); one idle longer, or never given
back (new), is pinged. That a hung server is still a 503 in bounded time
without the ping is ``test_app_database``'s hung-server test.
"""

from __future__ import annotations

import time
from typing import Any

from update_server.db import _RETURNED, PING_IDLE, _Deadlines


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection

    def execute(self, statement: str) -> None:
        self.connection.executed.append(statement)

    def close(self) -> None:
        pass


class FakeConnection:
    def __init__(self) -> None:
        self.executed: list[str] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)


class FakeRecord:
    def __init__(self) -> None:
        self.info: dict[str, Any] = {}


def test_a_connection_given_back_a_moment_ago_is_not_pinged_d4() -> None:
    deadlines, connection, record = _Deadlines(5.5, OSError), FakeConnection(), FakeRecord()
    deadlines.disarm_pooled(connection, record)  # checked in: given back now
    deadlines.ping(connection, record, None)
    assert connection.executed == []


def test_a_connection_idle_in_the_pool_longer_is_pinged_d4() -> None:
    deadlines, connection, record = _Deadlines(5.5, OSError), FakeConnection(), FakeRecord()
    record.info[_RETURNED] = time.monotonic() - PING_IDLE - 1.0
    deadlines.ping(connection, record, None)
    assert connection.executed == ["SELECT 1"]


def test_a_new_connection_is_pinged_d4() -> None:
    deadlines, connection = _Deadlines(5.5, OSError), FakeConnection()
    deadlines.ping(connection, FakeRecord(), None)
    assert connection.executed == ["SELECT 1"]
