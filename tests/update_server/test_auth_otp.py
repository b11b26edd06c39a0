"""One-time codes: each accepted once, even by two workers at once (R25);
sensitive actions need a fresh one, not the login's (two-step confirmation, R9).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyotp
import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.clocks import FakeClock
from tests.update_server.people import (
    LoggedIn,
    enrolled_user,
    login,
    otp_at,
)
from update_server.access import ALL_ROLES, OTP_HEADER, allow
from update_server.app import create_app
from update_server.auth import otp
from update_server.config import ServerConfig
from update_server.errors import AuthenticationError
from update_server.keys import signer_loader
from update_server.mfa.secretbox import SecretBox
from update_server.models import AuditEntry, Role, TotpLastStep, UsedTotp, User

SENSITIVE = "/api/v1/test/sensitive"
#: R25: a replay's audit entry: its own outcome (the code leaked), and the reason.
REPLAY = ("replay", '{"reason":"one-time code replayed"}')


pytestmark = pytest.mark.usefixtures("fast_hashing")


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


def box(app: Flask) -> SecretBox:
    return SecretBox.from_file(app.extensions["fw"].config.secrets_key_file)


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
        # Forget the steps used: only the session's login step remains to refuse them.
        db.execute(UsedTotp.__table__.delete())
        db.execute(TotpLastStep.__table__.delete())
    assert act(client, alice, otp_at(alice.totp, clock, steps_ahead=-1)) == 401
    assert act(client, alice, otp_at(alice.totp, clock)) == 401


def test_consume_refuses_a_reused_step_without_losing_the_transaction(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    """The SAVEPOINT: a refused reuse leaves the caller's other work in place."""
    code = otp_at(alice.totp, clock, steps_ahead=1)
    with app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        step = otp.consume(db, user, code, now=clock.now, box=box(app))
        user.last_login_source = "kept"
        with pytest.raises(AuthenticationError):
            otp.consume(db, user, code, now=clock.now, box=box(app))
        db.commit()
        assert user.last_login_source == "kept"
        used = db.scalar(select(func.count()).select_from(UsedTotp).where(UsedTotp.step == step))
        assert used == 1


def test_consume_refuses_malformed_codes_early(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    good = otp_at(alice.totp, clock, steps_ahead=1)
    with app.extensions["fw"].sessions() as db:
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
                otp.consume(db, user, bad, now=clock.now, box=box(app))


@pytest.fixture
def workers(config: ServerConfig, clock: FakeClock) -> Iterator[list[FlaskClient]]:
    """Two more apps on the same database, as two gunicorn workers are."""
    apps = [create_app(config, clock=clock, signer_loader=signer_loader(config)) for _ in range(2)]
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
    assert _login_failures(app) == [REPLAY]


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


def _audited(app: Flask, action: str, outcomes: tuple[str, ...]) -> list[tuple[str, str]]:
    """(outcome, detail) of the entries of ``action`` with one of ``outcomes``, in order."""
    with app.extensions["fw"].sessions() as db:
        rows = db.execute(
            select(AuditEntry.outcome, AuditEntry.detail)
            .where(AuditEntry.action == action, AuditEntry.outcome.in_(outcomes))
            .order_by(AuditEntry.seq)
        )
        return [(outcome, detail) for outcome, detail in rows]


def _login_failures(app: Flask) -> list[tuple[str, str]]:
    return _audited(app, "login", ("failure", "replay"))


def test_totp_replay_an_older_step_after_a_newer_one_is_refused_on_another_worker(
    app: Flask, clock: FakeClock, alice: LoggedIn, workers: list[FlaskClient]
) -> None:
    """R25 (OWASP ASVS 2.8.4): steps only move forward, held by the database for all workers.

    The code of step T-1, never used, is refused once step T logged in.
    """
    clock.advance(minutes=1)  # steps before this window were used by enrolled_user
    newer, older = otp_at(alice.totp, clock, steps_ahead=1), otp_at(alice.totp, clock)
    assert login(workers[0], "alice", alice.password, newer).status_code == 200
    assert login(workers[1], "alice", alice.password, older).status_code == 401
    assert _login_failures(app) == [REPLAY]


def test_totp_replay_is_audited_as_a_replay_and_locks_like_a_failure(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn, config: ServerConfig
) -> None:
    """R25, R27: a replayed code (it leaked) has its own audit outcome and counts to the lock."""
    used = otp_at(alice.totp, clock)  # the code of alice's login
    for _ in range(config.max_failed_logins):
        assert login(client, "alice", alice.password, used).status_code == 401
    wrong = _wrong_code(alice, clock)
    assert login(client, "alice", alice.password, wrong).status_code == 401  # locked now
    fresh = otp_at(alice.totp, clock, steps_ahead=1)
    assert login(client, "alice", alice.password, fresh).status_code == 401  # locked now
    assert _login_failures(app) == [REPLAY] * config.max_failed_logins
    with app.extensions["fw"].sessions() as db:
        locks = db.scalars(
            select(AuditEntry.outcome).where(AuditEntry.action == "login.locked")
        ).all()
    assert locks == ["failure", "refused", "refused"]


def test_totp_replay_of_the_logins_code_to_confirm_an_action_is_audited_as_a_replay(
    app: Flask, client: FlaskClient, clock: FakeClock, alice: LoggedIn
) -> None:
    """R25, R27: X-OTP with the login's code is a replay, audited as one and counted."""
    assert act(client, alice, otp_at(alice.totp, clock)) == 401
    assert act(client, alice, _wrong_code(alice, clock)) == 401
    with app.extensions["fw"].sessions() as db:
        person = db.scalars(select(User).where(User.name == "alice")).one()
    assert _audited(app, "otp.confirm", ("refused", "replay")) == [
        REPLAY,
        ("refused", '{"reason":"one-time code wrong"}'),
    ]
    assert person.failures_since_login == 2


def test_fail_open_default_consume_takes_no_secrets_key_from_the_app(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    """R9: the secrets key is a required argument, never found in a global (``current_app``)."""
    with app.app_context(), app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        with pytest.raises(TypeError, match="box"):
            otp.consume(db, user, otp_at(alice.totp, clock, steps_ahead=1), now=clock.now)  # type: ignore[call-arg]


def test_weak_stored_totp_secret_is_never_used_as_stored(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    alice: LoggedIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R9: a secret loaded from the database is checked (length, base32) before use."""
    weak = "JBSWY3DPEHPK3PXPJBSWY3DP"  # 120 bits: pyotp alone would use it
    with app.extensions["fw"].sessions.begin() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        user.totp_secret = box(app).seal(weak.encode(), context=otp.secret_context(user))
    code = str(pyotp.TOTP(weak).at(clock.now, counter_offset=1))
    assert login(client, "alice", alice.password, code).status_code == 401
    assert _login_failures(app) == [
        ("failure", '{"reason":"one-time code unusable: stored TOTP secret invalid"}')
    ]
    assert "reset their TOTP enrolment" in caplog.text
    assert weak not in caplog.text


@pytest.mark.parametrize("first_use", [False, True], ids=["last-step-held", "first-use"])
def test_concurrent_replay_an_older_step_racing_a_newer_one_loses(
    app: Flask, clock: FakeClock, alice: LoggedIn, first_use: bool
) -> None:
    """R25: while step T is being accepted (not yet committed), step T-1 is refused.

    Two transactions as on two workers; with the last step already held (an
    UPDATE that waits for the other's row) and at first use (an INSERT that
    loses to the other's, then compares).
    """
    factory = app.extensions["fw"].sessions
    clock.advance(minutes=1)  # steps before this window were used by enrolled_user
    if first_use:
        with factory.begin() as db:
            db.execute(TotpLastStep.__table__.delete())
    newer, older = otp_at(alice.totp, clock, steps_ahead=1), otp_at(alice.totp, clock)
    outcome: list[BaseException | int] = []

    def second_worker() -> None:
        with factory() as db:
            user = db.scalars(select(User).where(User.name == "alice")).one()
            try:
                outcome.append(otp.consume(db, user, older, now=clock.now, box=box(app)))
                db.commit()
            except otp.CodeRefusedError as refused:
                outcome.append(refused)

    with factory() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        otp.consume(db, user, newer, now=clock.now, box=box(app))
        racing = threading.Thread(target=second_worker)
        racing.start()
        racing.join(timeout=0.5)  # it waits for this transaction (or has read before it)
        db.commit()
    racing.join(timeout=60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], otp.ReplayedCodeError)
