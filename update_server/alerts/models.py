"""The alert outbox: one row per (alert, webhook), written with the audit entry (R31).

A row is added in the transaction that appends its critical audit entry
(``outbox.enqueue``), so a rolled-back action has no alert and a committed
one always has its rows, across restarts. The worker (``worker``) claims due
rows, POSTs them outside any transaction, then records the answer. Delivered
rows are kept (what was sent, when): the table is the delivery's record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base

#: Webhook names (``config.Webhook.name``).
WEBHOOK_LENGTH = 32
#: The longest last error kept (what the receiver or the network said).
ERROR_LENGTH = 512


class AlertDelivery(Base):
    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("alert_id", "webhook", name="uq_alert_outbox_alert_webhook"),
        Index("ix_alert_outbox_due", "delivered_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: ``critical.alert_id`` of the audit entry: the receiver dedups on it.
    alert_id: Mapped[str] = mapped_column(String(64))
    webhook: Mapped[str] = mapped_column(String(WEBHOOK_LENGTH))
    #: The audit entry's sequence number.
    seq: Mapped[int] = mapped_column(BigInteger)
    alert_class: Mapped[str] = mapped_column(String(32))
    #: The JSON body POSTed, byte for byte the same at every attempt.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Who delivers it now, and until when (SQLite's claim; a crashed claimer's lapses).
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_LENGTH), nullable=True)
