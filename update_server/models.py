"""Tables. Secrets are never stored in clear: passwords as argon2id hashes,
session tokens as SHA-256, TOTP secrets encrypted (AES-GCM)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base


class Role(StrEnum):
    """Who a person is to the server (R6 least privilege, R9 roles)."""

    ADMIN = "admin"
    SECURITY_OFFICER = "security_officer"
    RELEASE_ENGINEER = "release_engineer"
    RELEASE_MANAGER = "release_manager"
    TECHNICIAN = "technician"
    AUDITOR = "auditor"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    #: True until the person replaces the one-time initial password (R47).
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_enrolled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_login_source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Failed attempts since the last successful login, shown at login (R11).
    failures_since_login: Mapped[int] = mapped_column(Integer, default=0)
    #: When the person was removed for good (``users.remove``); None while present.
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PasswordHistory(Base):
    """Hashes of a person's previous passwords, to refuse reuse (R9)."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LoginThrottle(Base):
    """Failed logins by name, for existing and unknown names alike.

    Keyed by the name typed, so throttling cannot tell an attacker whether
    a user exists; counted in the database, so the limit holds across
    gunicorn workers and restarts (R9).
    """

    __tablename__ = "login_throttle"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SourceThrottle(Base):
    """Failed logins by source address in the current window (R9, ``auth.throttle``).

    In the database, so one source's limit holds across gunicorn workers
    and restarts; a row whose window has ended is pruned.
    """

    __tablename__ = "login_source_throttle"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class RefusalTally(Base):
    """Refusals counted, not yet audited, one row per key and open window (R27).

    ``auth.refusals``: the first refusal of a key in a window is audited at
    once; ``later`` counts the ones after it, written as one entry when the
    window has ended and the row is deleted.
    """

    __tablename__ = "refusal_tallies"

    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    route: Mapped[str] = mapped_column(String(255), primary_key=True)
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    later: Mapped[int] = mapped_column(Integer, default=0)


class UsedTotp(Base):
    """Each TOTP time step a person has used: a code is accepted once (R25).

    The primary key makes the refusal atomic: two concurrent requests with
    the same code cannot both insert the same (user, step).
    """

    __tablename__ = "used_totp"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TotpLastStep(Base):
    """The last TOTP time step accepted for a person: codes only move forward (R25).

    One row per person. ``auth.otp`` raises it with a conditional UPDATE
    (``step < new``), atomic on both databases, so two workers cannot both
    accept a code at or before it; the primary key makes the first insert
    race-safe (SAVEPOINT, then UPDATE).
    """

    __tablename__ = "totp_last_step"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SessionToken(Base):
    """A login session; the token itself is only ever held by the client."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The TOTP step used at login: a sensitive action needs a later one.
    login_step: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(64), default="")


class AuditEntry(Base):
    """One security event in the append-only, hash-chained log (R27, R28)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(512))
    outcome: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditCheckpoint(Base):
    """The chain head at ``seq``, signed with the audit key."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    keyid: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)
