"""Single use of a TOTP time step, held by the database (R25), at its edges.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): the unique row of a used step decides a race, a secret taken away
takes its used steps with it, and an unconfirmed secret is forgotten alone.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.clocks import FakeClock
from tests.update_server.people import LoggedIn, enrolled_user, otp_at
from update_server.auth import otp
from update_server.mfa import totp
from update_server.mfa.secretbox import SecretBox
from update_server.models import Role, TotpLastStep, UsedTotp, User

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def alice(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "alice", Role.RELEASE_MANAGER)


def box(app: Flask) -> SecretBox:
    return SecretBox.from_file(app.extensions["fw"].config.secrets_key_file)


def test_r25_a_step_another_worker_recorded_first_is_a_replay_and_the_work_stays(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    """The race's loser: its step is already a used row, its last step not raised yet.

    The unique row decides (IntegrityError in the SAVEPOINT), not the read
    before it; the caller's transaction goes on.
    """
    code = otp_at(alice.totp, clock, steps_ahead=1)
    step = totp.check(alice.totp.secret, code, now=clock.now, last_step=0).step
    assert step is not None
    with app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        assert otp.last_step(db, user) < step
        db.add(UsedTotp(user_id=user.id, step=step, used_at=clock.now))
        db.commit()
        user.last_login_source = "kept"
        with pytest.raises(otp.ReplayedCodeError):
            otp.consume(db, user, code, now=clock.now, box=box(app))
        db.commit()
        assert user.last_login_source == "kept"
        assert otp.last_step(db, user) < step


def test_r25_a_secret_taken_away_takes_its_used_steps_with_it(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    code = otp_at(alice.totp, clock, steps_ahead=1)
    with app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        step = otp.consume(db, user, code, now=clock.now, box=box(app))
        assert otp.last_step(db, user) == step
        otp.forget_steps(db, user)
        db.commit()
        assert otp.last_step(db, user) == 0
        for table in (UsedTotp, TotpLastStep):
            held = db.scalar(
                select(func.count()).select_from(table).where(table.user_id == user.id)
            )
            assert held == 0


def test_t1_only_an_unconfirmed_secret_is_discarded(
    app: Flask, clock: FakeClock, alice: LoggedIn
) -> None:
    with app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == "alice")).one()
        sealed = user.totp_secret
        otp.discard_pending(user)  # enrolled: the confirmed secret stays
        assert user.totp_secret == sealed
        otp.new_secret(user, box(app))
        otp.discard_pending(user)
        assert user.totp_secret is None and user.totp_enrolled is False
        db.rollback()


def test_t1_a_secret_is_never_sealed_for_a_user_without_a_row() -> None:
    """The sealed secret is bound to its row's id: without one it could move to any row."""
    with pytest.raises(ValueError, match="flush the user"):
        otp.secret_context(User(name="nobody"))
