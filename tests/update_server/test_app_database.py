"""A database that is locked, failing or gone: 503 in bounded time, and nothing succeeds.

Every security action needs its database write to land (a login its spent
one-time code, a publication its audit entries), so while the database
cannot be written each one is refused with a 503 problem, within
``database_timeout`` and a margin, never a 500 and never a 200; once the
database is back, the same requests succeed. Each request runs in a thread
of its own, so that one that hangs fails the test instead of stopping it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.clocks import FakeClock
from tests.hsm_mock.helpers import skip_or_fail
from tests.pg import PostgresServer, PostgresUnavailableError
from tests.update_server.conftest import FAST_KDF
from tests.update_server.database_faults import database_locked, truncated
from tests.update_server.people import enrolled_user, login
from tests.update_server.repo_world import World, repository_files
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.keys import signer_loader
from update_server.setup import init_data_dir

TIMEOUT = 1.0
MARGIN = 4.0  # a shared, loaded test machine
UNKNOWN_RELEASE = "0" * 32


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> ServerConfig:
    made = init_data_dir(tmp_path / "data", database_url=database_url, kdf=FAST_KDF).config
    return made.with_changes(database_timeout=TIMEOUT)


def _refused_in_time(send: Callable[[], TestResponse]) -> None:
    answers: list[TestResponse] = []
    request = threading.Thread(target=lambda: answers.append(send()), daemon=True)
    started = time.monotonic()
    request.start()
    request.join(TIMEOUT + MARGIN)
    assert answers, f"no answer within {TIMEOUT + MARGIN} s"
    response = answers[0]
    assert response.status_code == 503, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert "database" in response.get_json()["detail"]
    assert response.headers["Retry-After"] == "5"  # a lock or a restart: ask again soon
    assert time.monotonic() - started < TIMEOUT + MARGIN


def test_a_locked_database_refuses_login_and_code_checks_with_503_in_time(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    alice = enrolled_user(app, client, clock, "alice")
    code = alice.next_otp(clock)
    publish = f"/api/v1/releases/{UNKNOWN_RELEASE}/publish"
    with database_locked(config.database_url):
        _refused_in_time(lambda: login(client, "alice", alice.password, code))
        _refused_in_time(lambda: client.post(publish, headers={**alice.headers, "X-OTP": code}))
        _refused_in_time(lambda: client.get("/api/v1/auth/me", headers=alice.headers))
    # Nothing was recorded: the same code logs in once the database is back.
    assert login(client, "alice", alice.password, code).status_code == 200


def test_a_locked_database_refuses_a_publish_and_nothing_changes(world: World) -> None:
    release = world.release("alice", "2.4.0")
    before = repository_files(world.repository)
    with database_locked(world.config.database_url):
        _refused_in_time(lambda: world.publish("alice", release))
    assert repository_files(world.repository) == before
    assert world.publish("alice", release).status_code == 200


def test_a_truncated_database_file_never_lets_a_login_succeed(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With WAL, the log alone could still answer: the file is checked first (db.py, D2)."""
    config = init_data_dir(tmp_path / "data", kdf=FAST_KDF).config
    config = config.with_changes(database_timeout=TIMEOUT)
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    client = app.test_client()
    try:
        alice = enrolled_user(app, client, clock, "alice")
        code = alice.next_otp(clock)
        with truncated(config.data_dir / "server.db"):
            _refused_in_time(lambda: login(client, "alice", alice.password, code))
            _refused_in_time(lambda: client.get("/api/v1/auth/me", headers=alice.headers))
        assert login(client, "alice", alice.password, code).status_code == 200
    finally:
        app.extensions["fw"].engine.dispose()


def test_a_hung_postgresql_server_refuses_login_and_publish_with_503_in_time_r5(
    tmp_path: Path, clock: FakeClock, postgres: PostgresServer | PostgresUnavailableError
) -> None:
    """R5: a PostgreSQL server that stops answering is a 503 in bounded time, never a hang.

    SIGSTOP freezes the server while its host still acknowledges every
    packet, so no TCP timeout notices: the pooled connection's ping and a
    new connection are both bounded (db.py D1, D4). Nothing was recorded:
    once the server runs again, the same code logs in.
    """
    if isinstance(postgres, PostgresUnavailableError):
        skip_or_fail(f"PostgreSQL: {postgres}")
    schema = postgres.fresh_schema()
    config = init_data_dir(
        tmp_path / "data", database_url=postgres.url(schema), kdf=FAST_KDF
    ).config.with_changes(database_timeout=TIMEOUT)
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    client = app.test_client()
    try:
        alice = enrolled_user(app, client, clock, "alice")
        code = alice.next_otp(clock)
        publish = f"/api/v1/releases/{UNKNOWN_RELEASE}/publish"
        with postgres.stopped():
            _refused_in_time(lambda: login(client, "alice", alice.password, code))
            _refused_in_time(lambda: client.post(publish, headers={**alice.headers, "X-OTP": code}))
        assert login(client, "alice", alice.password, code).status_code == 200
    finally:
        app.extensions["fw"].engine.dispose()
        postgres.drop_schema(schema)
