"""Sessions: fixation, expiry, logout, and where a token may come from."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import RUN_START as START
from tests.clocks import FakeClock, iso_z
from tests.update_server.people import (
    LoggedIn,
    bearer,
    enrolled_user,
    login,
    otp_at,
)
from update_server.access import ALL_ROLES, allow
from update_server.config import ServerConfig
from update_server.models import AuditEntry, Role, SessionToken

ME = "/api/v1/auth/me"


pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def alice(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "alice", Role.AUDITOR)


def test_session_fixation_every_login_gets_a_new_random_token(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    second = login(client, "alice", alice.password, alice.next_otp(clock)).get_json()
    third = login(client, "alice", alice.password, alice.next_otp(clock)).get_json()
    tokens = {alice.token, second["token"], third["token"]}
    assert len(tokens) == 3
    assert all(len(token) >= 43 for token in tokens)  # 32 random bytes
    with app.extensions["fw"].sessions() as db:
        stored = set(db.scalars(select(SessionToken.token_hash)))
    assert not tokens & stored  # only hashes are stored


def test_session_fixation_tokens_only_from_the_authorization_header(
    client: FlaskClient, alice: LoggedIn
) -> None:
    """A token planted in a link or a cookie is never taken."""
    assert client.get(f"{ME}?token={alice.token}").status_code == 401
    assert client.get(f"{ME}?access_token={alice.token}").status_code == 401
    client.set_cookie("session", alice.token)
    client.set_cookie("token", alice.token)
    assert client.get(ME).status_code == 401
    assert client.get(ME, headers={"Authorization": alice.token}).status_code == 401
    assert client.get(ME, headers=alice.headers).status_code == 200


def test_password_change_ends_every_session(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    other = login(client, "alice", alice.password, alice.next_otp(clock)).get_json()
    change = {"current_password": alice.password, "new_password": "a-brand-new-passphrase-2"}
    response = client.post("/api/v1/auth/password", json=change, headers=alice.headers)
    assert response.status_code == 200
    assert client.get(ME, headers=alice.headers).status_code == 401
    assert client.get(ME, headers=bearer(other["token"])).status_code == 401
    again = login(client, "alice", "a-brand-new-passphrase-2", alice.next_otp(clock))
    assert again.status_code == 200


def test_idle_session_expires(
    client: FlaskClient, clock: FakeClock, config: ServerConfig, alice: LoggedIn
) -> None:
    clock.advance(seconds=config.session_idle.total_seconds() - 1)
    assert client.get(ME, headers=alice.headers).status_code == 200  # use renews it
    clock.advance(seconds=config.session_idle.total_seconds() - 1)
    assert client.get(ME, headers=alice.headers).status_code == 200
    clock.advance(seconds=config.session_idle.total_seconds())
    assert client.get(ME, headers=alice.headers).status_code == 401


def test_idle_renewal_holds_for_a_view_that_does_not_commit(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    @allow(*ALL_ROLES)
    def read_only() -> str:
        return "read"

    app.add_url_rule("/api/v1/test/read", "test_read", read_only)
    person = enrolled_user(app, client, clock, "bob", Role.AUDITOR)
    for _ in range(2):
        clock.advance(seconds=config.session_idle.total_seconds() - 1)
        assert client.get("/api/v1/test/read", headers=person.headers).status_code == 200


def test_absolute_session_expiry_even_when_in_use(
    client: FlaskClient, clock: FakeClock, config: ServerConfig, alice: LoggedIn
) -> None:
    step = config.session_idle.total_seconds() - 60
    used = 0.0
    while used + step < config.session_absolute.total_seconds():
        clock.advance(seconds=step)
        used += step
        assert client.get(ME, headers=alice.headers).status_code == 200
    clock.advance(seconds=config.session_absolute.total_seconds() - used)
    assert client.get(ME, headers=alice.headers).status_code == 401


def test_logout_ends_the_session_and_is_audited(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    other = login(client, "alice", alice.password, otp_at(alice.totp, clock, 1)).get_json()
    assert client.post("/api/v1/auth/logout", headers=alice.headers).status_code == 204
    assert client.get(ME, headers=alice.headers).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=alice.headers).status_code == 401
    assert client.get(ME, headers=bearer(other["token"])).status_code == 200  # only that one
    with app.extensions["fw"].sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "logout")).one()
    assert (entry.actor, entry.role, entry.outcome) == ("alice", "auditor", "success")


def test_me_shows_who_and_when(client: FlaskClient, alice: LoggedIn) -> None:
    body = client.get(ME, headers=alice.headers).get_json()
    assert body == {
        "name": "alice",
        "role": "auditor",
        "must_change_password": False,
        "totp_enrolled": True,
        "last_login": {"at": iso_z(START), "source": "127.0.0.1"},
        "session_expires_at": iso_z(START + timedelta(hours=8)),
    }
