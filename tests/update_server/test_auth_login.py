"""Login: one generic failure, throttle and lockout in the database, R11.

Each test is named after the threat it answers (enumeration, brute force,
skipped second factor) or the requirement (R9, R11).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import RUN_START as START
from tests.clocks import FakeClock, iso_z
from tests.update_server.people import (
    LOGIN,
    LoggedIn,
    bearer,
    create_user,
    enrolled_user,
    login,
    otp_at,
)
from update_server.app import create_app
from update_server.auth.login import FAILED, MALFORMED
from update_server.config import ServerConfig
from update_server.keys import signer_loader
from update_server.mfa import passwords
from update_server.models import AuditEntry, LoginThrottle, Role, SourceThrottle

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def alice(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)


def audit(app: Flask, action: str | None = None) -> list[AuditEntry]:
    with app.extensions["fw"].sessions() as db:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        if action is not None:
            query = query.where(AuditEntry.action == action)
        return list(db.scalars(query))


@contextmanager
def another_worker(config: ServerConfig, clock: FakeClock) -> Iterator[FlaskClient]:
    """A second app on the same database: another gunicorn worker, or a restart."""
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    app.testing = True
    try:
        yield app.test_client()
    finally:
        app.extensions["fw"].engine.dispose()


def test_login_with_password_and_otp_gives_a_session(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    clock.advance(minutes=5)
    response = login(client, "alice", alice.password, otp_at(alice.totp, clock))
    assert response.status_code == 200
    body = response.get_json()
    assert body["must_change_password"] is False
    assert body["totp_enrolled"] is True
    assert body["expires_at"] == iso_z(START + timedelta(hours=8, minutes=5))
    me = client.get("/api/v1/auth/me", headers=bearer(body["token"]))
    assert me.get_json()["name"] == "alice"


def test_enumeration_every_failure_has_the_same_status_and_body(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    """Unknown user, wrong password, wrong code, no code: one answer."""
    clock.advance(minutes=5)
    good = otp_at(alice.totp, clock)
    wrong_code = f"{(int(good) + 1) % 1_000_000:06d}"
    attempts = [
        login(client, "mallory", alice.password, good),
        login(client, "alice", "not-her-password-at-all", good),
        login(client, "alice", alice.password, wrong_code),
        login(client, "alice", alice.password),
        login(client, "Not A Valid Name!", alice.password, good),
    ]
    assert {response.status_code for response in attempts} == {401}
    bodies = [response.get_json() for response in attempts]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["detail"] == FAILED


def test_enumeration_unknown_user_costs_one_argon2_verify_like_a_known_user(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing: the argon2 work is the same whether or not the name exists."""
    verified: list[str] = []
    real_verify = passwords.verify

    def spy(password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify", spy)
    login(client, "mallory", "some-guess-of-a-password")
    assert verified == [passwords.dummy_hash()]
    verified.clear()
    login(client, "alice", "some-guess-of-a-password", otp_at(alice.totp, clock, 1))
    assert len(verified) == 1
    assert verified != [passwords.dummy_hash()]


def test_failure_reason_is_audited_and_committed_not_answered(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    response = login(client, "alice", "wrong-password-here", otp_at(alice.totp, clock, 1))
    assert "password" not in response.get_json()["detail"].split(":")[0]
    entry = audit(app, "login")[-1]
    assert (entry.actor, entry.outcome, entry.source) == ("alice", "failure", "127.0.0.1")
    assert entry.role == "release_engineer"
    assert '"reason":"wrong password"' in entry.detail
    login(client, "nobody.here", "whatever-password")
    unknown = audit(app, "login")[-1]
    assert (unknown.actor, unknown.role, unknown.outcome) == ("nobody.here", "", "failure")
    assert "unknown user" in unknown.detail


def test_skipped_second_factor_password_only_refused_once_enrolled(
    app: Flask, client: FlaskClient, alice: LoggedIn
) -> None:
    response = login(client, "alice", alice.password)
    assert response.status_code == 401
    assert "one-time code missing" in audit(app, "login")[-1].detail


def test_totp_replay_login_code_accepted_once(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    """R25: the code that logged alice in (helper: step 0) is refused again."""
    used = otp_at(alice.totp, clock)
    assert login(client, "alice", alice.password, used).status_code == 401
    fresh = otp_at(alice.totp, clock, steps_ahead=1)
    assert login(client, "alice", alice.password, fresh).status_code == 200
    assert login(client, "alice", alice.password, fresh).status_code == 401


def test_otp_window_is_one_step_either_side(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    clock.advance(minutes=10)
    assert login(client, "alice", alice.password, otp_at(alice.totp, clock, 2)).status_code == 401
    assert login(client, "alice", alice.password, otp_at(alice.totp, clock, -2)).status_code == 401
    assert login(client, "alice", alice.password, otp_at(alice.totp, clock, -1)).status_code == 200


def fail(client: FlaskClient, name: str, times: int) -> None:
    for _ in range(times):
        assert login(client, name, "a-wrong-password-guess").status_code == 401


def test_lockout_after_max_failed_logins_refuses_even_the_right_credentials(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig, alice: LoggedIn
) -> None:
    """R9 brute force: after max_failed_logins the right password is refused too."""
    fail(client, "alice", config.max_failed_logins)
    response = login(client, "alice", alice.password, otp_at(alice.totp, clock, 1))
    assert response.status_code == 401
    assert response.get_json()["detail"] == FAILED
    locked = audit(app, "login.locked")
    assert [entry.outcome for entry in locked] == ["failure", "refused"]
    # The lock also ended the session she had (a thief's, perhaps).
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 401


def test_lockout_holds_across_workers_and_restarts_then_expires(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig, alice: LoggedIn
) -> None:
    """Counted in the database: failures on one worker lock the name on another."""
    fail(client, "alice", config.max_failed_logins - 1)
    with another_worker(config, clock) as worker:
        fail(worker, "alice", 1)
    with another_worker(config, clock) as restarted:
        good = otp_at(alice.totp, clock, 1)
        assert login(restarted, "alice", alice.password, good).status_code == 401
        clock.advance(seconds=config.lockout.total_seconds() - 1)
        good = otp_at(alice.totp, clock)
        assert login(restarted, "alice", alice.password, good).status_code == 401
        clock.advance(seconds=1)
        assert login(restarted, "alice", alice.password, good).status_code == 200


def test_lockout_applies_to_unknown_names_alike(
    app: Flask, client: FlaskClient, config: ServerConfig
) -> None:
    """Enumeration: an unknown name is throttled and locked like a real one."""
    fail(client, "ghost", config.max_failed_logins + 1)
    locked = audit(app, "login.locked")
    assert [(entry.actor, entry.outcome) for entry in locked] == [
        ("ghost", "failure"),
        ("ghost", "refused"),
    ]


def test_successful_login_resets_the_failure_count(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig, alice: LoggedIn
) -> None:
    fail(client, "alice", config.max_failed_logins - 1)
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 200
    with app.extensions["fw"].sessions() as db:
        assert db.get(LoginThrottle, "alice") is None
    fail(client, "alice", config.max_failed_logins - 1)
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 200


def test_r11_last_login_and_failed_attempts_since_are_shown(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    # alice logged in at START (enrolled_user); two failures, then a login 2 h later.
    fail(client, "alice", 2)
    clock.advance(hours=2)
    body = login(client, "alice", alice.password, otp_at(alice.totp, clock)).get_json()
    assert body["last_login"] == {"at": iso_z(START), "source": "127.0.0.1"}
    assert body["failed_attempts_since_last_login"] == 2
    again = login(client, "alice", alice.password, alice.next_otp(clock)).get_json()
    assert again["last_login"]["at"] == iso_z(START + timedelta(hours=2))
    assert again["failed_attempts_since_last_login"] == 0


def test_r11_first_ever_login_has_no_last_login(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    initial = create_user(app, clock, "bob", Role.AUDITOR)
    body = login(client, "bob", initial).get_json()
    assert body["last_login"] is None
    assert body["failed_attempts_since_last_login"] == 0


def test_disabled_user_cannot_log_in(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    from update_server import users  # noqa: PLC0415

    with app.extensions["fw"].sessions.begin() as db:
        users.disable(db, "alice", now=clock.now)
    response = login(client, "alice", alice.password, otp_at(alice.totp, clock, 1))
    assert response.status_code == 401
    assert "user disabled" in audit(app, "login")[-1].detail


@pytest.mark.parametrize(
    "body",
    [None, [], {"username": "alice"}, {"username": 1, "password": "x"}, {"password": "x"}],
)
def test_malformed_login_body_is_a_400_problem(client: FlaskClient, body: Any) -> None:
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_secrets_never_reach_the_log(
    app: Flask, client: FlaskClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """SecureDrop once logged OTP codes: no password, code or token in any log."""
    caplog.set_level("DEBUG")
    person = enrolled_user(app, client, clock, "carol", Role.TECHNICIAN)
    code = otp_at(person.totp, clock, 1)
    login(client, "carol", "a-wrong-password-guess", code)
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for secret in (person.password, person.token, person.totp.secret, code):
        assert secret not in logged


def post_raw(client: FlaskClient, text: str) -> Any:
    """A login body as sent on the wire (JSON escapes kept as typed)."""
    return client.post(LOGIN, data=text, content_type="application/json")


def source_failures(app: Flask) -> int:
    with app.extensions["fw"].sessions() as db:
        row = db.get(SourceThrottle, "127.0.0.1")
        return row.failures if row is not None else 0


def test_lone_surrogate_in_the_user_name_is_a_400_counted_and_audited(
    app: Flask, client: FlaskClient
) -> None:
    """R9, R27: '\\ud800' as a name was a 500, neither counted nor audited.

    No one can have that name, so it has no lockout of its own: its source's
    limit counts it, and the audit log holds it escaped.
    """
    response = post_raw(client, '{"username": "\\ud800", "password": "a-guess-at-it"}')
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["detail"] == MALFORMED
    entry = audit(app, "login")[-1]
    assert (entry.actor, entry.outcome, entry.source) == ("\\ud800", "failure", "127.0.0.1")
    assert entry.object == "user:\\ud800"
    assert "username is not valid Unicode" in entry.detail
    assert source_failures(app) == 1


def test_lone_surrogate_in_the_password_is_a_400_counted_against_the_name(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig, alice: LoggedIn
) -> None:
    """R9, R27: a malformed password counts towards the name's lockout like a wrong one."""
    code = otp_at(alice.totp, clock, 1)
    body = f'{{"username": "alice", "password": "\\ud800", "otp": "{code}"}}'
    for _ in range(config.max_failed_logins):
        assert post_raw(client, body).status_code == 400
    failures = audit(app, "login")[-config.max_failed_logins :]
    assert {(entry.actor, entry.role, entry.outcome) for entry in failures} == {
        ("alice", "release_engineer", "failure")
    }
    assert all("password is not valid Unicode" in entry.detail for entry in failures)
    assert [entry.outcome for entry in audit(app, "login.locked")] == ["failure"]
    assert login(client, "alice", alice.password, otp_at(alice.totp, clock, 1)).status_code == 401
    assert source_failures(app) == config.max_failed_logins + 1


def test_deeply_nested_json_login_is_a_400_counted_and_audited(
    app: Flask, client: FlaskClient
) -> None:
    """R9, R27: a body nested past the JSON decoder's depth was a 500, not counted."""
    deep = "[" * 20_000 + "]" * 20_000  # 40 kB: within the body limit, past the stack
    for body in (deep, f'{{"username": {deep}, "password": "x"}}'):
        response = post_raw(client, body)
        assert response.status_code == 400
        assert response.mimetype == "application/problem+json"
    entries = audit(app, "login")
    assert [(entry.actor, entry.outcome) for entry in entries] == [("-", "failure")] * 2
    assert all("malformed request" in entry.detail for entry in entries)
    assert source_failures(app) == 2
