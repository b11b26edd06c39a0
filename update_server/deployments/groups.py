"""Device groups and per-fleet install settings: who a deployment can name (issue 11).

Rules:

- GR1 A group has a unique name (a device-id-like name). It is ``static``
  (devices added and removed by id) or ``dynamic`` (every device whose
  fields all match its ``criteria``: hardware model, site, running version,
  mode or slot). A dynamic group has members only by its criteria; a static
  one has no criteria.
- GR2 A member added must be a registered device (404 otherwise); adding one
  twice, or removing one that is not a member, changes nothing and says so.
- GR3 A group's maintenance window is a ``windows.Schedule`` (MW4): set,
  replaced or removed as a whole.
- GR4 A fleet is every device of one hardware model. Its install setting is
  ``assigned`` (a registered device installs only what a deployment assigns
  it) unless set to ``newest`` explicitly; setting it needs a fresh code.
- GR5 Each change is one audit entry (who, which group or fleet, what
  changed); a refused change too, committed by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.deployments.models import DeviceGroup, FleetSetting, GroupMember
from update_server.deployments.windows import Schedule
from update_server.devices.enrolment import check_name
from update_server.devices.models import Device
from update_server.errors import BadRequestError, ConflictError, NotFoundError


class Kind(StrEnum):
    STATIC = "static"
    DYNAMIC = "dynamic"


class Install(StrEnum):
    """GR4: what a fleet's registered devices install."""

    ASSIGNED = "assigned"
    NEWEST = "newest"


#: GR1: the device fields a dynamic group matches on.
CRITERIA = {
    "hardware_model": Device.hardware_model,
    "site": Device.site,
    "running_version": Device.running_version,
    "mode": Device.mode,
    "slot": Device.slot,
}


def get(db: Session, name: str) -> DeviceGroup:
    group = db.scalars(select(DeviceGroup).where(DeviceGroup.name == name)).first()
    if group is None:
        raise NotFoundError(f"no group {name[:64]!r}: 'fwserver group list' shows them")
    return group


def all_groups(db: Session) -> list[DeviceGroup]:
    return list(db.scalars(select(DeviceGroup).order_by(DeviceGroup.name)))


def create(
    db: Session,
    *,
    name: str,
    kind: str,
    criteria: Mapping[str, str] | None,
    actor: Actor,
    now: datetime,
) -> DeviceGroup:
    """GR1, GR5."""
    check_name("group name", name)
    try:
        chosen = Kind(kind)
    except ValueError:
        raise BadRequestError("kind is 'static' or 'dynamic'") from None
    matched = _criteria(chosen, criteria)
    if db.scalars(select(DeviceGroup.id).where(DeviceGroup.name == name)).first() is not None:
        raise ConflictError(f"a group named {name} exists already")
    group = DeviceGroup(
        name=name, kind=chosen.value, criteria=matched, created_by=actor.name, created_at=now
    )
    db.add(group)
    db.flush()
    _audit(db, group.name, "create", actor, now, kind=chosen.value, criteria=matched)
    return group


def delete(db: Session, group: DeviceGroup, *, actor: Actor, now: datetime) -> None:
    """GR5: a group's deletion changes no deployment made with it (their devices are fixed)."""
    name = group.name
    db.delete(group)
    db.flush()
    _audit(db, name, "delete", actor, now)


def add_members(
    db: Session, group: DeviceGroup, device_ids: Sequence[str], *, actor: Actor, now: datetime
) -> list[str]:
    """GR2: the ids added (those already members are left as they are)."""
    _require_static(group)
    present = set(_static_ids(db, group))
    added = []
    for device_id in dict.fromkeys(device_ids):
        if db.get(Device, device_id) is None:
            raise NotFoundError(f"no device {device_id[:64]}")
        if device_id not in present:
            db.add(
                GroupMember(
                    group_id=group.id, device_id=device_id, added_by=actor.name, added_at=now
                )
            )
            added.append(device_id)
    db.flush()
    _audit(db, group.name, "add", actor, now, devices=added)
    return added


def remove_member(
    db: Session, group: DeviceGroup, device_id: str, *, actor: Actor, now: datetime
) -> None:
    """GR2."""
    _require_static(group)
    row = db.get(GroupMember, (group.id, device_id))
    if row is None:
        raise NotFoundError(f"{device_id[:64]} is not a member of {group.name}")
    db.delete(row)
    db.flush()
    _audit(db, group.name, "remove", actor, now, devices=[device_id])


def set_window(
    db: Session, group: DeviceGroup, schedule: Schedule | None, *, actor: Actor, now: datetime
) -> None:
    """GR3: the group's window replaced (None: removed)."""
    group.window_days = None if schedule is None else ",".join(schedule.days)
    group.window_start = None if schedule is None else schedule.start
    group.window_minutes = None if schedule is None else schedule.minutes
    group.window_timezone = None if schedule is None else schedule.timezone
    db.flush()
    _audit(db, group.name, "window", actor, now, window=window_summary(group))


def schedule_of(group: DeviceGroup) -> Schedule | None:
    if group.window_days is None or group.window_start is None:
        return None
    return Schedule(
        days=tuple(group.window_days.split(",")),
        start=group.window_start,
        minutes=group.window_minutes or 0,
        timezone=group.window_timezone or "UTC",
    )


def members(db: Session, group: DeviceGroup) -> list[Device]:
    """GR1: the devices of ``group`` now, by id."""
    return list(db.scalars(member_query(group).order_by(Device.id)))


def member_query(group: DeviceGroup) -> Select[Any]:
    if group.kind == Kind.STATIC:
        return (
            select(Device)
            .join(GroupMember, GroupMember.device_id == Device.id)
            .where(GroupMember.group_id == group.id)
        )
    conditions = [CRITERIA[name] == value for name, value in (group.criteria or {}).items()]
    return select(Device).where(and_(*conditions))


def matches(group: DeviceGroup, device: Device, static_ids: set[int]) -> bool:
    """Whether ``device`` is in ``group`` (``static_ids``: the static groups naming it)."""
    if group.kind == Kind.STATIC:
        return group.id in static_ids
    return all(getattr(device, name) == value for name, value in (group.criteria or {}).items())


def windows_of(db: Session, device: Device) -> list[Schedule]:
    """MW3's input: the schedules of every group ``device`` is in.

    One query (the poll asks at each check-in): the groups with a window that
    are dynamic, or static with ``device`` among their members; the dynamic
    ones are then matched here (GR1).
    """
    static_ids = select(GroupMember.group_id).where(GroupMember.device_id == device.id)
    with_window = db.scalars(
        select(DeviceGroup)
        .where(DeviceGroup.window_days.is_not(None))
        .where(or_(DeviceGroup.kind != Kind.STATIC.value, DeviceGroup.id.in_(static_ids)))
    )
    schedules = []
    for group in with_window:
        member = group.kind == Kind.STATIC or matches(group, device, set())
        schedule = schedule_of(group) if member else None
        if schedule is not None:
            schedules.append(schedule)
    return schedules


def summary(group: DeviceGroup, member_ids: Sequence[str] | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "name": group.name,
        "kind": group.kind,
        "criteria": group.criteria,
        "window": window_summary(group),
        "created_by": group.created_by,
    }
    if member_ids is not None:
        shown["devices"] = list(member_ids)
    return shown


def window_summary(group: DeviceGroup) -> dict[str, Any] | None:
    schedule = schedule_of(group)
    if schedule is None:
        return None
    return {
        "days": list(schedule.days),
        "start": schedule.start,
        "duration_minutes": schedule.minutes,
        "timezone": schedule.timezone,
    }


def audit_refusal(
    db: Session, name: str, change: str, *, reason: str, actor: Actor, now: datetime
) -> None:
    """GR5: a refused change, in the caller's transaction (the caller commits)."""
    append(
        db,
        audit_event(
            Action.GROUP_CHANGE,
            actor=actor,
            object=f"group:{name[:64]}",
            outcome="refused",
            time=now,
            detail={"change": change, "reason": reason[:200]},
        ),
    )


# -- fleets -------------------------------------------------------------------------


def install_of(db: Session, hardware_model: str) -> Install:
    """GR4: ``assigned`` unless the fleet was set otherwise."""
    row = db.get(FleetSetting, hardware_model)
    return Install.ASSIGNED if row is None else Install(row.install)


def fleet_settings(db: Session) -> list[FleetSetting]:
    return list(db.scalars(select(FleetSetting).order_by(FleetSetting.hardware_model)))


def set_install(
    db: Session, hardware_model: str, install: str, *, actor: Actor, now: datetime
) -> FleetSetting:
    """GR4, GR5."""
    check_name("hardware model", hardware_model)
    try:
        chosen = Install(install)
    except ValueError:
        raise BadRequestError("install is 'assigned' or 'newest'") from None
    row = db.get(FleetSetting, hardware_model)
    before = Install.ASSIGNED.value if row is None else row.install
    if row is None:
        row = FleetSetting(hardware_model=hardware_model)
        db.add(row)
    row.install, row.changed_by, row.changed_at = chosen.value, actor.name, now
    db.flush()
    append(
        db,
        audit_event(
            Action.FLEET_INSTALL,
            actor=actor,
            object=f"fleet:{hardware_model}",
            outcome="success",
            time=now,
            detail={"from": before, "to": chosen.value},
        ),
    )
    return row


def audit_install_refusal(
    db: Session, hardware_model: str, *, reason: str, actor: Actor, now: datetime
) -> None:
    append(
        db,
        audit_event(
            Action.FLEET_INSTALL,
            actor=actor,
            object=f"fleet:{hardware_model[:64]}",
            outcome="refused",
            time=now,
            detail={"reason": reason[:200]},
        ),
    )


def _criteria(kind: Kind, criteria: Mapping[str, str] | None) -> dict[str, str] | None:
    if kind is Kind.STATIC:
        if criteria:
            raise BadRequestError("a static group has members, not criteria")
        return None
    if not criteria:
        raise BadRequestError(
            f"a dynamic group needs criteria: one or more of {', '.join(CRITERIA)}"
        )
    unknown = sorted(set(criteria) - set(CRITERIA))
    if unknown:
        raise BadRequestError(f"unknown criteria {', '.join(unknown)}: use {', '.join(CRITERIA)}")
    if not all(isinstance(value, str) and 0 < len(value) <= 64 for value in criteria.values()):
        raise BadRequestError("each criterion's value is a text of 1 to 64 characters")
    return dict(criteria)


def _require_static(group: DeviceGroup) -> None:
    if group.kind != Kind.STATIC:
        raise ConflictError(
            f"{group.name} is a dynamic group: its devices are those matching its criteria"
        )


def _static_ids(db: Session, group: DeviceGroup) -> list[str]:
    return list(db.scalars(select(GroupMember.device_id).where(GroupMember.group_id == group.id)))


def _audit(db: Session, name: str, change: str, actor: Actor, now: datetime, **detail: Any) -> None:
    append(
        db,
        audit_event(
            Action.GROUP_CHANGE,
            actor=actor,
            object=f"group:{name}",
            outcome="success",
            time=now,
            detail={"change": change, **detail},
        ),
    )
