"""Deployments: a published target assigned to devices in waves, under four eyes (R9).

Modelled on hawkBit's rollouts and Mender's deployments; every decision is
still checked by the device against the offline signatures (``client.policy``).
Rules:

- D1 A deployment names a target the published metadata signs; its SHA-256
  and version are read from that metadata, never taken from the caller.
  Its devices are fixed when it is made: the accepted devices of its groups
  and fleets (every device of a hardware model) whose model the target is
  signed for, leaving out those that report running its version or a newer
  one. None left is 409. Waves are planned by ``waves.plan`` (W1) over the
  devices in a spread order (SHA-256 of target and device id: sites and id
  ranges mix, and the order is reproducible). Both thresholds are required.
- D2 A device is in at most one open deployment (awaiting approval,
  running, paused): a deployment naming devices of another is 409, naming
  them; abort the other first.
- D3 (R9, four eyes) A deployment waits for the approval of a release
  manager other than its creator, with a fresh code; the creator's own is
  refused (403), audited, and changes nothing.
- D4 Running is paused and resumed; anything not ended (awaiting approval,
  running, paused, completed) is aborted, with a fresh code. Stopped and
  aborted are final. A change from any other state is 409, audited.
- D5 ``evaluate`` applies ``waves.next_step`` each time the server looks at
  a deployment: at each report of one of its devices, each API read, each
  poll. A wave started, a stop and the completion are audited as the
  server's own actions.
- D6 (R56, R57) A deployment whose target the published metadata no longer
  signs with its SHA-256 (``fwsign revoke-release`` withdrew it) is stopped
  with reason ``withdrawn``, checked before anything else, whatever its
  state (a completed one too: its devices are still assigned its target).
- D7 Frozen (the failsafe freeze): no wave starts and nothing completes
  (W5); stops still happen.
- D8 Serving: the devices of the started waves of a running or completed
  deployment are assigned its target (``poll``); a paused, stopped or
  aborted one assigns nothing.
- D9 Concurrent changes apply one after the other, the later seeing the
  earlier (PostgreSQL; SQLite's writers are serialised by ``BEGIN
  IMMEDIATE``). Every change of a deployment (approve, pause, resume,
  abort, and ``evaluate``'s wave, stop and completion) re-reads its row
  ``FOR UPDATE`` before deciding, so two at once never both apply from
  the state they read before the other committed, and each audit entry
  states the state it really started from. ``evaluate`` decides first
  without a lock, and takes it only when something is to change (a poll
  that changes nothing locks nothing). A creation checks D2 holding the
  audit log's lock, which every audited change holds until it commits:
  two creations naming the same devices at once are checked one after
  the other, and the second sees the first. The lock order is always the
  audit log's lock, then the deployment's row: no deadlock between them.
- D10 Frozen: a fleet is not set to take the newest release
  (``refuse_newest_if_frozen``, 423): its devices would move on with no
  deployment, which the freeze stops (freeze F3). Back to ``assigned``
  stays allowed: it only narrows what devices take.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tuf.api.metadata import Timestamp

from repo_metadata.semver import SemVer
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.audit.store import lock_log
from update_server.authorizations.issuing import Release, published_release
from update_server.deployments import groups, status, waves
from update_server.deployments.models import Deployment, DeploymentDevice
from update_server.deployments.waves import Thresholds
from update_server.devices.enrolment import check_name
from update_server.devices.models import Device, DeviceState
from update_server.errors import BadRequestError, ConflictError, ForbiddenError, NotFoundError
from update_server.freeze.state import refuse_if_frozen
from update_server.publication.publish import system_actor
from update_server.publication.repository import OnlineRepository


class State(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"
    ABORTED = "aborted"


#: D2: a device is in at most one of these at a time.
OPEN = frozenset({State.AWAITING_APPROVAL, State.RUNNING, State.PAUSED})
#: D6: watched for a withdrawn target.
LIVE = OPEN | {State.COMPLETED}
#: D8: their started waves' devices are assigned the target.
SERVING = frozenset({State.RUNNING, State.COMPLETED})
#: D4: each person's change, the states it starts from, the state it leads to.
CHANGES: Mapping[str, tuple[frozenset[State], State, Action]] = {
    "pause": (frozenset({State.RUNNING}), State.PAUSED, Action.DEPLOYMENT_PAUSE),
    "resume": (frozenset({State.PAUSED}), State.RUNNING, Action.DEPLOYMENT_RESUME),
    "abort": (LIVE, State.ABORTED, Action.DEPLOYMENT_ABORT),
}
WITHDRAWN = "withdrawn"
NO_LONGER_SIGNED = "the published metadata no longer signs the target"


class SignedTargets:
    """D1, D6: targets as the published metadata signs them now.

    ST1 What a target path reads as (``published_release``) is kept per
    process for each published ``timestamp.json``, keyed on its exact
    bytes: each request reads that one small file (once, through its own
    ``repository``), and reads the snapshot and targets roles only on a
    timestamp not seen before. A publication or a withdrawal writes a new
    timestamp, so the next request sees it; the published files a timestamp
    names are never rewritten (consistent snapshots), so the same bytes mean
    the same targets.
    """

    def __init__(self, repository: OnlineRepository) -> None:
        self.repository = repository
        self._read: dict[str, Release | None] | None = None

    def release(self, path: str) -> Release | None:
        read = self._releases()
        if path not in read:
            try:
                read[path] = published_release(self.repository, path)
            except NotFoundError:
                read[path] = None
        return read[path]

    def signs(self, deployment: Deployment) -> bool:
        release = self.release(deployment.target_path)
        return release is not None and release.sha256 == deployment.sha256

    def _releases(self) -> dict[str, Release | None]:
        if self._read is None:
            self._read = _by_timestamp.releases(self.repository)
        return self._read


class _ByTimestamp:
    """ST1: per repository directory, the timestamp last read and its targets read so far."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[Path, tuple[bytes, dict[str, Release | None]]] = {}

    def releases(self, repository: OnlineRepository) -> dict[str, Release | None]:
        timestamp = repository.published_bytes(Timestamp.type)
        if timestamp is None:
            return {}  # nothing published: nothing kept
        with self._lock:
            kept = self._kept.get(repository.directory)
            if kept is None or kept[0] != timestamp:
                kept = (timestamp, {})
                self._kept[repository.directory] = kept
            return kept[1]


_by_timestamp = _ByTimestamp()


@dataclass(frozen=True)
class Plan:
    """What a deployment asks for (D1), checked before anything is written."""

    groups: tuple[str, ...]
    fleets: tuple[str, ...]
    waves: tuple[Mapping[str, int], ...]
    thresholds: Thresholds
    #: Filled by ``create``: how many devices each reason left out.
    left_out: dict[str, int] = field(default_factory=dict)


def plan_of(
    *,
    group_names: Sequence[str],
    fleets: Sequence[str],
    wave_list: Sequence[Mapping[str, int]],
    success_percent: int,
    failure_percent: int,
) -> Plan:
    """D1: a 400 naming what is wrong with the request."""
    if not group_names and not fleets:
        raise BadRequestError("name at least one group or fleet (hardware model) to deploy to")
    for fleet in fleets:
        check_name("hardware model", fleet)
    try:
        waves.check_waves(wave_list)
        thresholds = Thresholds(success_percent, failure_percent)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None
    return Plan(
        tuple(dict.fromkeys(group_names)),
        tuple(dict.fromkeys(fleets)),
        tuple(dict(wave) for wave in wave_list),
        thresholds,
    )


def create(db: Session, *, release: Release, plan: Plan, actor: Actor, now: datetime) -> Deployment:
    """D1, D2: the deployment, awaiting approval, with its devices in waves; audited."""
    lock_log(db)  # D9: D2 is checked against every creation committed before this one
    chosen = _devices(db, release, plan)
    if not chosen:
        raise ConflictError(
            f"no device to deploy {release.path} to: the groups and fleets named hold no"
            f" accepted device of {', '.join(release.info.hardware_models)} below"
            f" {release.info.version} ({_left_out(plan)})"
        )
    _refuse_busy(db, [device.id for device in chosen])
    order = sorted(chosen, key=lambda device: _spread(release.path, device.id))
    sizes = waves.plan(len(order), plan.waves)
    deployment = Deployment(
        target_path=release.path,
        sha256=release.sha256,
        version=release.info.version,
        state=State.AWAITING_APPROVAL.value,
        groups=list(plan.groups),
        fleets=list(plan.fleets),
        waves=[dict(wave) for wave in plan.waves],
        wave_sizes=sizes,
        success_percent=plan.thresholds.success_percent,
        failure_percent=plan.thresholds.failure_percent,
        waves_started=0,
        created_by=actor.name,
        created_at=now,
    )
    db.add(deployment)
    db.flush()
    numbers = [number for number, size in enumerate(sizes) for _ in range(size)]
    for device, wave in zip(order, numbers, strict=True):
        db.add(
            DeploymentDevice(
                deployment_id=deployment.id,
                device_id=device.id,
                wave=wave,
                status=status.Status.ASSIGNED.value,
            )
        )
    db.flush()
    _audit(
        db,
        Action.DEPLOYMENT_CREATE,
        deployment,
        actor,
        now,
        target=release.path,
        sha256=release.sha256,
        version=release.info.version,
        groups=list(plan.groups),
        fleets=list(plan.fleets),
        waves=sizes,
        success_percent=plan.thresholds.success_percent,
        failure_percent=plan.thresholds.failure_percent,
        left_out=plan.left_out,
    )
    return deployment


def refuse_newest_if_frozen(db: Session, install: object) -> None:
    """D10: ``FrozenError`` (423) for a fleet set to ``newest`` while frozen."""
    if install == groups.Install.NEWEST:
        refuse_if_frozen(db)


def get(db: Session, deployment_id: int) -> Deployment:
    deployment = db.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFoundError(f"no deployment {deployment_id}")
    return deployment


def listed(db: Session, *, limit: int = 500) -> list[Deployment]:
    """Newest first."""
    return list(db.scalars(select(Deployment).order_by(Deployment.id.desc()).limit(limit)))


def approve(
    db: Session,
    deployment: Deployment,
    *,
    actor: Actor,
    now: datetime,
    signed: SignedTargets,
    frozen: bool,
) -> None:
    """D3: approved by another release manager; its first wave starts (unless frozen)."""
    locked(db, deployment)
    if deployment.state != State.AWAITING_APPROVAL:
        raise ConflictError(f"deployment {deployment.id} is {deployment.state}: nothing to approve")
    if same_person(actor.name, deployment.created_by):
        raise ForbiddenError(
            f"you created deployment {deployment.id}: another release manager approves it"
            " (four eyes, R9)"
        )
    deployment.state = State.RUNNING.value
    deployment.approved_by, deployment.approved_at = actor.name, now
    _changed(deployment, actor, now)
    db.flush()
    _audit(db, Action.DEPLOYMENT_APPROVE, deployment, actor, now, created_by=deployment.created_by)
    evaluate(db, deployment, now=now, signed=signed, frozen=frozen)


#: D3: the prefix of an operator's name on the server's host (``cli_users``).
CLI_PREFIX = "cli:"


def same_person(one: str, other: str) -> bool:
    """D3: whether two audited names are one person: ``cli:mona`` on the host is ``mona``.

    The host's login and the server's account are taken to be one name: a
    person who created a deployment through the API cannot approve it from
    the server's shell under their login, nor the other way round.
    """
    return one.removeprefix(CLI_PREFIX) == other.removeprefix(CLI_PREFIX)


def change(
    db: Session,
    deployment: Deployment,
    change: str,
    *,
    actor: Actor,
    now: datetime,
    signed: SignedTargets,
    frozen: bool,
) -> None:
    """D4: pause, resume or abort."""
    sources, target, action = CHANGES[change]
    locked(db, deployment)
    if State(deployment.state) not in sources:
        final = " (it has ended)" if deployment.state in {State.STOPPED, State.ABORTED} else ""
        raise ConflictError(
            f"deployment {deployment.id} is {deployment.state}: it cannot be {change}d{final}"
        )
    before = deployment.state
    deployment.state = target.value
    if target is State.ABORTED:
        deployment.reason = f"aborted by {actor.name}"
    _changed(deployment, actor, now)
    db.flush()
    _audit(db, action, deployment, actor, now, before=before, after=target.value)
    if target is State.RUNNING:
        evaluate(db, deployment, now=now, signed=signed, frozen=frozen)


def audit_refusal(
    db: Session,
    action: Action,
    deployment_id: int | str,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> None:
    """D3, D4: a refused request, in the caller's transaction (the caller commits)."""
    append(
        db,
        audit_event(
            action,
            actor=actor,
            object=f"deployment:{str(deployment_id)[:64]}",
            outcome="refused",
            time=now,
            detail={"reason": reason[:300]},
        ),
    )


def evaluate(
    db: Session, deployment: Deployment, *, now: datetime, signed: SignedTargets, frozen: bool
) -> None:
    """D5-D7: stop a withdrawn target, then apply the wave rules until nothing changes.

    D9: decided without a lock; a change is decided again, and made, under it.
    """
    if _pending(db, deployment, signed=signed, frozen=frozen) is None:
        return
    locked(db, deployment)
    for _ in range(len(deployment.wave_sizes) + 1):
        pending = _pending(db, deployment, signed=signed, frozen=frozen)
        if pending is None:
            return
        if isinstance(pending, str):  # WITHDRAWN
            _stop(db, deployment, now, WITHDRAWN, NO_LONGER_SIGNED)
            return
        if pending.step is waves.Step.STOP:
            _stop(db, deployment, now, "failures", pending.reason)
            return
        if pending.step is waves.Step.COMPLETE:
            deployment.state = State.COMPLETED.value
            _changed(deployment, system_actor(), now)
            _audit(
                db, Action.DEPLOYMENT_COMPLETE, deployment, system_actor(), now, why=pending.reason
            )
            return
        deployment.waves_started += 1
        db.flush()
        _audit(
            db,
            Action.DEPLOYMENT_WAVE,
            deployment,
            system_actor(),
            now,
            wave=deployment.waves_started,
            devices=deployment.wave_sizes[deployment.waves_started - 1],
            why=pending.reason,
        )


def locked(db: Session, deployment: Deployment) -> Deployment:
    """D9: ``deployment`` read again under its row lock, taken after the audit log's."""
    lock_log(db)
    query = (
        select(Deployment)
        .where(Deployment.id == deployment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    fresh: Deployment = db.scalars(query).one()  # the same object, its columns read anew
    return fresh


def _pending(
    db: Session, deployment: Deployment, *, signed: SignedTargets, frozen: bool
) -> waves.Decision | str | None:
    """D5-D7: what is to change now: ``WITHDRAWN``, a wave step, or None (nothing)."""
    if deployment.state not in LIVE:
        return None
    if not signed.signs(deployment):
        return WITHDRAWN
    if deployment.state not in {State.RUNNING, State.PAUSED}:
        return None
    decision = waves.next_step(
        wave_counts(db, deployment)[: deployment.waves_started],
        planned=len(deployment.wave_sizes),
        thresholds=Thresholds(deployment.success_percent, deployment.failure_percent),
        progressing=deployment.state == State.RUNNING and not frozen,
    )
    return None if decision.step is waves.Step.WAIT else decision


def evaluate_live(db: Session, *, now: datetime, signed: SignedTargets, frozen: bool) -> None:
    """D5, D6 for every deployment not ended (an API read)."""
    for deployment in db.scalars(select(Deployment).where(Deployment.state.in_(list(LIVE)))):
        evaluate(db, deployment, now=now, signed=signed, frozen=frozen)


def note_report(
    db: Session,
    device: Device,
    entries: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    signed: SignedTargets,
    frozen: bool,
) -> None:
    """S1-S3 for each live deployment of ``device``, then D5 for those that changed."""
    entries = list(entries)
    rows = db.execute(
        select(DeploymentDevice, Deployment)
        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
        .where(DeploymentDevice.device_id == device.id)
        .where(Deployment.state.in_(list(LIVE)))
    ).all()
    for row, deployment in rows:
        before = status.Verdict(status.Status(row.status), row.event, row.reason)
        after = status.fold(
            before,
            entries,
            target_path=deployment.target_path,
            version=deployment.version,
            running_version=device.running_version,
        )
        if after != before:
            row.status, row.event, row.reason = after.status.value, after.event, after.reason
            row.status_at = now
            db.flush()
            evaluate(db, deployment, now=now, signed=signed, frozen=frozen)


def wave_counts(db: Session, deployment: Deployment) -> list[waves.WaveCounts]:
    """Each planned wave's size, devices that run the target and those that failed it (S4)."""
    tally: dict[int, dict[str, int]] = {}
    found = db.execute(
        select(DeploymentDevice.wave, DeploymentDevice.status, func.count())
        .where(DeploymentDevice.deployment_id == deployment.id)
        .group_by(DeploymentDevice.wave, DeploymentDevice.status)
    )
    for wave, state, count in found:
        tally.setdefault(wave, {})[state] = count
    return [
        waves.WaveCounts(
            size=size,
            installed=sum(tally.get(number, {}).get(s.value, 0) for s in status.SUCCEEDED),
            failed=sum(tally.get(number, {}).get(s.value, 0) for s in status.UNSUCCESSFUL),
        )
        for number, size in enumerate(deployment.wave_sizes)
    ]


def devices_of(db: Session, deployment: Deployment) -> list[DeploymentDevice]:
    return list(
        db.scalars(
            select(DeploymentDevice)
            .where(DeploymentDevice.deployment_id == deployment.id)
            .order_by(DeploymentDevice.wave, DeploymentDevice.device_id)
        )
    )


def summary(db: Session, deployment: Deployment) -> dict[str, Any]:
    counts = wave_counts(db, deployment)
    statuses: dict[str, int] = dict.fromkeys((s.value for s in status.Status), 0)
    for state, count in db.execute(
        select(DeploymentDevice.status, func.count())
        .where(DeploymentDevice.deployment_id == deployment.id)
        .group_by(DeploymentDevice.status)
    ):
        statuses[state] = count
    return {
        "id": deployment.id,
        "target_path": deployment.target_path,
        "sha256": deployment.sha256,
        "version": deployment.version,
        "state": deployment.state,
        "reason": deployment.reason,
        "groups": deployment.groups,
        "fleets": deployment.fleets,
        "waves": [
            {
                "wave": number + 1,
                "devices": wave.size,
                "installed": wave.installed,
                "failed": wave.failed,
                "started": number < deployment.waves_started,
            }
            for number, wave in enumerate(counts)
        ],
        "success_percent": deployment.success_percent,
        "failure_percent": deployment.failure_percent,
        "statuses": statuses,
        "created_by": deployment.created_by,
        "created_at": _iso(deployment.created_at),
        "approved_by": deployment.approved_by,
        "approved_at": _iso(deployment.approved_at),
        "state_changed_by": deployment.state_changed_by,
        "state_changed_at": _iso(deployment.state_changed_at),
    }


def device_summary(row: DeploymentDevice) -> dict[str, Any]:
    return {
        "device_id": row.device_id,
        "wave": row.wave + 1,
        "status": row.status,
        "event": row.event,
        "reason": row.reason,
        "status_at": _iso(row.status_at),
        "assigned_at": _iso(row.assigned_at),
        "checked_in_at": _iso(row.checked_in_at),
    }


def _devices(db: Session, release: Release, plan: Plan) -> list[Device]:
    found: dict[str, Device] = {}
    for name in plan.groups:
        for device in groups.members(db, groups.get(db, name)):
            found[device.id] = device
    if plan.fleets:
        query = select(Device).where(Device.hardware_model.in_(list(plan.fleets)))
        found.update((device.id, device) for device in db.scalars(query))
    version = release.info.semver
    chosen = []
    for device in found.values():
        reason = _left_out_because(device, release, version)
        if reason is None:
            chosen.append(device)
        else:
            plan.left_out[reason] = plan.left_out.get(reason, 0) + 1
    return chosen


def _left_out_because(device: Device, release: Release, version: SemVer) -> str | None:
    if device.state != DeviceState.ACCEPTED:
        return "not accepted"
    if device.hardware_model not in release.info.hardware_models:
        return "other hardware model"
    running = SemVer.reported(device.running_version)
    if running is not None and running >= version:
        return "running it or newer"
    return None


def _left_out(plan: Plan) -> str:
    if not plan.left_out:
        return "they hold no device"
    return "left out: " + ", ".join(f"{n} {why}" for why, n in sorted(plan.left_out.items()))


def _refuse_busy(db: Session, device_ids: list[str]) -> None:
    """D2."""
    busy = db.execute(
        select(DeploymentDevice.device_id, Deployment.id)
        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
        .where(Deployment.state.in_(list(OPEN)))
        .where(DeploymentDevice.device_id.in_(device_ids))
        .order_by(DeploymentDevice.device_id)
        .limit(10)
    ).all()
    if busy:
        named = ", ".join(f"{device} (deployment {number})" for device, number in busy)
        raise ConflictError(
            f"devices are in another open deployment: {named}; abort that one first, or leave"
            " them out"
        )


def _stop(db: Session, deployment: Deployment, now: datetime, why: str, detail: str) -> None:
    before = deployment.state
    deployment.state = State.STOPPED.value
    deployment.reason = f"{why}: {detail}"[:512]
    _changed(deployment, system_actor(), now)
    db.flush()
    _audit(
        db,
        Action.DEPLOYMENT_STOPPED,
        deployment,
        system_actor(),
        now,
        reason=why,
        detail=detail,
        before=before,
    )


def _changed(deployment: Deployment, actor: Actor, now: datetime) -> None:
    deployment.state_changed_by, deployment.state_changed_at = actor.name, now


def _audit(
    db: Session, action: Action, deployment: Deployment, actor: Actor, now: datetime, **detail: Any
) -> None:
    append(
        db,
        audit_event(
            action,
            actor=actor,
            object=f"deployment:{deployment.id}",
            outcome="success",
            time=now,
            detail={"target": deployment.target_path, "state": deployment.state, **detail},
        ),
    )


def _spread(path: str, device_id: str) -> str:
    return hashlib.sha256(f"{path}\n{device_id}".encode()).hexdigest()


def _iso(moment: datetime | None) -> str | None:
    """SQLite gives timezone-aware columns back naive: they are UTC."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
