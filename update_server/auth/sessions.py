"""Login sessions: random bearer tokens, stored only as SHA-256 hashes.

A session ends at its absolute expiry, after ``session_idle`` without use,
at logout, and when its owner's password changes. A session whose owner
still has to change the initial password or enrol TOTP can only do that.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from update_server.config import ServerConfig
from update_server.errors import AuthenticationError
from update_server.models import SessionToken, User

TOKEN_BYTES = 32


class SessionEndedError(AuthenticationError):
    """The token was a session of ``user`` that has ended (the audit log names them)."""

    def __init__(self, user: User) -> None:
        super().__init__("session expired or ended: log in again")
        self.user = user


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back; every time we store is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def create(
    db: Session, user: User, *, now: datetime, config: ServerConfig, login_step: int, source: str
) -> str:
    """A new session for ``user``; returns the token, which is never stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    db.add(
        SessionToken(
            user_id=user.id,
            token_hash=_hash(token),
            created_at=now,
            last_seen_at=now,
            expires_at=now + config.session_absolute,
            login_step=login_step,
            source=source[:64],
        )
    )
    db.flush()
    return token


def authenticate(
    db: Session, token: str, *, now: datetime, config: ServerConfig
) -> tuple[User, SessionToken]:
    """The user and session behind ``token``; raise if none is valid now."""
    if not token or len(token) > 256:
        raise AuthenticationError("log in first: send 'Authorization: Bearer <session token>'")
    found = db.execute(
        select(SessionToken, User)
        .join(User, User.id == SessionToken.user_id)
        .where(SessionToken.token_hash == _hash(token))
    ).first()
    if found is None:
        raise AuthenticationError("session unknown or ended: log in again")
    session, user = found
    idle_limit = _aware(session.last_seen_at) + config.session_idle
    if session.revoked or user.disabled or now >= _aware(session.expires_at) or now >= idle_limit:
        raise SessionEndedError(user)
    session.last_seen_at = now
    return user, session


def revoke(db: Session, session: SessionToken) -> None:
    session.revoked = True


def revoke_all(db: Session, user: User) -> int:
    """End every session of ``user`` (password change, lockout, disable)."""
    result = db.execute(
        update(SessionToken)
        .where(SessionToken.user_id == user.id, SessionToken.revoked.is_(False))
        .values(revoked=True)
    )
    return int(getattr(result, "rowcount", 0) or 0)
