"""``GET /api/v1/status`` and ``GET /readyz`` on the real app (R38; observability S1-S8, Y1-Y3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from securesystemslib.signer import CryptoSigner, Signer

from tests.clocks import FakeClock
from tests.update_server.alerts_helpers import lock_out, server, with_webhooks, write_secret
from tests.update_server.conftest import FAST_KDF
from tests.update_server.deployments_helpers import add_pump, create, publish
from tests.update_server.devices_helpers import FakeDevice, issue_token
from tests.update_server.people import enrolled_user
from tests.update_server.repo_world import World
from update_server.app import create_app
from update_server.config import ServerConfig, sqlite_file
from update_server.db import transaction
from update_server.freeze import state
from update_server.freeze.rules import Freeze, Mode
from update_server.keys import KeyConfigError, signer_loader
from update_server.migrations import head
from update_server.models import Role
from update_server.observability.expiry import RENEWAL_GRACE
from update_server.setup import init_data_dir

STATUS = "/api/v1/status"
READY = "/readyz"


def _status(world: World) -> dict:  # type: ignore[type-arg]
    """The status as an auditor sees it (a new session each time: the clock moves)."""
    answer = world.client.get(STATUS, headers=world.login("audrey", Role.AUDITOR))
    assert answer.status_code == 200, answer.get_json()
    body: dict = answer.get_json()  # type: ignore[type-arg]
    return body


def test_status_shows_versions_mode_keys_and_metadata_of_a_published_server_r38(
    world: World,
) -> None:
    body = _status(world)
    assert body["server"]["schema"] == body["server"]["schema_expected"] == head()
    assert body["mode"]["mode"] == "normal"
    assert body["ready"] == {
        "ready": True,
        "checks": {"database": "ok", "repository": "ok", "online_keys": "ok"},
        "reasons": {},
    }
    snapshot = world.services.signer("snapshot").public_key.keyid
    assert body["online_keys"]["snapshot"] == {"keyid": snapshot, "trusted_by_root": True}
    assert set(body["online_keys"]) == set(world.config.online_keys)
    roles = body["metadata"]["roles"]
    assert {"root", "targets", "snapshot", "timestamp", "pump-x100"} <= set(roles)
    assert roles["root"]["version"] == 1
    assert "renew_at" in roles["timestamp"] and "renew_at" not in roles["root"]
    assert body["metadata"]["warnings"] == [] and body["warnings"] == []


def test_status_is_for_authenticated_people_only_r38(client: FlaskClient) -> None:
    assert client.get(STATUS).status_code == 401


def test_status_warns_when_the_timestamp_renewal_is_overdue_x3(
    world: World, clock: FakeClock
) -> None:
    """No renewal thread runs in these tests: past the renewal point, the status warns."""
    renew_at = _status(world)["metadata"]["roles"]["timestamp"]["renew_at"]
    clock.advance(hours=12, seconds=RENEWAL_GRACE.total_seconds() + 60)
    body = _status(world)
    (warning,) = body["metadata"]["warnings"]
    assert (warning["role"], warning["kind"]) == ("timestamp", "renewal_overdue")
    assert body["metadata"]["roles"]["timestamp"]["renew_at"] == renew_at
    assert any("fwserver renew" in line for line in body["warnings"])


def test_status_shows_the_failsafe_freeze_and_who_froze_s2(world: World, clock: FakeClock) -> None:
    with transaction(world.services.sessions) as db:
        row = state.locked(db, now=clock.now)
        state.write(
            row, Freeze(Mode.FROZEN, since=clock.now, frozen_by="officer1", reason="key leak")
        )
    mode = _status(world)["mode"]
    assert (mode["mode"], mode["frozen_by"], mode["reason"]) == ("frozen", "officer1", "key leak")


def test_status_counts_the_fleet_by_state_model_and_running_version_s6(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    admin = enrolled_user(app, client, clock, "alice", Role.ADMIN)
    for name, version in (("pump-1", "1.2.0"), ("pump-2", "1.2.0"), ("pump-3", None)):
        device = FakeDevice(name)
        device.register(client, issue_token(client, admin, clock, accept=True), now=clock.now)
        if version is not None:
            assert device.report(client, now=clock.now, running_version=version).status_code == 200
    FakeDevice("pump-4").register(client, issue_token(client, admin, clock), now=clock.now)
    fleet = client.get(STATUS, headers=admin.headers).get_json()["fleet"]
    assert fleet["devices"] == 4
    assert fleet["by_state"] == {"pending": 1, "accepted": 3, "rejected": 0, "decommissioned": 0}
    assert fleet["by_model"] == {"pump-x100": 3}
    assert fleet["by_running_version"] == {"1.2.0": 2, "unknown": 1}


def test_a_published_server_is_ready_y1_y3(world: World) -> None:
    answer = world.client.get(READY)
    assert answer.status_code == 200
    assert answer.get_json() == {
        "ready": True,
        "checks": {"database": "ok", "repository": "ok", "online_keys": "ok"},
    }


def test_a_server_with_no_repository_published_is_not_ready_y2(client: FlaskClient) -> None:
    answer = client.get(READY)
    assert answer.status_code == 503
    assert answer.get_json()["checks"] == {
        "database": "ok",
        "repository": "failed",
        "online_keys": "ok",
    }


def test_readiness_names_the_failed_check_and_no_reason_to_the_public_y(
    client: FlaskClient,
) -> None:
    body = client.get(READY).get_json()
    assert set(body) == {"ready", "checks"}
    assert "fwserver import" not in str(body)


@pytest.fixture
def sqlite_config(tmp_path: Path) -> ServerConfig:
    """A server on a SQLite file (its file is what the test removes)."""
    return init_data_dir(tmp_path / "data", kdf=FAST_KDF).config


def test_a_server_whose_database_file_is_gone_is_not_ready_y1(
    sqlite_config: ServerConfig, clock: FakeClock
) -> None:
    app = create_app(sqlite_config, clock=clock, signer_loader=signer_loader(sqlite_config))
    try:
        client = app.test_client()
        assert client.get(READY).get_json()["checks"]["database"] == "ok"
        database = sqlite_file(sqlite_config.database_url)
        assert database is not None
        database.unlink()
        answer = client.get(READY)
        assert answer.status_code == 503
        assert answer.get_json()["checks"]["database"] == "failed"
    finally:
        app.extensions["fw"].engine.dispose()


def _app_with_keys(
    config: ServerConfig, clock: FakeClock, replace: dict[str, Signer | Exception]
) -> Flask:
    """The app, with some online keys swapped for another key or a loading error."""
    real = signer_loader(config)

    def load(role: str) -> Signer:
        swapped = replace.get(role)
        if isinstance(swapped, Exception):
            raise swapped
        return swapped if swapped is not None else real(role)

    app = create_app(config, clock=clock, signer_loader=load)
    app.testing = True
    return app


def test_a_server_whose_timestamp_key_does_not_load_is_not_ready_y3(
    world: World, config: ServerConfig, clock: FakeClock
) -> None:
    missing = KeyConfigError("no online timestamp key configured (online_keys.timestamp)")
    app = _app_with_keys(config, clock, {"timestamp": missing})
    try:
        answer = app.test_client().get(READY)
        assert answer.status_code == 503
        assert answer.get_json()["checks"]["online_keys"] == "failed"
    finally:
        app.extensions["fw"].engine.dispose()


def test_a_server_signing_with_a_key_root_does_not_trust_is_not_ready_y3(
    world: World, config: ServerConfig, clock: FakeClock
) -> None:
    """Renewals signed with another key would be refused by every device."""
    app = _app_with_keys(config, clock, {"snapshot": CryptoSigner.generate_ed25519()})
    try:
        assert app.test_client().get(READY).status_code == 503
        headers = world.as_("audrey", Role.AUDITOR)
        body = app.test_client().get(STATUS, headers=headers).get_json()
        assert body["online_keys"]["snapshot"]["trusted_by_root"] is False
        assert "not the one root trusts" in body["ready"]["reasons"]["online_keys"]
    finally:
        app.extensions["fw"].engine.dispose()


def test_status_lists_the_deployments_in_progress_s7(world: World) -> None:
    """S7: an open deployment, with its waves and its devices' statuses; none when none open."""
    assert _status(world)["deployments"] == []
    path = publish(world, "2.0.0")
    add_pump(world, "pump-00")
    made = create(
        world, "manager1", target_path=path, fleets=["pump-x100"], waves=[{"count": 1}],
        success_percent=100, failure_percent=0,
    )  # fmt: skip
    assert made.status_code == 201, made.get_json()

    (shown,) = _status(world)["deployments"]

    assert (shown["target_path"], shown["state"]) == (path, "awaiting_approval")
    assert shown["statuses"]["assigned"] == 1


def test_status_shows_the_alert_backlog_of_each_webhook_s7(
    config: ServerConfig, clock: FakeClock, tmp_path: Path
) -> None:
    """S7: a configured webhook with an alert waiting (a lockout): one undelivered."""
    secret = tmp_path / "hook.secret"
    write_secret(secret)
    hooked = with_webhooks(config, ("siem", "http://127.0.0.1:9/alerts", secret))
    with server(hooked, clock) as app:
        client = app.test_client()
        admin = enrolled_user(app, client, clock, "alice", Role.ADMIN)
        enrolled_user(app, client, clock, "mallory", Role.RELEASE_ENGINEER)
        lock_out(client, "mallory")
        alerts = client.get(STATUS, headers=admin.headers).get_json()["alerts"]
    assert alerts["undelivered"] == 1
    (hook,) = alerts["webhooks"]
    assert (hook["webhook"], hook["undelivered"], hook["last_error"]) == ("siem", 1, None)
