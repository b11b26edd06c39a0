"""First login (R47: no default credentials survive it), enrolment, password change."""

from __future__ import annotations

import base64
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from tests.clocks import FakeClock
from tests.update_server.people import (
    bearer,
    create_user,
    enrolled_user,
    login,
    new_password,
    otp_at,
)
from update_server.access import ALL_ROLES, allow
from update_server.auth import otp
from update_server.db import transaction
from update_server.mfa.secretbox import SecretBox
from update_server.models import AuditEntry, Role, User

ENROLL, CONFIRM, PASSWORD = (
    "/api/v1/auth/totp/enroll",
    "/api/v1/auth/totp/confirm",
    "/api/v1/auth/password",
)
ANYTHING = "/api/v1/test/anything"


pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def guarded_app(app: Flask) -> Flask:
    """The app with an ordinary view open to every role."""

    @allow(*ALL_ROLES)
    def anything() -> str:
        return "ok"

    app.add_url_rule(ANYTHING, "test_anything", anything)
    return app


def first_session(app: Flask, client: FlaskClient, clock: FakeClock, name: str) -> tuple[str, str]:
    initial = create_user(app, clock, name, Role.TECHNICIAN)
    body = login(client, name, initial).get_json()
    assert body["must_change_password"] is True
    assert body["totp_enrolled"] is False
    return initial, body["token"]


def change(client: FlaskClient, token: str, current: str, new: str) -> Any:
    body = {"current_password": current, "new_password": new}
    return client.post(PASSWORD, json=body, headers=bearer(token))


def test_r47_no_user_and_no_default_credentials_after_init(app: Flask, client: FlaskClient) -> None:
    with app.extensions["fw"].sessions() as db:
        assert db.scalars(select(User)).all() == []
    for name, password in [("admin", "admin"), ("root", "root"), ("admin", "password")]:
        assert login(client, name, password).status_code == 401


def test_r47_initial_passwords_are_random_one_time_secrets(app: Flask, clock: FakeClock) -> None:
    first, second = (create_user(app, clock, name, Role.AUDITOR) for name in ("ann", "ben"))
    assert first != second
    assert len(first) >= 20
    with app.extensions["fw"].sessions() as db:
        stored = db.scalars(select(User.password_hash)).all()
    assert all(value.startswith("$argon2id$") for value in stored)


def test_r47_new_user_can_do_nothing_before_first_login_is_finished(
    guarded_app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    initial, token = first_session(guarded_app, client, clock, "tom")
    assert client.get(ANYTHING, headers=bearer(token)).status_code == 403
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    # New password first, enrolment still missing: still restricted.
    assert change(client, token, initial, new_password("tom")).status_code == 200
    token = login(client, "tom", new_password("tom")).get_json()["token"]
    assert client.get(ANYTHING, headers=bearer(token)).status_code == 403
    secret = client.post(ENROLL, headers=bearer(token)).get_json()["secret"]
    confirm = client.post(
        CONFIRM, json={"otp": pyotp.TOTP(secret).at(clock.now)}, headers=bearer(token)
    )
    assert confirm.status_code == 200
    # Both factors shown in this session: it may now act.
    assert client.get(ANYTHING, headers=bearer(token)).status_code == 200


def test_r47_the_initial_password_cannot_be_kept(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    initial, token = first_session(app, client, clock, "tom")
    response = change(client, token, initial, initial)
    assert response.status_code == 422
    assert "used this password recently" in response.get_json()["detail"]


def test_first_login_walkthrough_as_documented(
    guarded_app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """docs/api.md: login (password) -> enroll -> confirm -> password -> login (+otp)."""
    person = enrolled_user(guarded_app, client, clock, "tina", Role.TECHNICIAN)
    assert client.get(ANYTHING, headers=person.headers).status_code == 200


def test_enrolment_shows_the_same_pending_secret_until_it_is_confirmed(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """A retry or a rerun of the client keeps the authenticator's entry good."""
    _, token = first_session(app, client, clock, "tom")
    first = client.post(ENROLL, headers=bearer(token)).get_json()
    second = client.post(ENROLL, headers=bearer(token)).get_json()
    assert first == second
    uri = pyotp.parse_uri(second["provisioning_uri"])
    assert (uri.secret, uri.issuer, uri.name, uri.digits, uri.interval) == (
        second["secret"],
        "fwupdate",
        "tom",
        6,
        30,
    )
    code = {"otp": pyotp.TOTP(first["secret"]).at(clock.now)}
    assert client.post(CONFIRM, json=code, headers=bearer(token)).status_code == 200


def test_enrolment_cannot_replace_an_enrolled_second_factor(
    client: FlaskClient, app: Flask, clock: FakeClock
) -> None:
    """A stolen session must not be able to move the victim's TOTP to its own phone."""
    person = enrolled_user(app, client, clock, "alice", Role.SECURITY_OFFICER)
    assert client.post(ENROLL, headers=person.headers).status_code == 409
    code = {"otp": person.next_otp(clock)}
    assert client.post(CONFIRM, json=code, headers=person.headers).status_code == 409


def test_confirm_without_enroll_is_a_conflict(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    _, token = first_session(app, client, clock, "tom")
    assert client.post(CONFIRM, json={"otp": "123456"}, headers=bearer(token)).status_code == 409


def test_totp_replay_at_enrolment_confirmation_is_audited_as_a_replay(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """R25, R27: a confirmation code already accepted (by a racing request) is its own outcome."""
    _, token = first_session(app, client, clock, "tom")
    secret = client.post(ENROLL, headers=bearer(token)).get_json()["secret"]
    code = pyotp.TOTP(secret).at(clock.now)
    key = SecretBox.from_file(app.extensions["fw"].config.secrets_key_file)
    with transaction(app.extensions["fw"].sessions) as db:
        tom = db.scalars(select(User).where(User.name == "tom")).one()
        otp.consume(db, tom, code, now=clock.now, box=key)
    assert client.post(CONFIRM, json={"otp": code}, headers=bearer(token)).status_code == 422
    with app.extensions["fw"].sessions() as db:
        confirmations = db.execute(
            select(AuditEntry.outcome, AuditEntry.detail)
            .where(AuditEntry.action == "totp.enrol", AuditEntry.detail.contains("confirm"))
            .order_by(AuditEntry.seq)
        ).all()
    assert [tuple(row) for row in confirmations] == [
        ("replay", '{"reason":"one-time code replayed","stage":"confirm"}')
    ]


def test_totp_secret_encrypted_at_rest(app: Flask, client: FlaskClient, clock: FakeClock) -> None:
    person = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    secret = person.totp.secret
    with app.extensions["fw"].engine.connect() as connection:
        stored = connection.execute(text("SELECT totp_secret FROM users")).scalar_one()
    raw = bytes(stored)
    for form in (secret.encode(), base64.b32decode(secret), secret.lower().encode()):
        assert form not in raw


def test_totp_secret_moved_to_another_row_does_not_open(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """An attacker who can write the database cannot copy a second factor."""
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    mallory = enrolled_user(app, client, clock, "mallory", Role.TECHNICIAN)
    with app.extensions["fw"].sessions.begin() as db:
        rows = {user.name: user for user in db.scalars(select(User))}
        rows["mallory"].totp_secret = rows["alice"].totp_secret
    code = mallory.next_otp(clock)
    assert login(client, "mallory", mallory.password, otp_at(alice.totp, clock)).status_code == 401
    assert login(client, "mallory", mallory.password, code).status_code == 401


def test_password_change_needs_the_current_password(
    client: FlaskClient, app: Flask, clock: FakeClock
) -> None:
    person = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    response = change(client, person.token, "not-the-current-one", "another-long-passphrase")
    assert response.status_code == 401
    assert client.get("/api/v1/auth/me", headers=person.headers).status_code == 200


def test_password_change_by_a_session_thief_is_throttled(
    client: FlaskClient, app: Flask, clock: FakeClock
) -> None:
    """Guessing the current password through a stolen session locks the account."""
    person = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    max_failures = app.extensions["fw"].config.max_failed_logins
    for _ in range(max_failures):
        change(client, person.token, "a-guessed-password", "another-long-passphrase")
    assert client.get("/api/v1/auth/me", headers=person.headers).status_code == 401
    assert login(client, "alice", person.password, person.next_otp(clock)).status_code == 401


@pytest.mark.parametrize(
    ("new", "says"),
    [
        ("short-one", "at least 12 characters"),
        ("Password1234!", "most common passwords"),
        ("QWERTYUIOPASDF", "most common passwords"),
        ("my-name-is-alice-ok", "user name"),
        ("abababababababab", "different characters"),
    ],
)
def test_password_policy_refusals_say_what_to_change(
    client: FlaskClient, app: Flask, clock: FakeClock, new: str, says: str
) -> None:
    person = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    response = change(client, person.token, person.password, new)
    assert response.status_code == 422
    body = response.get_json()
    assert says in body["detail"]
    assert any(says in problem for problem in body["problems"])


def test_password_history_last_n_refused_older_allowed(
    client: FlaskClient, app: Flask, clock: FakeClock
) -> None:
    """R9 no reuse: the last password_history passwords (current one included)."""
    history = app.extensions["fw"].config.password_history
    person = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    used = [person.password]
    token, current = person.token, person.password
    for number in range(history):
        candidate = f"rotating-passphrase-number-{number}"
        assert change(client, token, current, candidate).status_code == 200
        token = login(client, "alice", candidate, person.next_otp(clock)).get_json()["token"]
        used.append(candidate)
        current = candidate
    for recent in used[-history:]:
        response = change(client, token, current, recent)
        assert response.status_code == 422, recent
    assert change(client, token, current, used[-history - 1]).status_code == 200
