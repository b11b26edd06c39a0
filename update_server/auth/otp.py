"""TOTP codes checked against the database: time steps only move forward.

The pure check (which step a code matches, and whether that step is later
than the last accepted one, T3) is ``mfa.totp``; this module holds the last
step in the database so the rule holds across workers (R25 anti-replay,
OWASP ASVS 2.8.4):

- ``TotpLastStep`` keeps the person's last accepted step; accepting a code
  raises it with a conditional UPDATE (``step < new``), so of two requests
  racing on two workers, with one code or with two codes of different
  steps, only those that move it forward succeed. The row's first insert
  runs in a SAVEPOINT; losing that race falls back to the UPDATE.
- ``UsedTotp`` records each accepted step; its primary key (user, step)
  still refuses the same step twice on its own.
- Both writes are in one SAVEPOINT of the request's transaction: a refusal
  leaves the request's other work in place, and the code is spent when
  that transaction commits, so a view that takes a fresh code commits its
  outcome (success, or the audited refusal).

A refused code raises ``WrongCodeError``, ``ReplayedCodeError`` (a right
code of a step not later than the last accepted one: it leaked, or was
used) or ``UnusableSecretError`` (the stored secret does not open or breaks
``mfa.totp``'s T1); callers audit which. All say the same to the client.

TOTP secrets are kept sealed (``mfa.secretbox``) and bound to the user's id
and name, so a sealed secret moved to another row does not open. The
secrets key is a required argument: nothing here reads it from the app.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from update_server.errors import AuthenticationError
from update_server.mfa import totp
from update_server.mfa.secretbox import SecretBox, SecretBoxError
from update_server.models import TotpLastStep, UsedTotp, User

logger = logging.getLogger(__name__)

REFUSED = (
    "one-time code refused: enter the current code from your authenticator app;"
    " each code works once, and not the one used to log in"
)


class CodeRefusedError(AuthenticationError):
    """A one-time code not accepted; ``reason`` is for the audit log only."""

    reason = "one-time code wrong"

    def __init__(self) -> None:
        super().__init__(REFUSED)


class WrongCodeError(CodeRefusedError):
    reason = "one-time code wrong"


class ReplayedCodeError(CodeRefusedError):
    """R25: the right code of a step already passed: it was used, or seen, before."""

    reason = "one-time code replayed"


class UnusableSecretError(CodeRefusedError):
    """The stored secret cannot be used: the person must enrol TOTP again."""

    reason = "one-time code unusable: stored TOTP secret invalid"


def consume(
    db: Session,
    user: User,
    code: str,
    *,
    now: datetime,
    box: SecretBox,
    after_step: int = 0,
) -> int:
    """Accept ``code`` once for ``user`` and return its time step, or raise.

    The step must be later than the last one accepted for ``user`` and than
    ``after_step`` (a sensitive action needs a code later than the login's).
    Raises a ``CodeRefusedError``.
    """
    secret = open_secret(user, box)
    if secret is None:
        raise UnusableSecretError
    last = max(after_step, last_step(db, user))
    checked = totp.check(secret, code, now=now, last_step=last)
    if checked.verdict is totp.Verdict.WRONG or checked.step is None:
        raise WrongCodeError
    if checked.verdict is totp.Verdict.REPLAYED or not _advance(db, user, checked.step, now):
        raise ReplayedCodeError
    return checked.step


def last_step(db: Session, user: User) -> int:
    """The last step accepted for ``user``, 0 if none.

    A person whose codes were used before ``TotpLastStep`` existed starts
    from the newest ``UsedTotp`` row.
    """
    held = db.scalar(select(TotpLastStep.step).where(TotpLastStep.user_id == user.id))
    if held is not None:
        return int(held)
    used = db.scalar(select(func.max(UsedTotp.step)).where(UsedTotp.user_id == user.id))
    return int(used or 0)


def _advance(db: Session, user: User, step: int, now: datetime) -> bool:
    """Record ``step`` as used and last; False if a racing request got there first."""
    try:
        with db.begin_nested() as savepoint:
            db.add(UsedTotp(user_id=user.id, step=step, used_at=now))
            db.flush()
            if not _raise_last_step(db, user, step, now):
                savepoint.rollback()
                return False
    except IntegrityError:  # this very step, inserted by a racing request
        return False
    return True


def _raise_last_step(db: Session, user: User, step: int, now: datetime) -> bool:
    if _update_last_step(db, user, step, now):
        return True
    if db.scalar(select(TotpLastStep.step).where(TotpLastStep.user_id == user.id)) is not None:
        return False
    try:
        with db.begin_nested():
            db.add(TotpLastStep(user_id=user.id, step=step, used_at=now))
            db.flush()
    except IntegrityError:  # another worker inserted the row first: compare with its step
        return _update_last_step(db, user, step, now)
    return True


def _update_last_step(db: Session, user: User, step: int, now: datetime) -> bool:
    result = db.execute(
        update(TotpLastStep)
        .where(TotpLastStep.user_id == user.id, TotpLastStep.step < step)
        .values(step=step, used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def new_secret(user: User, box: SecretBox) -> str:
    """Give ``user`` a new (not yet confirmed) secret; returns it in clear, once."""
    secret = totp.new_secret()
    user.totp_secret = box.seal(secret.encode(), context=secret_context(user))
    user.totp_enrolled = False
    return secret


def forget_steps(db: Session, user: User) -> None:
    """Forget the steps accepted for ``user``'s secret, when that secret is taken away.

    Replay is a property of one secret: no code of a new secret has been
    used, and a code of the old one no longer verifies. Without this, a
    person reset within 30 s of their last login would see their first
    code of the new secret refused as a replay.
    """
    db.execute(delete(UsedTotp).where(UsedTotp.user_id == user.id))
    db.execute(delete(TotpLastStep).where(TotpLastStep.user_id == user.id))


def pending_secret(user: User, box: SecretBox) -> str | None:
    """The secret issued to ``user`` and not confirmed yet, in clear; None if there is none.

    Enrolment shows it again rather than a new one, so the entry the person
    already made in their authenticator stays good while they retry.
    """
    return None if user.totp_enrolled else open_secret(user, box)


def discard_pending(user: User) -> None:
    """Forget an unconfirmed secret: the next enrolment issues a new one."""
    if not user.totp_enrolled:
        user.totp_secret = None


def open_secret(user: User, box: SecretBox) -> str | None:
    """The user's secret in clear, or None if there is none, it does not open or breaks T1.

    A secret that does not open or is not a valid TOTP secret is logged
    (never its content) with what to do: it is never used as stored.
    """
    if user.totp_secret is None:
        return None
    try:
        secret = box.open(user.totp_secret, context=secret_context(user)).decode()
        return totp.check_secret(secret)
    except (SecretBoxError, UnicodeDecodeError, totp.TotpSecretError) as exc:
        logger.error(  # noqa: TRY400 - the message says it all; no traceback, no secret
            "TOTP secret of user id %s is unusable (%s): reset their TOTP enrolment",
            user.id,
            exc if not isinstance(exc, UnicodeDecodeError) else "not text",
        )
        return None


def secret_context(user: User) -> bytes:
    """Associated data binding a sealed secret to its row (id and name)."""
    if user.id is None:
        raise ValueError("flush the user before sealing a secret for it")
    return f"fwupdate/totp/v1/{user.id}/{user.name}".encode()
