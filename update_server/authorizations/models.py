"""The table of issued authorizations: what each technician authorized, and what became of it.

The signed document is kept as issued (canonical JSON), so the record is
the evidence; nothing secret is in it (a nonce is not a secret: it only
makes each document unique, and the device refuses it twice).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base


class IssuedAuthorization(Base):
    __tablename__ = "authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    target_path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    #: Who confirmed it with a fresh code, and from where (R27).
    technician: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    grace_seconds: Mapped[int] = mapped_column(Integer)
    #: The signed document, canonical JSON, as the device receives it.
    document: Mapped[str] = mapped_column(Text)
    #: When the device first picked it up at a poll.
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: What the device reported: its event type (accepted, or a refusal), and when.
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
