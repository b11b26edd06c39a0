"""Failed logins per source (R9): one source cannot try every name, each try an argon2 hash.

By default 20 failed logins per source per minute, then 429 with
``Retry-After``; held in the database for every worker; audited (R27).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from tests.clocks import FakeClock
from tests.update_server.people import (
    LOGIN,
    LoggedIn,
    enrolled_user,
    otp_at,
)
from update_server.app import create_app
from update_server.auth import throttle
from update_server.config import ConfigError, ServerConfig
from update_server.keys import signer_loader
from update_server.mfa import passwords
from update_server.models import AuditEntry, Role

LIMIT = 20


pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def alice(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)


def try_login(
    client: FlaskClient, name: str, password: str, code: str | None = None, *, source: str
) -> TestResponse:
    body = {"username": name, "password": password, **({"otp": code} if code else {})}
    return client.post(LOGIN, json=body, environ_base={"REMOTE_ADDR": source})


def spray(client: FlaskClient, times: int, *, source: str = "198.51.100.7") -> None:
    """Failed logins from ``source``, each for another name (credential stuffing)."""
    for number in range(times):
        response = try_login(client, f"guess{number}", "a-stuffed-password", source=source)
        assert response.status_code == 401


@contextmanager
def another_worker(config: ServerConfig, clock: FakeClock) -> Iterator[FlaskClient]:
    application = create_app(config, clock=clock, signer_loader=signer_loader(config))
    application.testing = True
    try:
        yield application.test_client()
    finally:
        application.extensions["fw"].engine.dispose()


def throttled_entries(app: Flask) -> list[AuditEntry]:
    with app.extensions["fw"].sessions() as db:
        query = select(AuditEntry).where(
            AuditEntry.action == "login", AuditEntry.outcome == "refused"
        )
        return list(db.scalars(query.order_by(AuditEntry.seq)))


def test_credential_stuffing_one_source_gets_20_failed_logins_a_minute_then_429(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R9: past the limit even the right credentials get 429, and no argon2 work is done."""
    spray(client, LIMIT)
    hashed: list[str] = []
    real_verify = passwords.verify

    def counted_verify(stored: str, given: str) -> bool:
        hashed.append(stored)
        return real_verify(stored, given)

    monkeypatch.setattr(passwords, "verify", counted_verify)
    clock.advance(seconds=15)
    good = otp_at(alice.totp, clock, 1)
    response = try_login(client, "alice", alice.password, good, source="198.51.100.7")
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "45"
    assert "wait 45 s" in response.get_json()["detail"]
    assert hashed == []
    # Another source is not held back by this one.
    assert try_login(client, "alice", alice.password, good, source="192.0.2.1").status_code == 200
    clock.advance(seconds=45)
    fresh = otp_at(alice.totp, clock, 1)
    response = try_login(client, "alice", alice.password, fresh, source="198.51.100.7")
    assert response.status_code == 200


def test_credential_stuffing_source_limit_is_shared_across_workers(
    client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    """R9: counted in the database, so spreading the tries over workers gains nothing."""
    spray(client, LIMIT // 2)
    with another_worker(config, clock) as worker:
        spray(worker, LIMIT - LIMIT // 2)
    with another_worker(config, clock) as restarted:
        response = try_login(restarted, "guess", "a-stuffed-password", source="198.51.100.7")
        assert response.status_code == 429


def test_credential_stuffing_a_success_does_not_reset_the_source_count(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    """R9: one valid account cannot wipe out a guessing run from the same source."""
    spray(client, LIMIT - 1)
    good = otp_at(alice.totp, clock, 1)
    assert (
        try_login(client, "alice", alice.password, good, source="198.51.100.7").status_code == 200
    )
    spray(client, 1)
    response = try_login(client, "guess", "a-stuffed-password", source="198.51.100.7")
    assert response.status_code == 429


def test_credential_stuffing_throttled_logins_are_audited_once_a_window_with_their_count(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """R27: the first refusal is an entry at once, the rest one entry with their count."""
    spray(client, LIMIT)
    for _ in range(5):
        response = try_login(client, "guess", "a-stuffed-password", source="198.51.100.7")
        assert response.status_code == 429
    [first] = throttled_entries(app)
    assert (first.actor, first.source, first.object) == ("-", "198.51.100.7", "POST " + LOGIN)
    assert '"count":1' in first.detail
    assert '"status":429' in first.detail
    clock.advance(minutes=1)
    try_login(client, "guess", "a-stuffed-password", source="203.0.113.9")  # any later login
    counts = [entry.detail for entry in throttled_entries(app)]
    assert len(counts) == 2
    assert '"count":4' in counts[1]


def test_credential_stuffing_from_one_ipv6_network_counts_as_one_source(
    client: FlaskClient,
) -> None:
    """R9: a host holds a whole /64; each of its addresses is not a new source."""
    for number in range(LIMIT):
        source = f"2001:db8:1:2::{number + 1:x}"
        assert try_login(client, f"guess{number}", "a-guess", source=source).status_code == 401
    assert try_login(client, "guess", "a-guess", source="2001:db8:1:2:ffff::1").status_code == 429
    assert try_login(client, "guess", "a-guess", source="2001:db8:1:3::1").status_code == 401


def test_source_key_counts_ipv6_by_its_64_and_ipv4_by_address() -> None:
    assert throttle.source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert throttle.source_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert throttle.source_key("192.0.2.1") == "192.0.2.1"
    assert throttle.source_key("not an address") == "not an address"


def test_source_limit_and_window_are_configurable(config: ServerConfig, clock: FakeClock) -> None:
    strict = config.with_changes(max_failed_logins_per_source=3)
    app = create_app(strict, clock=clock, signer_loader=signer_loader(strict))
    app.testing = True
    try:
        client = app.test_client()
        spray(client, 3)
        response = try_login(client, "guess", "a-guess", source="198.51.100.7")
        assert response.status_code == 429
    finally:
        app.extensions["fw"].engine.dispose()
    loaded = ServerConfig.from_json(
        {
            "data_dir": str(config.data_dir),
            "max_failed_logins_per_source": "50",
            "login_source_window": "300",
        }
    )
    assert (loaded.max_failed_logins_per_source, loaded.login_source_window.total_seconds()) == (
        50,
        300,
    )
    with pytest.raises(ConfigError, match="max_failed_logins_per_source"):
        config.with_changes(max_failed_logins_per_source=0)
    with pytest.raises(ConfigError, match="login_source_window"):
        ServerConfig.from_json({"data_dir": str(config.data_dir), "login_source_window": "0"})
