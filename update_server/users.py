"""People: creating them, their passwords, disabling and unlocking them.

There are no default credentials (R47): a person is created with a random
one-time password, shown once, that must be replaced at first login, before
anything else, together with TOTP enrolment. Every change is audited.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from update_server.audit import Event, append
from update_server.audit.actions import Action
from update_server.auth import sessions
from update_server.config import ServerConfig
from update_server.errors import BadRequestError, ConflictError, NotFoundError
from update_server.mfa import passwords
from update_server.models import LoginThrottle, PasswordHistory, Role, User

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: Unambiguous characters for initial passwords (no 0/O, 1/l/I).
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_INITIAL_GROUPS, _GROUP_LENGTH = 5, 5  # 25 characters, 125 bits


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who makes a change, for the audit log."""

    name: str
    role: str
    source: str


def valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def printable(name: str) -> str:
    """``name`` as the audit log records a name typed at login, at most 64 characters.

    A valid name as is, an empty one as ``-``, any other escaped to
    printable ASCII (``\\ud800``, ``\\n``): a lone surrogate or a control
    character can neither break the log's storage nor forge a line in an
    export.
    """
    return name if valid_name(name) else (ascii(name)[1:-1][:64] or "-")


def initial_password() -> str:
    """A random one-time password, in groups of five, easy to read out."""
    groups = (
        "".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LENGTH))
        for _ in range(_INITIAL_GROUPS)
    )
    return "-".join(groups)


def add_user(
    db: Session, *, name: str, role: Role | str, now: datetime, actor: Actor | None = None
) -> str:
    """Create ``name`` with ``role``; return its one-time initial password.

    Only the password's hash is stored; the caller shows it once.
    """
    if not valid_name(name):
        raise BadRequestError(
            f"user name {name!r} is not allowed: use 1 to 64 characters of a-z, 0-9, '.', '_'"
            " or '-', starting with a letter or digit"
        )
    try:
        role = Role(role)
    except ValueError:
        raise BadRequestError(
            f"unknown role {role!r}: choose one of {', '.join(r.value for r in Role)}"
        ) from None
    if find(db, name) is not None:
        raise ConflictError(f"user {name} already exists")
    password = initial_password()
    db.add(
        User(
            name=name,
            role=role.value,
            password_hash=passwords.hash_password(password),
            must_change_password=True,
            totp_enrolled=False,
            disabled=False,
            created_at=now,
            failures_since_login=0,
        )
    )
    db.flush()
    _audit(db, Action.USER_CREATE, name, actor=actor, now=now, detail={"role": role.value})
    return password


def find(db: Session, name: str) -> User | None:
    return db.scalars(select(User).where(User.name == name)).first()


def get(db: Session, name: str) -> User:
    user = find(db, name)
    if user is None:
        raise NotFoundError(f"no user named {name}")
    return user


def all_users(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.name)))


def locked_until(db: Session, name: str, *, now: datetime) -> datetime | None:
    """When the login lock on ``name`` ends, if it is locked now."""
    throttle = db.get(LoginThrottle, name)
    if throttle is None or throttle.locked_until is None:
        return None
    until = aware(throttle.locked_until)
    return until if now < until else None


def disable(db: Session, name: str, *, now: datetime, actor: Actor | None = None) -> int:
    """Disable ``name`` and end its sessions; returns how many were ended."""
    user = get(db, name)
    user.disabled = True
    ended = sessions.revoke_all(db, user)
    _audit(
        db,
        Action.USER_CHANGE,
        name,
        actor=actor,
        now=now,
        detail={"change": "disable", "sessions": ended},
    )
    return ended


def unlock(db: Session, name: str, *, now: datetime, actor: Actor | None = None) -> None:
    """Lift a login lockout on ``name`` and clear its failure count."""
    get(db, name)
    db.execute(delete(LoginThrottle).where(LoginThrottle.name == name))
    _audit(db, Action.USER_CHANGE, name, actor=actor, now=now, detail={"change": "unlock"})


def change_password(
    db: Session, user: User, *, new: str, now: datetime, config: ServerConfig
) -> int:
    """Replace ``user``'s password (already authenticated) under the policy.

    Refuses (``PasswordPolicyError``) a weak password and any of the last
    ``config.password_history`` passwords, the current one included (so
    the one-time initial password can never be kept, R47). Ends every
    session of the user; returns how many.
    """
    passwords.check_policy(new, name=user.name, min_length=config.password_min_length)
    remembered = max(config.password_history, 1)
    history = list(
        db.scalars(
            select(PasswordHistory)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
        )
    )
    recent = [old.password_hash for old in history[: remembered - 1]]
    if passwords.reused(new, [user.password_hash, *recent]):
        raise passwords.PasswordPolicyError(
            [f"you used this password recently: choose one not among your last {remembered}"]
        )
    # Keep the remembered - 1 newest previous passwords, the current one among them.
    for old in history[max(remembered - 2, 0) :]:
        db.delete(old)
    if remembered > 1:
        db.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash, created_at=now))
    user.password_hash = passwords.hash_password(new)
    user.must_change_password = False
    return sessions.revoke_all(db, user)


def aware(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back; every time we store is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _audit(
    db: Session,
    action: Action,
    name: str,
    *,
    actor: Actor | None,
    now: datetime,
    detail: dict[str, object],
) -> None:
    who = actor or Actor(name="fwserver", role="cli", source="local")
    append(
        db,
        Event(
            time=now,
            actor=who.name,
            role=who.role,
            action=action.value,
            object=f"user:{name}",
            outcome="success",
            source=who.source,
            detail=detail,
        ),
    )
