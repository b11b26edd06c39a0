"""One-time codes: each accepted once, even by two workers at once (R25);
sensitive actions need a fresh one, not the login's (two-step confirmation, R9).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.update_server.conftest import FakeClock
from tests.update_server.people import (
    LoggedIn,
    enrolled_user,
    fast_password_hashing,
    login,
    otp_at,
)
from update_server.access import ALL_ROLES, OTP_HEADER, allow
from update_server.app import create_app
from update_server.auth import otp
from update_server.config import ServerConfig
from update_server.errors import AuthenticationError
from update_server.models import AuditEntry, Role, UsedTotp, User

SENSITIVE = "/api/v1/test/sensitive"


@pytest.fixture(autouse=True)
def _fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


@pytest.fixture
def sensitive_app(app: Flask) -> Flask:
    """The app with a test-only view declared ``fresh_otp=True`` (like a publish)."""

    @allow(*ALL_ROLES, fresh_otp=True)
    def sensitive() -> str:
        g.db.commit()  # the action's outcome, and with it the code's use
        return "done"

    app.add_url_rule(SENSITIVE, "test_sensitive", sensitive, methods=["POST"])
    return app


@pytest.fixture
def alice(sensitive_app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(sensitive_app, client, clock, "alice", Role.RELEASE_MANAGER)


def act(client: FlaskClient, person: LoggedIn, code: str | None) -> int:
    headers = dict(person.headers)
    if code is not None:
        headers[OTP_HEADER] = code
    return client.post(SENSITIVE, headers=headers).status_code


def test_sensitive_action_needs_a_fresh_code(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    assert act(client, alice, None) == 401
    assert act(client, alice, "12345") == 401
    assert act(client, alice, otp_at(alice.totp, clock, steps_ahead=1)) == 200


def test_totp_replay_sensitive_action_code_refused_the_second_time(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    code = otp_at(alice.totp, clock, steps_ahead=1)
    assert act(client, alice, code) == 200
    assert act(client, alice, code) == 401
    assert act(client, alice, alice.next_otp(clock)) == 401  # the same step again
    assert act(client, alice, alice.next_otp(clock)) == 200


def test_two_step_confirmation_the_logins_code_is_refused(
    client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    """R9: the code that opened the session cannot confirm an action in it."""
    assert act(client, alice, otp_at(alice.totp, clock)) == 401


def test_two_step_confirmation_an_unused_code_older_than_the_login_is_refused(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    """A code captured before the login (still in the window) cannot confirm either."""
    with app.extensions["fw"].sessions.begin() as db:
        db.execute(UsedTotp.__table__.delete())  # forget the steps: only after_step remains
    assert act(client, alice, otp_at(alice.totp, clock, steps_ahead=-1)) == 401
    assert act(client, alice, otp_at(alice.totp, clock)) == 401


def test_consume_refuses_a_reused_step_without_losing_the_transaction(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    """The SAVEPOINT: a refused reuse leaves the caller's other work in place."""
    code = otp_at(alice.totp, clock, steps_ahead=1)
    with app.app_context(), app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        step = otp.consume(db, user, code, now=clock.now)
        user.last_login_source = "kept"
        with pytest.raises(AuthenticationError):
            otp.consume(db, user, code, now=clock.now)
        db.commit()
        assert user.last_login_source == "kept"
        used = db.scalar(select(func.count()).select_from(UsedTotp).where(UsedTotp.step == step))
        assert used == 1


def test_consume_refuses_malformed_codes_early(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    good = otp_at(alice.totp, clock, steps_ahead=1)
    with app.app_context(), app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        for bad in (
            "",
            good[:5],
            good + "0",
            f" {good[1:]}",
            "\uff11\uff12\uff13\uff14\uff15\uff16",
            "abcdef",
        ):
            with pytest.raises(AuthenticationError):
                otp.consume(db, user, bad, now=clock.now)


@pytest.fixture
def workers(config: ServerConfig, clock: FakeClock) -> Iterator[list[FlaskClient]]:
    """Two more apps on the same database, as two gunicorn workers are."""
    apps = [create_app(config, clock=clock) for _ in range(2)]
    yield [application.test_client() for application in apps]
    for application in apps:
        application.extensions["fw"].engine.dispose()


def test_concurrent_replay_same_code_at_once_on_two_workers_one_succeeds(
    app: Flask, clock: FakeClock, alice: LoggedIn, workers: list[FlaskClient]
) -> None:
    """R25: two logins racing with one code: exactly one gets a session."""
    code = otp_at(alice.totp, clock, steps_ahead=1)
    barrier = threading.Barrier(len(workers))
    statuses: list[int] = []

    def race(worker: FlaskClient) -> None:
        barrier.wait()
        statuses.append(login(worker, "alice", alice.password, code).status_code)

    threads = [threading.Thread(target=race, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [200, 401]
    with app.extensions["fw"].sessions() as db:
        reasons = db.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "login", AuditEntry.outcome == "failure"
            )
        ).all()
    assert reasons == ['{"reason":"one-time code wrong or reused"}']


def _wrong_code(person: LoggedIn, clock: FakeClock) -> str:
    """A well-formed code that matches no step in the window (never valid by chance)."""
    valid = {otp_at(person.totp, clock, steps_ahead=k) for k in (-1, 0, 1)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)


def test_guessing_confirmation_codes_with_a_stolen_session_locks_the_name_r9(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn, config: ServerConfig
) -> None:
    """R9: wrong X-OTP codes count like failed logins, so a stolen session cannot guess on."""
    wrong = _wrong_code(alice, clock)
    for _ in range(config.max_failed_logins):
        assert act(client, alice, wrong) == 401
    # The session has ended and the name is locked: even the right code acts no more.
    assert act(client, alice, otp_at(alice.totp, clock, steps_ahead=1)) == 401
    with app.extensions["fw"].sessions() as db:
        refused = db.scalars(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "otp.confirm")
        ).one()
        person = db.scalars(select(User).where(User.name == "alice")).one()
        assert person.failures_since_login == config.max_failed_logins
    assert refused == config.max_failed_logins
