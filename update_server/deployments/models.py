"""The tables of fleet operations: groups, per-fleet settings, deployments, their devices.

A deployment's devices and their waves are fixed when it is created
(``rollout``): the approver approves exactly the plan the creator made (R9),
and a later change of a group changes no deployment already made. Rows are
kept for good: a finished deployment and its per-device status stay for the
audit (R27).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base
from update_server.devices.models import NAME_LENGTH


class DeviceGroup(Base):
    """A named group: static (members by id) or dynamic (devices whose fields match).

    Its maintenance window (``windows``), if any: the days, the local start
    time and the duration, in the IANA time zone of the group's site.
    """

    __tablename__ = "device_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    #: ``static`` or ``dynamic`` (``groups.Kind``).
    kind: Mapped[str] = mapped_column(String(16))
    #: A dynamic group's match: device field to value, every one must match.
    criteria: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: Days of the week the window opens on, "mon,tue,..." (None: no window).
    window_days: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Local start time, "HH:MM".
    window_start: Mapped[str | None] = mapped_column(String(5), nullable=True)
    window_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    window_timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GroupMember(Base):
    """A device named in a static group."""

    __tablename__ = "device_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True, index=True)
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FleetSetting(Base):
    """How the devices of one hardware model choose what to install (``poll``).

    No row: ``assigned`` (only what a deployment assigns); ``newest`` is set
    explicitly, by a release manager with a fresh code.
    """

    __tablename__ = "fleet_settings"

    hardware_model: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    install: Mapped[str] = mapped_column(String(16))
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Deployment(Base):
    """One published target assigned to a fixed set of devices, in waves (``rollout``)."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_path: Mapped[str] = mapped_column(String(512))
    #: The SHA-256 the published metadata signed when the deployment was made.
    sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    #: ``rollout.State``.
    state: Mapped[str] = mapped_column(String(32), index=True)
    #: What the creator chose: group names and fleets (hardware models).
    groups: Mapped[list[str]] = mapped_column(JSON)
    fleets: Mapped[list[str]] = mapped_column(JSON)
    #: The waves as asked: [{"count": n} | {"percent": p}, ...]; the rest is the last.
    waves: Mapped[list[dict[str, int]]] = mapped_column(JSON)
    #: The devices in each wave, as planned (``waves.plan``).
    wave_sizes: Mapped[list[int]] = mapped_column(JSON)
    success_percent: Mapped[int] = mapped_column(Integer)
    failure_percent: Mapped[int] = mapped_column(Integer)
    #: Waves started so far (0 until approved and not frozen).
    waves_started: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    state_changed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state_changed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    #: Why it stopped or ended: ``failures``, ``withdrawn``, ``aborted``.
    reason: Mapped[str | None] = mapped_column(String(512), nullable=True)


class DeploymentDevice(Base):
    """One device of a deployment: its wave and its status, fed by its reports."""

    __tablename__ = "deployment_devices"

    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True, index=True)
    #: 0-based wave number.
    wave: Mapped[int] = mapped_column(Integer)
    #: ``status.Status``.
    status: Mapped[str] = mapped_column(String(16))
    #: The device event that set the status (failed, refused, deferred).
    event: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The device's own words for it (a refusal's reason).
    reason: Mapped[str | None] = mapped_column(String(512), nullable=True)
    status_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: First and last poll that handed the device its assignment (check-in).
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    checked_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WithdrawalOffer(Base):
    """The successor the poll offers a device on a withdrawn release (``poll`` P6).

    One row per device: the offer last made, so the first poll that makes it
    is audited once (a new successor replaces it, and is audited too).
    """

    __tablename__ = "withdrawal_offers"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    #: The withdrawn version the device ran when it was offered the successor.
    running_version: Mapped[str] = mapped_column(String(64))
    target_path: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    #: First and last poll that handed it.
    offered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked_in_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
