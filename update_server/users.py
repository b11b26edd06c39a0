"""People: creating them, their passwords, and an administrator's repairs.

There are no default credentials (R47): a person is created with a random
one-time password, shown once, that must be replaced at first login, before
anything else, together with TOTP enrolment. Every change is audited.

An administrator recovers a person from mistakes (R9, R47): ``reset`` gives
a new one-time password and clears the TOTP enrolment and the lockout (the
person then does first login again, exactly like a new account), ``enable``
undoes ``disable``, ``remove`` ends a person for good. The last active
administrator can be neither disabled nor removed.

A removed person is a row kept, not deleted: the audit log names people by
name, so a name is never given to someone else (an entry for ``alice``
always means the same person), and the rows that refer to the person
(sessions, used codes, password history) stay as they were. ``removed_at``
says when, and is what makes the person removed; they are also
``disabled``, with ``UNUSABLE_HASH`` for a password hash, which no password
verifies (as ``!`` in shadow(5)). Login treats the name like an unknown
one, and nothing can enable, reset or re-add it.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from update_server.audit import append, audit_event, vocabulary
from update_server.audit.actions import Action
from update_server.auth import otp, sessions
from update_server.config import ServerConfig
from update_server.errors import BadRequestError, ConflictError, NotFoundError
from update_server.mfa import passwords
from update_server.models import LoginThrottle, PasswordHistory, Role, User

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: Unambiguous characters for initial passwords (no 0/O, 1/l/I).
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
_INITIAL_GROUPS, _GROUP_LENGTH = 5, 5  # 25 characters, 125 bits
#: Who makes a change: the audit vocabulary's one ``Actor``.
Actor = vocabulary.Actor
#: The password hash of a removed person: not an argon2 hash, nothing verifies it.
UNUSABLE_HASH = "!"


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
    existing = find(db, name)
    if existing is not None and removed(existing):
        raise ConflictError(
            f"user {name} was removed, and a name is never reused (the audit log names"
            " people by name): choose another name"
        )
    if existing is not None:
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


def removed(user: User) -> bool:
    return user.removed_at is not None


def get_present(db: Session, name: str) -> User:
    """The person called ``name``; refused if there is none, or they were removed."""
    user = get(db, name)
    if removed(user):
        raise ConflictError(
            f"user {name} was removed and cannot be changed: add the person again under"
            " another name"
        )
    return user


def disable(db: Session, name: str, *, now: datetime, actor: Actor | None = None) -> int:
    """Disable ``name`` and end its sessions; returns how many were ended.

    Refused for the last active administrator (nobody could repair accounts).
    """
    user = get_present(db, name)
    if user.disabled:
        raise ConflictError(f"user {name} is disabled already")
    _refuse_last_admin(db, user, doing="disable")
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
    """Lift a login lockout on ``name`` and clear its failure count (not of a removed person)."""
    get_present(db, name)
    db.execute(delete(LoginThrottle).where(LoginThrottle.name == name))
    _audit(db, Action.USER_CHANGE, name, actor=actor, now=now, detail={"change": "unlock"})


def enable(db: Session, name: str, *, now: datetime, actor: Actor | None = None) -> None:
    """Enable ``name`` again after ``disable`` (a removed person stays removed)."""
    user = get_present(db, name)
    if not user.disabled:
        raise ConflictError(f"user {name} is not disabled: nothing to enable")
    user.disabled = False
    _audit(db, Action.USER_CHANGE, name, actor=actor, now=now, detail={"change": "enable"})


def reset(
    db: Session, name: str, *, now: datetime, config: ServerConfig, actor: Actor | None = None
) -> str:
    """Give ``name`` a new one-time password, clear TOTP and the lockout; return the password.

    The person does first login again, exactly like a new account: the one
    password, then enrolment of a fresh secret and a new password (R47).
    Every session ends. A disabled person stays disabled. The replaced
    password joins the history, so a password that leaked cannot come back.
    The old secret's accepted steps go with it (``otp.forget_steps``).
    """
    user = get_present(db, name)
    if not user.must_change_password and config.password_history > 1:
        db.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash, created_at=now))
    password = initial_password()
    user.password_hash = passwords.hash_password(password)
    user.must_change_password = True
    user.totp_secret, user.totp_enrolled = None, False
    otp.forget_steps(db, user)
    db.execute(delete(LoginThrottle).where(LoginThrottle.name == name))
    ended = sessions.revoke_all(db, user)
    detail = {"change": "reset", "sessions": ended}
    _audit(db, Action.USER_CHANGE, name, actor=actor, now=now, detail=detail)
    return password


def remove(db: Session, name: str, *, now: datetime, actor: Actor | None = None) -> int:
    """Remove ``name`` for good (the row stays, see the module); returns the sessions ended.

    Refused for the last active administrator.
    """
    user = get_present(db, name)
    _refuse_last_admin(db, user, doing="remove")
    user.removed_at, user.disabled = now, True
    user.password_hash = UNUSABLE_HASH
    user.totp_secret, user.totp_enrolled = None, False
    ended = sessions.revoke_all(db, user)
    detail = {"change": "remove", "sessions": ended}
    _audit(db, Action.USER_CHANGE, name, actor=actor, now=now, detail=detail)
    return ended


def _refuse_last_admin(db: Session, user: User, *, doing: str) -> None:
    if user.role != Role.ADMIN.value or user.disabled:
        return
    others = db.scalars(
        select(User.id).where(
            User.role == Role.ADMIN.value,
            User.disabled.is_(False),
            User.removed_at.is_(None),
            User.id != user.id,
        )
    ).first()
    if others is None:
        raise ConflictError(
            f"user {user.name} is the last active administrator: add or enable another"
            f" administrator first, then {doing} {user.name}"
        )


def audit_refusal(
    db: Session,
    change: str,
    name: str,
    *,
    reason: str,
    now: datetime,
    actor: Actor | None = None,
) -> None:
    """Record an administrator's change to ``name`` that was refused (R27)."""
    detail: dict[str, object] = {"change": change, "reason": reason[:200]}
    _audit(
        db,
        Action.USER_CHANGE,
        printable(name),
        actor=actor,
        now=now,
        detail=detail,
        outcome="refused",
    )


def check_new_password(db: Session, user: User, *, new: str, config: ServerConfig) -> None:
    """Raise ``PasswordPolicyError`` if ``change_password`` would refuse ``new``; no change."""
    passwords.check_policy(new, name=user.name, min_length=config.password_min_length)
    remembered = max(config.password_history, 1)
    if passwords.reused(new, [user.password_hash, *_recent(db, user, remembered - 1)]):
        raise passwords.PasswordPolicyError(
            [f"you used this password recently: choose one not among your last {remembered}"]
        )


def _recent(db: Session, user: User, count: int) -> list[str]:
    rows = db.scalars(
        select(PasswordHistory.password_hash)
        .where(PasswordHistory.user_id == user.id)
        .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
        .limit(count)
    )
    return list(rows)


def change_password(
    db: Session, user: User, *, new: str, now: datetime, config: ServerConfig
) -> int:
    """Replace ``user``'s password (already authenticated) under the policy.

    Refuses (``PasswordPolicyError``) a weak password and any of the last
    ``config.password_history`` passwords, the current one included (so
    the one-time initial password can never be kept, R47). Ends every
    session of the user; returns how many.
    """
    check_new_password(db, user, new=new, config=config)
    remembered = max(config.password_history, 1)
    history = db.scalars(
        select(PasswordHistory)
        .where(PasswordHistory.user_id == user.id)
        .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id.desc())
    ).all()
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
    outcome: str = "success",
) -> None:
    who = actor or Actor(name="fwserver", role="cli", source="local")
    event = audit_event(
        action, actor=who, object=f"user:{name}", outcome=outcome, time=now, detail=detail
    )
    append(db, event)
