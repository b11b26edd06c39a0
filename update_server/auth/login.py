"""Login: throttle, one-time code, password, in SecureDrop's order.

``attempt`` checks one login and raises ``LoginFailedError`` (with the reason,
for the audit log only) or returns who logged in. The rules it enforces:

- The source's limit first (``auth.throttle``, R9): a source with too many
  failed logins in the current window is refused (429, ``Retry-After``)
  before any other work. Every refused login below counts against its
  source, a success does not reset it.
- Throttle by name. Failures are counted per submitted name in
  ``LoginThrottle``, for existing and unknown names alike, so the lock says
  nothing about whether a person exists. After ``max_failed_logins``
  consecutive failures the name is locked for ``lockout``; the row is
  locked for the attempt (SELECT ... FOR UPDATE on PostgreSQL; SQLite's
  BEGIN IMMEDIATE serialises writers), so the count holds across gunicorn
  workers and restarts (R9). A locked attempt does no password work.
- A login that cannot be read (the body not a JSON object, nested too
  deep, a field missing, text that is not valid Unicode such as a lone
  surrogate) is refused with 400 and counted and audited like any failed
  login: against its source, and against its name when it is a possible
  user name. A name that cannot be a user name has no lockout of its own
  (nothing to flood the throttle table with): its source's limit is what
  stops it, and it is audited in an escaped form (``users.printable``).
- Then the one-time code, spent even if the password turns out wrong
  (``auth.otp.consume``: only a step later than the last accepted one,
  R25; a replayed code is ``replayed``, audited with its own outcome, and
  counts like any failure).
  Once a person has enrolled TOTP, a login without a valid code fails:
  the second factor cannot be skipped. Before enrolment (first login,
  R47) the password alone gives a session restricted to finishing first
  login.
- Then the password. Every attempt not refused above (throttled, locked,
  unreadable) runs exactly one argon2 verification, against a fixed dummy
  hash for an unknown name, and one TOTP comparison when a code is given,
  so the time taken does not say whether the name exists or which factor
  was wrong. A removed person (``users.remove``) is verified against the
  dummy hash too, like an unknown name.

The caller records the outcome (audit) and commits before answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from update_server import users
from update_server.auth import otp, sessions, throttle
from update_server.config import ServerConfig
from update_server.errors import AuthenticationError
from update_server.mfa import passwords, totp
from update_server.mfa.secretbox import SecretBox
from update_server.models import LoginThrottle, User

#: The one answer to every failed login (never which factor, nor whether
#: the name exists, nor whether it is locked).
FAILED = (
    "login failed: check your user name, password and one-time code and try again;"
    " after repeated failures the account is locked for a while"
)
#: Verified against for unknown names, to spend the same TOTP work.
_DUMMY_SECRET = "A" * totp.SECRET_CHARS


MALFORMED = (
    "send a JSON object with Content-Type: application/json and the text fields"
    " 'username' and 'password' (and 'otp' once TOTP is enrolled), in valid Unicode"
)


@dataclass(frozen=True, kw_only=True)
class Attempt:
    name: str
    password: str
    code: str | None
    source: str
    now: datetime
    #: Why the request could not be read as a login (refused, 400), or None.
    malformed: str | None = None


@dataclass(frozen=True, kw_only=True)
class Success:
    user: User
    #: The TOTP step used, 0 at first login (no code yet).
    step: int
    #: R11: the previous login and the failures since, shown to the person.
    previous_at: datetime | None
    previous_source: str | None
    failures_since: int


class LoginFailedError(AuthenticationError):
    """A refused login; ``reason`` is for the audit log, never the client.

    ``replayed``: the refusal's reason is a replayed one-time code (R25).
    """

    def __init__(
        self,
        reason: str,
        *,
        user: User | None,
        locked: bool,
        locked_until: datetime | None,
        detail: str = FAILED,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.replayed = reason == otp.ReplayedCodeError.reason
        self.user = user
        self.locked = locked
        self.locked_until = locked_until


class MalformedLoginError(LoginFailedError):
    """A login that cannot be read: 400, counted and audited like a failed one."""

    status = 400
    title = "Bad request"


class SourceThrottledError(LoginFailedError):
    """Too many failed logins from this source (R9): 429 until ``retry_after`` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "too many failed logins from this source",
            user=None,
            locked=False,
            locked_until=None,
            detail=(
                "too many failed logins from your address: wait"
                f" {retry_after} s, then check your user name, password and code"
            ),
        )
        self.retry_after = retry_after


def attempt(db: Session, login: Attempt, *, config: ServerConfig, box: SecretBox) -> Success:
    """Check one login; raise ``LoginFailedError`` or return the person's ``Success``."""
    wait = throttle.retry_after(db, login.source, now=login.now, config=config)
    if wait is not None:
        raise SourceThrottledError(wait)
    # A name no one can have gets no throttle row (nothing to flood the table with).
    possible = users.valid_name(login.name)
    name_lock = _throttle(db, login.name, now=login.now) if possible else None
    user = users.find(db, login.name) if possible else None
    if name_lock is not None and name_lock.locked_until is not None:
        _count_failure(user)
        throttle.count_failure(db, login.source, now=login.now, config=config)
        raise LoginFailedError(
            "locked", user=user, locked=True, locked_until=users.aware(name_lock.locked_until)
        )
    malformed = login.malformed or _unreadable(login)
    if malformed is not None:
        locked_until = _fail(db, name_lock, user, login=login, config=config)
        raise MalformedLoginError(
            f"malformed request: {malformed}",
            user=user,
            locked=False,
            locked_until=locked_until,
            detail=MALFORMED,
        )
    step, code_reason = _check_code(db, user, login, box)
    present = user is not None and not users.removed(user)
    stored = user.password_hash if present and user is not None else passwords.dummy_hash()
    password_ok = passwords.verify(stored, login.password)
    reason = _first_reason(user, code_reason, password_ok=password_ok)
    if user is None or reason is not None:
        locked_until = _fail(db, name_lock, user, login=login, config=config)
        raise LoginFailedError(
            reason or "unknown user", user=user, locked=False, locked_until=locked_until
        )
    if name_lock is not None:
        db.delete(name_lock)
    return _succeed(user, login, step)


def _unreadable(login: Attempt) -> str | None:
    """Why a field of ``login`` is not valid Unicode text (a lone surrogate), or None."""
    for field, text in (("username", login.name), ("password", login.password)):
        if not passwords.valid_unicode(text):
            return f"{field} is not valid Unicode"
    if login.code is not None and not passwords.valid_unicode(login.code):
        return "otp is not valid Unicode"
    return None


def count_failure(
    db: Session, user: User, *, now: datetime, config: ServerConfig
) -> datetime | None:
    """Count a failed password check outside login (e.g. a password change).

    Returns when the lock ends if this failure locked the account.
    """
    return _lock_name(db, _throttle(db, user.name, now=now), user, now=now, config=config)


def _throttle(db: Session, name: str, *, now: datetime) -> LoginThrottle:
    """The throttle row of ``name``, locked for this transaction; an expired lock lifted."""
    query = select(LoginThrottle).where(LoginThrottle.name == name).with_for_update()
    row = db.scalars(query).first()
    if row is None:
        try:
            with db.begin_nested():
                row = LoginThrottle(name=name, failures=0, locked_until=None)
                db.add(row)
                db.flush()
        except IntegrityError:  # another worker created it meanwhile
            row = db.scalars(query).one()
    if row.locked_until is not None and now >= users.aware(row.locked_until):
        row.failures, row.locked_until = 0, None
    return row


def _check_code(
    db: Session, user: User | None, login: Attempt, box: SecretBox
) -> tuple[int, str | None]:
    """The step of the login's code and None, or 0 and why it is refused."""
    if user is None or not user.totp_enrolled:
        if login.code:
            totp.match(_DUMMY_SECRET, login.code, now=login.now)  # same work either way
        return 0, None
    if not login.code:
        return 0, "one-time code missing"
    try:
        return otp.consume(db, user, login.code, now=login.now, box=box), None
    except otp.CodeRefusedError as refused:
        return 0, refused.reason  # R25: a replay is told apart from a wrong code


def _first_reason(user: User | None, code_reason: str | None, *, password_ok: bool) -> str | None:
    if user is None:
        return "unknown user"
    if users.removed(user):
        return "user removed"
    if user.disabled:
        return "user disabled"
    if code_reason is not None:
        return code_reason
    return None if password_ok else "wrong password"


def _count_failure(user: User | None) -> None:
    if user is not None:
        user.failures_since_login += 1


def _fail(
    db: Session,
    name_lock: LoginThrottle | None,
    user: User | None,
    *,
    login: Attempt,
    config: ServerConfig,
) -> datetime | None:
    """Count a failed login against its source and its name; returns when a new lock ends."""
    throttle.count_failure(db, login.source, now=login.now, config=config)
    return _lock_name(db, name_lock, user, now=login.now, config=config)


def _lock_name(
    db: Session,
    name_lock: LoginThrottle | None,
    user: User | None,
    *,
    now: datetime,
    config: ServerConfig,
) -> datetime | None:
    """Count a failure; lock the name (and end the person's sessions) at the limit."""
    _count_failure(user)
    if name_lock is None:
        return None
    name_lock.failures += 1
    if name_lock.failures < config.max_failed_logins:
        return None
    name_lock.locked_until = now + config.lockout
    if user is not None:
        sessions.revoke_all(db, user)
    return name_lock.locked_until


def _succeed(user: User, login: Attempt, step: int) -> Success:
    success = Success(
        user=user,
        step=step,
        previous_at=users.aware(user.last_login_at) if user.last_login_at else None,
        previous_source=user.last_login_source,
        failures_since=user.failures_since_login,
    )
    user.last_login_at, user.last_login_source = login.now, login.source[:64]
    user.failures_since_login = 0
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(login.password)
    return success
