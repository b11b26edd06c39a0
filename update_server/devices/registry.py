"""The registry: a device's state changes and what the inventory shows (R38, R62).

Rules:

- G1 A pending device is accepted or rejected; a rejected one may still be
  accepted (a mistake undone); an accepted one is never "rejected" (it is
  decommissioned). Any other change is 409 and changes nothing.
- G2 Decommissioning is final and takes effect at once: the next signed
  request of the device is refused (D6), its nonces no longer matter, and
  its row and every record about it stay (R62, R27).
- G3 Each change is audited with who made it; a refused change too (by the
  caller, committed on its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.devices.models import Device, DeviceState
from update_server.errors import ConflictError, NotFoundError
from update_server.models import User

#: G1: the states each change may start from.
CHANGES: Mapping[str, tuple[DeviceState, frozenset[DeviceState]]] = {
    "accept": (DeviceState.ACCEPTED, frozenset({DeviceState.PENDING, DeviceState.REJECTED})),
    "reject": (DeviceState.REJECTED, frozenset({DeviceState.PENDING})),
    "decommission": (
        DeviceState.DECOMMISSIONED,
        frozenset({DeviceState.PENDING, DeviceState.ACCEPTED, DeviceState.REJECTED}),
    ),
}


def get(db: Session, device_id: str, *, visible: bool = True) -> Device:
    """The device ``device_id``; 404 if there is none (or ``visible`` is False: out of scope)."""
    device = db.get(Device, device_id) if visible else None
    if device is None:
        raise NotFoundError(f"no device {device_id}")
    return device


def change(db: Session, device: Device, change: str, *, now: datetime, actor: Actor) -> Device:
    """Apply ``change`` (accept, reject, decommission) to ``device`` (G1-G3)."""
    target, sources = CHANGES[change]
    if DeviceState(device.state) not in sources:
        raise ConflictError(
            f"device {device.id} is {device.state}: it cannot be {_past(change)}"
            + (" (decommissioning is final)" if device.state == DeviceState.DECOMMISSIONED else "")
        )
    before = device.state
    device.state = target.value
    device.state_changed_by = actor.name
    device.state_changed_at = now
    db.flush()
    append(
        db,
        audit_event(
            Action.DEVICE_CHANGE,
            actor=actor,
            object=f"device:{device.id}",
            outcome="success",
            time=now,
            detail={"change": change, "from": before, "to": target.value},
        ),
    )
    return device


def audit_refusal(
    db: Session, device_id: str, change: str, *, reason: str, now: datetime, actor: Actor
) -> None:
    """G3: a refused change, in its own transaction (the caller commits)."""
    append(
        db,
        audit_event(
            Action.DEVICE_CHANGE,
            actor=actor,
            object=f"device:{device_id}"[:512],
            outcome="refused",
            time=now,
            detail={"change": change, "reason": reason[:200]},
        ),
    )


def all_devices(db: Session) -> list[Device]:
    return list(db.scalars(select(Device).order_by(Device.id)))


def summary(device: Device) -> dict[str, Any]:
    """What the inventory shows of ``device`` (API and CLI alike)."""
    return {
        "device_id": device.id,
        "state": device.state,
        "hardware_model": device.hardware_model,
        "site": device.site,
        "key_id": device.key_id,
        "registered_at": _iso(device.registered_at),
        "running_version": device.running_version,
        "slot": device.slot,
        "security_floor": device.security_floor,
        "mode": device.mode,
        "last_result": device.last_result,
        "last_seen_at": _iso(device.last_seen_at),
        "last_report_at": _iso(device.last_report_at),
        "metadata_expires": device.metadata_expires,
        "log_head": device.log_head_seq,
        "log_anchored_from": device.log_anchored_from,
        "log_alert": device.log_alert,
        "log_alert_at": _iso(device.log_alert_at),
        "state_changed_by": device.state_changed_by,
        "state_changed_at": _iso(device.state_changed_at),
    }


def actor_of(user: User, source: str) -> Actor:
    return Actor(name=user.name, role=user.role, source=source)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _past(change: str) -> str:
    return {"accept": "accepted", "reject": "rejected", "decommission": "decommissioned"}[change]
