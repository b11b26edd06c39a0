"""The device poll: what a registered device is told at each check-in (issue 11).

``GET /api/v1/device/poll`` answers ``directive(...)``: the contract that
``client.directive`` reads. Rules:

- P1 ``mode`` is ``frozen`` while the failsafe freeze is on, else
  ``normal``. Frozen, no assignment is given (nothing progresses, D7).
- P2 ``install`` is the fleet's setting for the device's hardware model
  (``groups.install_of``: ``assigned`` unless set to ``newest``).
- P3 ``assignment`` is the target of the newest serving deployment (D8)
  whose started waves hold the device, after that deployment was evaluated
  (D5, D6): never a target the published metadata does not sign now with
  that SHA-256 and for the device's model (R56, R57). A device in none gets
  null. The device still checks everything itself (TUF, its policy).
- P4 ``window`` is ``windows.earliest`` over the device's groups' windows
  (MW3): the one open now, else the next; null when its groups have none.
- P5 Each poll that hands an assignment records the check-in time; the
  first one records the assignment's delivery and is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.deployments import groups, rollout, windows
from update_server.deployments.models import Deployment, DeploymentDevice
from update_server.devices.models import Device


def directive(
    db: Session,
    device: Device,
    *,
    now: datetime,
    signed: rollout.SignedTargets,
    frozen: bool,
    source: str,
) -> dict[str, Any]:
    """P1-P5: the poll's answer for ``device``."""
    window = windows.earliest(groups.windows_of(db, device), now)
    return {
        "mode": "frozen" if frozen else "normal",
        "install": groups.install_of(db, device.hardware_model).value,
        "assignment": None if frozen else _assignment(db, device, now, signed, source),
        "window": None
        if window is None
        else {"opens": _utc(window.opens), "closes": _utc(window.closes)},
    }


def _assignment(
    db: Session, device: Device, now: datetime, signed: rollout.SignedTargets, source: str
) -> dict[str, Any] | None:
    """P3, P5."""
    found = db.execute(
        select(DeploymentDevice, Deployment)
        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
        .where(DeploymentDevice.device_id == device.id)
        .where(Deployment.state.in_(list(rollout.LIVE)))
        .order_by(Deployment.id.desc())
    ).all()
    for _, deployment in found:
        rollout.evaluate(db, deployment, now=now, signed=signed, frozen=False)
    for row, deployment in found:
        if deployment.state in rollout.SERVING and row.wave < deployment.waves_started:
            return _assigned(
                db, device, row=row, deployment=deployment, now=now, signed=signed, source=source
            )
    return None


def _assigned(
    db: Session,
    device: Device,
    *,
    row: DeploymentDevice,
    deployment: Deployment,
    now: datetime,
    signed: rollout.SignedTargets,
    source: str,
) -> dict[str, Any] | None:
    release = signed.release(deployment.target_path)
    if release is None or release.sha256 != deployment.sha256:
        return None  # P3: evaluate stopped it already; never assigned, whatever happens
    if device.hardware_model not in release.info.hardware_models:
        return None
    row.checked_in_at = now
    if row.assigned_at is None:
        row.assigned_at = now
        append(
            db,
            audit_event(
                Action.DEPLOYMENT_ASSIGN,
                actor=Actor(f"device:{device.id}"[:64], "device", source),
                object=f"deployment:{deployment.id}",
                outcome="success",
                time=now,
                detail={
                    "device": device.id,
                    "target": deployment.target_path,
                    "wave": row.wave + 1,
                },
            ),
        )
    return {
        "deployment": deployment.id,
        "target_path": deployment.target_path,
        "sha256": deployment.sha256,
        "version": deployment.version,
    }


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
