"""Fixtures of the server tests: a data directory, the app, a movable clock, a world.

``database_url`` is the seam for the database legs: every server test runs on
SQLite, and again on a real PostgreSQL server when the harness provides one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hsm_mock import KdfParams
from tests.clocks import RUN_START, FakeClock
from tests.datadirs import Templates
from tests.hsm_mock.helpers import skip_or_fail
from tests.pg import (
    PostgresServer,
    PostgresUnavailableError,
    postgres_session,
)
from tests.unprivileged import pretend_unprivileged
from tests.update_server.openapi_contract import ContractRecorder
from tests.update_server.repo_world import World, make_world
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.keys import signer_loader

FAST_KDF = KdfParams(memory_kib=8192, iterations=1, lanes=1)
START = RUN_START  # published metadata is read by a stock ngclient


@pytest.fixture
def unprivileged(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``fwserver serve`` sees an unprivileged user (R6: it refuses root).

    For the modules that test serve's other rules (``pytestmark``);
    ``test_serve_root`` tests the refusal itself, with the real user id.
    """
    pretend_unprivileged(monkeypatch)


@pytest.fixture
def clock() -> FakeClock:
    """The time the app sees; tests move it explicitly."""
    return FakeClock(START)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | PostgresUnavailableError]:
    """One real PostgreSQL server for the session, started on first use."""
    yield from postgres_session()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every server test runs on both legs, each time on an empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    server = request.getfixturevalue("postgres")
    if isinstance(server, PostgresUnavailableError):
        skip_or_fail(f"PostgreSQL leg: {server}")
    schema = server.fresh_schema()
    yield server.url(schema)
    server.drop_schema(schema)


@pytest.fixture(scope="session")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    """One real ``fwserver init`` per engine and test process (tests.datadirs)."""
    return Templates(tmp_path_factory.mktemp("data-dir-templates"), kdf=FAST_KDF)


@pytest.fixture
def config(tmp_path: Path, database_url: str, data_dirs: Templates) -> ServerConfig:
    """A fresh data directory on the test's empty database: a copy of a real init."""
    return data_dirs.data_dir(tmp_path / "data", database_url)


@pytest.fixture
def app(config: ServerConfig, clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[Flask]:
    application = create_app(config, clock=clock, signer_loader=signer_loader(config))
    application.testing = True
    # Every answer is checked against the OpenAPI document; a test that makes
    # the server crash on purpose (``simulated_crash``) may see its 500.
    crash = request.node.get_closest_marker("simulated_crash") is not None
    answers = ContractRecorder(crash_expected=crash)
    answers.connect(application)
    yield application
    application.extensions["fw"].engine.dispose()
    assert answers.problems == [], "answers the OpenAPI document does not describe"


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def world(
    app: Flask,
    config: ServerConfig,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    """The server publishing the imported repository, people with keys around it."""
    return make_world(app, config, clock, tmp_path, monkeypatch)
