"""The tables of the device registry.

Secrets are never stored in clear: an enrolment token as its SHA-256 (it is
shown once, when issued). A device is a row kept for good: decommissioning
changes its state, never deletes it (R62: its records stay for the audit).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base

#: Device ids, hardware models and sites: what the client accepts as a device id.
NAME_LENGTH = 64


class DeviceState(StrEnum):
    """Where a device is in its life (R62)."""

    #: Registered, waiting for an administrator or technician to accept it.
    PENDING = "pending"
    #: May make signed device requests (reports, polls).
    ACCEPTED = "accepted"
    #: Refused at registration: its requests are refused; its id stays taken.
    REJECTED = "rejected"
    #: End of life: its key is revoked at once, its records stay.
    DECOMMISSIONED = "decommissioned"


class EnrolmentToken(Base):
    """A one-time enrolment token: bound to a model, optionally a device id and a site."""

    __tablename__ = "enrolment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: SHA-256 of the token (hex); the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hardware_model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    device_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    site: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)
    #: The device is accepted at registration (pre-authorization, as Mender's).
    pre_authorized: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Set once, atomically, by the registration that used the token.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)


class Device(Base):
    """A registered device: its key, its state, and what it last reported."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    hardware_model: Mapped[str] = mapped_column(String(NAME_LENGTH))
    site: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16), default=DeviceState.PENDING)
    #: securesystemslib key dict (keytype, scheme, keyval) of the device key.
    public_key: Mapped[dict[str, Any]] = mapped_column(JSON)
    key_id: Mapped[str] = mapped_column(String(64))
    enrolment_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrolment_tokens.id"), nullable=True
    )
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Who last changed the state (accept, reject, decommission), and when.
    state_changed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state_changed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    # What the device last reported (R38).
    running_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slot: Mapped[str | None] = mapped_column(String(8), nullable=True)
    security_floor: Mapped[int | None] = mapped_column(Integer, nullable=True)
    mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    last_result: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_report_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: The expiry of each top-level role the device holds, as it reported them.
    metadata_expires: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The device's event log as the server anchors it (``update_server.device_log``):
    # the head last accepted, where the anchor began, and the last alert.
    log_head_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_head_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    log_anchored_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_alert: Mapped[str | None] = mapped_column(String(512), nullable=True)
    log_alert_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeviceNonce(Base):
    """Nonces of signed device requests seen within the skew window (R25).

    The primary key makes "seen before" atomic across workers: the second
    insert of a nonce fails. Rows older than the window are pruned.
    """

    __tablename__ = "device_nonces"

    device_id: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class TechnicianSite(Base):
    """A site whose devices a technician sees and may accept or reject (R6, R9)."""

    __tablename__ = "technician_sites"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    site: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
