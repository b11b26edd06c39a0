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
- P6 (R56, R57) On an ``assigned`` fleet, a device that no deployment
  assigns anything now and that runs a withdrawn release
  (``withdrawn`` WD3) is assigned its successor (WD4) with
  ``"deployment": null``: the server's own offer to leave a withdrawn
  release, which needs no deployment (leaving it is not optional). The
  first poll that hands a successor to a device is audited
  (``deployment.assign``, reason ``withdrawn``), like P5. On a ``newest``
  fleet the device takes the newest eligible release itself, the successor
  among them. No successor signed: null, and the device stays flagged.
- P7 A deployment's target older than the version the device reports it
  runs is not handed out (null): the device got past it another way (a
  later deployment since aborted, a technician's authorization), would
  refuse it as a downgrade at every poll, and stays counted where it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from repo_metadata.semver import SemVer
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.authorizations.issuing import Release
from update_server.deployments import groups, rollout, signed_releases, windows, withdrawn
from update_server.deployments.groups import Install
from update_server.deployments.models import Deployment, DeploymentDevice, WithdrawalOffer
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
    """P1-P6: the poll's answer for ``device``."""
    window = windows.earliest(groups.windows_of(db, device), now)
    install = groups.install_of(db, device.hardware_model)
    assignment = None if frozen else _assignment(db, device, now, signed, source)
    if assignment is None and not frozen and install is Install.ASSIGNED:
        assignment = _successor(db, device, now, signed, source)
    return {
        "mode": "frozen" if frozen else "normal",
        "install": install.value,
        "assignment": assignment,
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
    if _behind(deployment.version, device.running_version):
        return None  # P7: the device is past it (another deployment, a technician)
    row.checked_in_at = now
    if row.assigned_at is None:
        row.assigned_at = now
        _audit_assign(
            db, device, f"deployment:{deployment.id}", now=now, source=source,
            detail={"target": deployment.target_path, "wave": row.wave + 1},
        )  # fmt: skip
    return {
        "deployment": deployment.id,
        "target_path": deployment.target_path,
        "sha256": deployment.sha256,
        "version": deployment.version,
    }


def _successor(
    db: Session, device: Device, now: datetime, signed: rollout.SignedTargets, source: str
) -> dict[str, Any] | None:
    """P6: the successor of the withdrawn release ``device`` runs, if it runs one."""
    releases = signed_releases.read(signed.repository)
    model, running = device.hardware_model, device.running_version
    if not withdrawn.running_withdrawn(
        releases.now,
        hardware_model=model,
        running_version=running,
        once_signed=releases.once_signed(model),
    ):
        return None
    release = withdrawn.successor(
        releases.now,
        hardware_model=model,
        running_version=running,
        security_floor=device.security_floor,
    )
    if release is None or running is None:
        return None
    _note_offer(db, device, running, release, now=now, source=source)
    return {
        "deployment": None,
        "target_path": release.path,
        "sha256": release.sha256,
        "version": release.info.version,
    }


def _note_offer(
    db: Session, device: Device, running: str, release: Release, *, now: datetime, source: str
) -> None:
    """P6: record the check-in; the first offer of this successor is audited."""
    offer = db.get(WithdrawalOffer, device.id)
    if offer is not None and (offer.target_path, offer.sha256) == (release.path, release.sha256):
        offer.checked_in_at = now
        return
    if offer is None:
        offer = WithdrawalOffer(device_id=device.id)
        db.add(offer)
    offer.running_version, offer.offered_at, offer.checked_in_at = running, now, now
    offer.target_path, offer.sha256, offer.version = (
        release.path,
        release.sha256,
        release.info.version,
    )
    _audit_assign(
        db, device, f"device:{device.id}", now=now, source=source,
        detail={
            "target": release.path,
            "version": release.info.version,
            "running": running,
            "reason": rollout.WITHDRAWN,
        },
    )  # fmt: skip


def _audit_assign(
    db: Session,
    device: Device,
    object: str,  # noqa: A002 - the audit field's name
    *,
    now: datetime,
    source: str,
    detail: dict[str, Any],
) -> None:
    """The first hand-out of a target to ``device``, audited as the device's own act."""
    append(
        db,
        audit_event(
            Action.DEPLOYMENT_ASSIGN,
            actor=Actor(f"device:{device.id}"[:64], "device", source),
            object=object,
            outcome="success",
            time=now,
            detail={"device": device.id, **detail},
        ),
    )


def _behind(assigned: str, running: str | None) -> bool:
    """P7: ``assigned`` is older than the version the device reports it runs."""
    try:
        return running is not None and SemVer.parse(assigned) < SemVer.parse(running)
    except ValueError:  # a version the device reported that is not one: let it decide
        return False


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
