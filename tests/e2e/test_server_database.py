"""The database locked or truncated under the real server (gunicorn, 4 workers, TLS).

While another process holds the SQLite database, or its file has been
truncated, every login, code check and publish answers 503 problem+json
within ``database_timeout`` (2 s here) and a margin, on every worker; none
answers 200. Once the database is back, the same requests succeed with the
same one-time codes: a refused request recorded nothing. On PostgreSQL, a
server that hangs (every process of it stopped, so no TCP timeout notices)
is refused the same way, and served again once it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.people import LOGIN, Person, call, enrolled
from tests.hsm_mock.helpers import FAST_KDF, skip_or_fail
from tests.pg import PostgresServer, PostgresUnavailableError, postgres_session
from tests.update_server.database_faults import database_locked, truncated
from update_server.config import CONFIG_FILE
from update_server.setup import init_data_dir

WORKERS = 4
DATABASE_TIMEOUT = 2
MARGIN = 6.0  # a shared, loaded test machine
UNKNOWN_RELEASE = "0" * 32
PUBLISH = f"/api/v1/releases/{UNKNOWN_RELEASE}/publish"
ROUNDS = 4  # of each request, sent at once: more than one worker answers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("database"))
    with start_server(_with_timeout(data_dir), workers=WORKERS) as running:
        yield running


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own: the test stops it."""
    for server in postgres_session():
        if isinstance(server, PostgresUnavailableError):
            skip_or_fail(f"PostgreSQL: {server}")
        yield server


@pytest.fixture(scope="module")
def pg_server(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[RunningServer]:
    url = postgres.url(postgres.fresh_schema())
    parent = tmp_path_factory.mktemp("postgresql")
    data_dir = init_data_dir(parent / "data", database_url=url, kdf=FAST_KDF).config.data_dir
    with start_server(_with_timeout(data_dir), workers=WORKERS) as running:
        yield running


def _with_timeout(data_dir: Path) -> Path:
    settings = json.loads((data_dir / CONFIG_FILE).read_text())
    settings["database_timeout"] = DATABASE_TIMEOUT
    (data_dir / CONFIG_FILE).write_text(json.dumps(settings))
    return data_dir


def _security_actions(
    server: RunningServer, person: Person, confirmer: Person
) -> list[tuple[int, dict[str, Any], float]]:
    """Logins, fresh-code checks and publishes, ``ROUNDS`` of each, all at once."""
    confirm = {**confirmer.headers, "X-OTP": confirmer.unused_code()}
    calls = [("POST", LOGIN, person.login_body(), None), ("POST", PUBLISH, None, confirm)]
    with ThreadPoolExecutor(max_workers=len(calls) * ROUNDS) as threads:
        futures = [threads.submit(call, server, *each) for each in calls * ROUNDS]
        return [future.result(timeout=DATABASE_TIMEOUT + MARGIN + 20) for future in futures]


def _all_refused(answers: list[tuple[int, dict[str, Any], float]]) -> None:
    assert [status for status, _, _ in answers] == [503] * len(answers), answers
    for _, body, elapsed in answers:
        assert body["status"] == 503
        assert "database" in body["detail"]
        assert elapsed < DATABASE_TIMEOUT + MARGIN


def _service_is_back(server: RunningServer, person: Person, confirmer: Person) -> None:
    assert call(server, "POST", LOGIN, person.login_body())[0] == 200
    confirm = {**confirmer.headers, "X-OTP": confirmer.unused_code()}
    assert call(server, "POST", PUBLISH, None, confirm)[0] == 404  # past the code check


def test_a_database_locked_by_another_process_refuses_every_security_action(
    server: RunningServer,
) -> None:
    person, confirmer = enrolled(server, "lena"), enrolled(server, "lars")
    with database_locked(f"sqlite:///{server.data_dir / 'server.db'}"):
        _all_refused(_security_actions(server, person, confirmer))
    _service_is_back(server, person, confirmer)


def test_a_database_file_truncated_under_the_server_refuses_every_security_action(
    server: RunningServer,
) -> None:
    person, confirmer = enrolled(server, "tara"), enrolled(server, "theo")
    database: Path = server.data_dir / "server.db"
    with truncated(database):
        _all_refused(_security_actions(server, person, confirmer))
    _service_is_back(server, person, confirmer)


def test_a_hung_postgresql_server_refuses_every_security_action_in_time_r5(
    pg_server: RunningServer, postgres: PostgresServer
) -> None:
    """R5: PostgreSQL stopped (SIGSTOP) under 4 workers: 503 within the timeout, then service.

    The host still acknowledges every packet of a stopped server, so only
    the server's own deadlines (db.py D1, D4) end the waits: pooled
    connections are cut, new ones time out. None answers 200.
    """
    person, confirmer = enrolled(pg_server, "paula"), enrolled(pg_server, "piet")
    with postgres.stopped():
        _all_refused(_security_actions(pg_server, person, confirmer))
    _service_is_back(pg_server, person, confirmer)
