"""What the boot loader decides at each (simulated) reboot (R29, R33, R39, R52).

``boot`` stands for one reboot. Its rules, each answering one threat:

- A pending slot is tried only after its tries counter is decremented on
  disk, so a crash or hang during the trial counts as a failed try and the
  device cannot loop on a firmware that kills it.
- A pending slot that does not verify is never started; one whose tries run
  out falls back to the slot that ran before, is marked failed, and its
  firmware is remembered as known bad: it is never booted or installed again
  (no reinstall loop).
- Committing raises the security floor to the firmware's security version
  (R25); the floor is never lowered, and every boot re-raises it from the
  running firmware, which heals a power cut between the two writes.
- A slot is *committed* once its firmware passed its trial boot here: the
  commit marks its record (``SlotRecord.committed``) before the boot
  environment switches to it. A record older than the mark (its stored JSON
  has no ``committed`` key) counts as committed only while a readable boot
  environment in normal mode runs it (its next boot writes the mark); a
  record that says ``committed: false`` never does, whatever the boot
  environment says: an active slot holding one is not run for good (the
  other slot runs as below, as if it did not verify). No other path commits
  a slot (R29).
- R52, emergencies first: a pending slot's trial boot starts only when the
  clinical-use guard (``client.readiness``) says the device is idle. In use,
  the active slot boots as if nothing were pending, the pending slot and its
  tries are kept for the next boot (no try is spent), and
  ``deferred_in_use`` is logged; a failsafe device's pending recovery waits
  the same way unless a person overrides the guard for it
  (``--ignore-ready-check``), which is logged. A verified, never committed
  slot that runs on trial because the active slot does not verify (below)
  is not deferred: the firmware in use is the one that failed, and running
  a verified one is safer than running it or entering failsafe mode.
- Without a pending slot, the active slot is re-hashed against its signed
  evidence; if it fails, the other slot runs if it verifies and is
  committed; one that verifies but was never committed here goes on trial
  (one try) instead; if none does, the device enters failsafe mode: it keeps
  what runs and refuses every change but a signed recovery (R24, R33), whose
  successful trial leaves it: ``failsafe_left`` is logged only once its
  commit mark, the boot environment in normal mode and the floor naming it
  installed are durable (the log proves it to a rebuild).
- A record that cannot be read (damaged storage) is rebuilt, logged, and the
  device never stops (R33), failing closed:

  - the security floor restarts at the highest security version among the
    committed slots that verify (never from a firmware that has not passed
    its trial here, R25); the boot then raises it to what runs;
  - the boot environment runs the committed slot that verifies (the one the
    floor names as installed, else the most secure); a slot never committed
    is not run (it stays sealed, and the next update resumes it), so a
    rebuild never commits a firmware; with no committed slot that verifies,
    the device enters failsafe mode;
  - its mode is failsafe unless the event log proves otherwise (R24, R34:
    only a signed recovery leaves failsafe): the chain verifies through
    every retained file, and either its last failsafe entry
    (``failsafe_entered``, ``failsafe_refused``, a boot in failsafe mode,
    ``failsafe_left``) is ``failsafe_left``, or it holds none and starts
    at provisioning or at a rotation it records;
  - the known-bad list restarts from the slots marked failed.
- First of all, the temporary files of writes a power cut interrupted are
  removed (``StateDir.leftovers``), never a partial download that a resume
  needs; the boot holds the state directory's lock, so no running writer's
  file is taken for one.

Every decision is logged before it takes effect, but ``failsafe_left``,
logged once it has (see above).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from client.errors import ClientError
from client.events import AUTHORIZATION_REFUSALS, EventLog, EventType
from client.integrity import VerifyResult, verify_sealed, verify_slot
from client.offline import describe as describe_max_age
from client.readiness import Activation, Decision, Guard, run_command
from client.state import (
    SLOTS,
    BootEnv,
    Floor,
    Mode,
    SlotRecord,
    StateDir,
    other,
    remove_leftovers,
)

__all__ = ["BootResult", "Outcome", "VerifyResult", "boot", "enter_failsafe", "verify_active"]

#: Event types that answer "what happened to the last update?" (R37, R38).
UPDATE_RESULTS = frozenset(
    {
        EventType.NO_UPDATE,
        EventType.INSTALLED,
        EventType.UPDATED,
        EventType.ROLLED_BACK,
        EventType.ROLLBACK_ATTACK,
        EventType.FREEZE_ATTACK,
        EventType.MIX_AND_MATCH,
        EventType.BAD_SIGNATURE,
        EventType.BAD_HASH,
        EventType.TOO_LONG,
        EventType.SLOW_RETRIEVAL,
        EventType.CLOCK_SKEW,
        EventType.FIRMWARE_DOWNGRADE,
        EventType.HARDWARE_MISMATCH,
        EventType.INTEGRITY_FAILURE,
        EventType.FAILSAFE_ENTERED,
        EventType.FAILSAFE_REFUSED,
        EventType.FAILSAFE_LEFT,
        EventType.HEALTH_CHECK_FAILED,
        EventType.KNOWN_BAD,
        EventType.UNREACHABLE,
        EventType.INSUFFICIENT_SPACE,
        EventType.RUNNING_NOT_LISTED,
        EventType.AWAITING_AUTHORIZATION,
        EventType.PREREQUISITE_MISSING,
        *AUTHORIZATION_REFUSALS,
        EventType.DEFERRED_IN_USE,
        EventType.ASSIGNMENT_REFUSED,
        EventType.NO_ASSIGNMENT,
        EventType.POLL_UNANSWERED,
        EventType.SERVER_FROZEN,
        EventType.DEFERRED_WINDOW,
        EventType.ERROR,
    }
)
#: The other event types: housekeeping, not the answer ``status`` gives. Every
#: type is in exactly one of the two sets (a test checks), so a new type is
#: classified on purpose, never by default.
HOUSEKEEPING = frozenset(
    {
        EventType.PROVISIONED,
        EventType.CHECKED,
        EventType.DOWNLOADED,
        EventType.BOOTED,
        EventType.VERIFIED,
        EventType.LEFTOVERS_REMOVED,
        EventType.LOG_TAIL_REPAIRED,
        EventType.LOG_DAMAGED,
        EventType.LOG_ROTATED,
        EventType.AUTHORIZATION_ACCEPTED,
        EventType.AUTHORIZATION_USED,
        EventType.DELTA_FAILED,
        EventType.OFFLINE_INSTALL,
    }
)
_TOP_LEVEL = ("root", "timestamp", "snapshot", "targets")
#: Boot tries of a firmware put on trial by a boot rather than by an install:
#: the fewest that still tests it (a crash during its trial ends it).
FALLBACK_TRIES = 1
#: Entries that say the device was in failsafe mode, or left it (R24, R34).
_FAILSAFE_EVENTS = frozenset(
    {EventType.FAILSAFE_ENTERED, EventType.FAILSAFE_REFUSED, EventType.FAILSAFE_LEFT}
)
_T = TypeVar("_T")
#: Leftovers named in the event (a line of the log stays short).
_LISTED = 20


class Outcome(StrEnum):
    BOOTED = "booted"  # the active slot verified and runs
    COMMITTED = "committed"  # the pending slot passed its health check and is now active
    RETRY = "retry"  # the pending slot failed its health check; tries remain
    ROLLED_BACK = "rolled_back"  # the pending slot was given up; the previous slot runs
    SWITCHED = "switched"  # the active slot failed verification; the other one runs
    FAILSAFE = "failsafe"  # no slot verifies, or failsafe already: keep what runs
    DEFERRED = "deferred"  # R52: the device is in use; the active slot runs, the pending waits


@dataclass(frozen=True)
class BootResult:
    slot: str
    outcome: Outcome
    message: str


@dataclass(frozen=True)
class HealthResult:
    healthy: bool
    detail: str


def boot(
    state: StateDir,
    *,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float = 60,
    guard: Guard | None = None,
) -> BootResult:
    """Reboot: try the pending slot, or verify the active one (see the module rules).

    ``guard`` is the clinical-use guard (``client.readiness``; None: no
    ready-check configured), asked before a pending slot's trial boot.
    """
    if health_check is not None and not health_check:
        raise ValueError("an empty health check command: give a command, or None for none")
    state.require_provisioned()
    with state.lock():
        _remove_leftovers(state, now)
        return _reboot(state, health_check, now, timeout, guard or Guard())


def _remove_leftovers(state: StateDir, now: datetime) -> None:
    found = state.leftovers()
    if not found:
        return
    names = [path.relative_to(state.root).as_posix() for path in found]
    state.events.append(
        EventType.LEFTOVERS_REMOVED,
        f"removed {len(names)} temporary file(s) of writes interrupted before this boot",
        now=now,
        files=names[:_LISTED],
        unlisted=max(0, len(names) - _LISTED),
    )
    remove_leftovers(found)


def _reboot(
    state: StateDir,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float,
    guard: Guard,
) -> BootResult:
    _heal_records(state, now)
    env = _boot_environment(state, now)
    if env.pending is None:
        return _boot_active(state, env, health_check=health_check, now=now, timeout=timeout)
    if env.mode is Mode.FAILSAFE and not env.recovery:
        state.events.append(
            EventType.FAILSAFE_REFUSED,
            f"slot {env.pending} is not a signed recovery: not booted in failsafe mode",
            now=now,
            slot=env.pending,
        )
        env = env.with_changes(pending=None, tries_left=0, recovery=False)
        state.write_bootenv(env)
        return _boot_active(state, env, health_check=health_check, now=now, timeout=timeout)
    return _guarded_trial(state, env, guard, health_check=health_check, now=now, timeout=timeout)


def _guarded_trial(
    state: StateDir,
    env: BootEnv,
    guard: Guard,
    *,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float,
) -> BootResult:
    """R52: the pending slot's trial, once the clinical-use guard allows it; else deferred."""
    if env.pending is None:  # pragma: no cover - checked by the caller
        raise ValueError("no pending slot")
    record = _record_or_none(state, env.pending)
    version = record.version if record else "unknown"
    decision = guard.decide(Activation.TRIAL_BOOT, version=version, recovery=env.recovery)
    if not decision.proceed:
        return _defer_trial(
            state, env, record, decision, health_check=health_check, now=now, timeout=timeout
        )
    if decision.overridden:
        state.events.append(
            EventType.BOOTED,
            f"slot {env.pending} (signed recovery {version}) goes on trial: {decision.detail}",
            now=now,
            slot=env.pending,
            version=version,
            ready_check=decision.detail,
        )
    return _trial(state, env, health_check, now, timeout)


def _defer_trial(
    state: StateDir,
    env: BootEnv,
    record: SlotRecord | None,
    decision: Decision,
    *,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float,
) -> BootResult:
    """R52: the device is in use: the active slot runs, the pending slot waits, no try is spent.

    The boot environment is not written: the pending slot and its tries are
    exactly what the next boot finds. Should the active slot not verify,
    ``_boot_active`` does what it does at any boot: the pending slot's
    firmware is the verified one left, and it runs on trial rather than a
    firmware that does not verify (R29) or failsafe mode (R33).
    """
    slot = env.pending
    version = record.version if record else None
    state.events.append(
        EventType.DEFERRED_IN_USE,
        f"trial boot of slot {slot} (firmware {version}) deferred: {decision.detail};"
        f" slot {env.active} keeps running, the next boot tries again",
        now=now,
        slot=slot,
        target=record.target_path if record else None,
        version=version,
        activation=Activation.TRIAL_BOOT.value,
        tries_left=env.tries_left,
    )
    result = _boot_active(state, env, health_check=health_check, now=now, timeout=timeout)
    unchanged = Outcome.FAILSAFE if env.mode is Mode.FAILSAFE else Outcome.BOOTED
    if result.outcome is not unchanged:
        return result
    return BootResult(
        result.slot,
        Outcome.DEFERRED,
        f"{result.message}; trial boot of slot {slot} deferred: {decision.detail}",
    )


def _heal_records(state: StateDir, now: datetime) -> None:
    """R33: a known-bad list or a floor that cannot be read is rebuilt and logged, never a stop.

    The known-bad list starts again from the slots marked ``failed`` (what
    failed before them is lost, and may be tried once more: its trial fails
    again and puts it back); the security floor starts again at the highest
    security version among the committed slots that verify (R25: a firmware
    that never passed its trial here, or failed it, sets nothing), and the
    boot then raises it to the running firmware's, as every boot does.
    """
    damage = _unreadable(state.known_bad)
    if damage is not None:
        _log_rebuilt(state, now, damage, "known-bad list from the slots marked failed")
        state.replace_damaged_known_bad()
        for slot in SLOTS:
            record = _record_or_none(state, slot)
            if record is not None and record.failed:
                state.add_known_bad(record, at=now)
    damage = _unreadable(state.floor)
    if damage is not None:
        committed = _committed_verified(state, _bootenv_or_none(state))
        floor = Floor(max((_security(result.record) for result in committed), default=0))
        _log_rebuilt(
            state, now, damage, f"security floor {floor.security_version} from the committed slots"
        )
        state.replace_damaged_floor(floor)


def _unreadable(read: Callable[[], object]) -> str | None:
    try:
        read()
    except ClientError as exc:
        return str(exc)
    return None


def _log_rebuilt(state: StateDir, now: datetime, damage: str, rebuilt: str) -> None:
    state.events.append(
        EventType.INTEGRITY_FAILURE, f"{damage}; rebuilt: {rebuilt}", now=now, rebuilt=rebuilt
    )


def _boot_environment(state: StateDir, now: datetime) -> BootEnv:
    """The boot environment, or, if it cannot be read, one rebuilt failing closed.

    R33: damaged storage must not stop the device. The rebuilt environment
    runs the committed slot that verifies (``_slot_to_run``) and nothing is
    pending: a trial in progress is dropped (its slot stays sealed, and the
    next update resumes from it), and a firmware never committed here is
    never run by a rebuild. Its mode is failsafe unless the event log proves
    the device was not in failsafe mode (``_failsafe_left``), and always
    when no committed slot verifies (R24, R34).
    """
    try:
        return state.bootenv()
    except ClientError as exc:
        damage = str(exc)
    verified = [result for result in (verify_slot(state, s) for s in SLOTS) if result.ok]
    best = _slot_to_run(state, verified)
    normal = best is not None and _failsafe_left(state.events)
    env = BootEnv(
        active=best.slot if best else _failsafe_slot(state, verified),
        mode=Mode.NORMAL if normal else Mode.FAILSAFE,
    )
    if best is None:
        why = "no slot holds verified committed firmware"
    else:
        why = "the event log does not prove the device had left failsafe mode"
    state.events.append(
        EventType.INTEGRITY_FAILURE,
        f"the boot environment cannot be read ({damage}); rebuilt with slot {env.active} active"
        + (": it holds verified committed firmware" if normal else f" in failsafe mode: {why}")
        + _not_run(verified, env.active),
        now=now,
        slot=env.active,
        mode=env.mode.value,
    )
    if not normal:
        state.events.append(
            EventType.FAILSAFE_ENTERED,
            f"failsafe mode entered: the boot environment was rebuilt and {why};"
            f" slot {env.active} keeps running",
            now=now,
            slot=env.active,
            reason=f"rebuilt boot environment: {why}",
        )
    state.write_bootenv(env)
    return env


def _bootenv_or_none(state: StateDir) -> BootEnv | None:
    try:
        return state.bootenv()
    except ClientError:
        return None


def _is_committed(record: SlotRecord, slot: str, env: BootEnv | None) -> bool:
    """R29: whether ``slot``'s firmware passed its trial boot here.

    Its record says so, or, for a record written before the mark existed
    (``committed`` None: never one that says False), ``env`` (a boot
    environment that could be read) runs it in normal mode.
    """
    if record.committed is not None:
        return record.committed
    return env is not None and env.mode is Mode.NORMAL and env.active == slot


def _committed_verified(state: StateDir, env: BootEnv | None) -> list[VerifyResult]:
    """The slots that verify and hold committed firmware (``_is_committed``)."""
    results = (verify_slot(state, slot) for slot in SLOTS)
    return [
        result
        for result in results
        if result.ok
        and result.record is not None
        and _is_committed(result.record, result.slot, env)
    ]


def _slot_to_run(state: StateDir, verified: Sequence[VerifyResult]) -> VerifyResult | None:
    """Of the ``verified`` slots, the committed one the floor names, else the most secure.

    Only a record marked committed counts: the boot environment is lost, so
    nothing else says what ran for good.
    """
    try:
        installed = state.floor().installed_version
    except ClientError:
        installed = None
    committed = [r for r in verified if r.record is not None and r.record.committed]

    def rank(result: VerifyResult) -> tuple[bool, int]:
        record = result.record
        return (record is not None and record.version == installed, _security(record))

    return max(committed, key=rank, default=None)


def _failsafe_slot(state: StateDir, verified: Sequence[VerifyResult]) -> str:
    """The slot failsafe mode keeps when no committed firmware verifies.

    The one whose record says committed and not failed (what last ran for
    good), else the verified one with the lowest security version (an
    install waiting for its trial is normally above the firmware it
    replaces, R25), else slot a.
    """
    for slot in SLOTS:
        record = _record_or_none(state, slot)
        if record is not None and record.committed and not record.failed:
            return slot
    oldest = min(verified, key=lambda result: _security(result.record), default=None)
    return oldest.slot if oldest else SLOTS[0]


def _not_run(verified: Sequence[VerifyResult], active: str) -> str:
    """A note on a verified slot a rebuild does not run because it was never committed."""
    for result in verified:
        record = result.record
        if result.slot != active and record is not None and not record.committed:
            return (
                f"; slot {result.slot} holds firmware {record.version} never committed here:"
                " not run (the next update resumes it and its trial boot)"
            )
    return ""


def _failsafe_left(events: EventLog) -> bool:
    """R24, R34: whether the event log proves the device was not in failsafe mode.

    Only a chain that verifies through every retained file proves anything.
    Its last failsafe entry decides: ``failsafe_left`` proves normal mode;
    ``failsafe_entered``, ``failsafe_refused`` or a boot in failsafe mode
    proves failsafe. With none, the retained history must start at the
    ``provisioned`` entry or at a rotation the log records (``verify``
    checks that), so that no entry is missing from its start: an emptied
    or replaced log proves nothing.
    """
    report = events.verify()
    if not report.ok:
        return False
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    for entry in events.entries():
        first = first or entry
        if _is_failsafe_entry(entry):
            last = entry
    if last is not None:
        return last.get("type") == EventType.FAILSAFE_LEFT
    if first is None:
        return False
    return report.first_seq > 1 or first.get("type") == EventType.PROVISIONED


def _is_failsafe_entry(entry: Mapping[str, Any]) -> bool:
    detail = entry.get("detail")
    in_failsafe = isinstance(detail, dict) and detail.get("mode") == Mode.FAILSAFE
    return entry.get("type") in _FAILSAFE_EVENTS or (
        entry.get("type") == EventType.BOOTED and in_failsafe
    )


def _security(record: SlotRecord | None) -> int:
    return record.security_version if record else -1


def _trial(
    state: StateDir,
    env: BootEnv,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float,
) -> BootResult:
    slot = env.pending
    if slot is None:  # pragma: no cover - checked by the caller
        raise ValueError("no pending slot")
    check = verify_sealed(state, slot)
    if not check.ok or check.record is None:
        state.events.append(
            check.event or EventType.INTEGRITY_FAILURE,
            f"pending slot {slot} does not verify: {check.reason}",
            now=now,
            slot=slot,
        )
        return _roll_back(
            state, env, None, now, "it does not verify", health_check=health_check, timeout=timeout
        )
    record = check.record
    if env.tries_left <= 0 or record.failed or record.sha256 in state.known_bad():
        return _roll_back(
            state,
            env,
            record,
            now,
            "its boot tries ran out",
            health_check=health_check,
            timeout=timeout,
        )
    env = env.with_changes(tries_left=env.tries_left - 1)
    state.write_bootenv(env)  # first: a crash during the trial is a failed try
    health = run_health_check(health_check, state=state, slot=slot, record=record, timeout=timeout)
    if health.healthy:
        return _commit(state, env, record, now)
    state.events.append(
        EventType.HEALTH_CHECK_FAILED,
        f"firmware {record.version} in slot {slot} failed its health check ({health.detail});"
        f" {env.tries_left} tries left",
        now=now,
        slot=slot,
        version=record.version,
        tries_left=env.tries_left,
    )
    if env.tries_left > 0:
        return BootResult(slot, Outcome.RETRY, f"health check failed ({health.detail}); reboot")
    reason = f"its health check failed ({health.detail})"
    return _roll_back(state, env, record, now, reason, health_check=health_check, timeout=timeout)


def _commit(state: StateDir, env: BootEnv, record: SlotRecord, now: datetime) -> BootResult:
    slot = env.pending
    if slot is None:  # pragma: no cover - checked by the caller
        raise ValueError("no pending slot")
    state.events.append(
        EventType.UPDATED,
        f"firmware {record.version} in slot {slot} passed its health check and is committed",
        now=now,
        slot=slot,
        version=record.version,
        security_version=record.security_version,
        previous=env.active,
    )
    leaves_failsafe = env.mode is Mode.FAILSAFE and env.recovery
    # R29: marked first, once its health check passed; a power cut before the
    # switch below leaves it pending, and its trial runs again.
    state.write_slot_record(slot, replace(record, committed=True))
    state.write_bootenv(
        env.with_changes(
            active=slot,
            pending=None,
            tries_left=0,
            previous=env.active,
            recovery=False,
            mode=Mode.NORMAL if leaves_failsafe else env.mode,
        )
    )
    _raise_floor(state, record)
    if leaves_failsafe:
        # R24, R34: a rebuild takes this entry as proof that failsafe mode was
        # left, so it is logged only once the mark, the switch and the floor
        # naming the recovery as installed (the slot a rebuild runs) are
        # durable. A power cut before the switch re-runs the recovery's trial,
        # which logs it; one after leaves no proof: a rebuild keeps failsafe.
        state.events.append(
            EventType.FAILSAFE_LEFT,
            f"signed recovery {record.version} committed: failsafe mode left",
            now=now,
            slot=slot,
        )
    return BootResult(
        slot, Outcome.COMMITTED, f"firmware {record.version} committed in slot {slot}"
    )


def _roll_back(
    state: StateDir,
    env: BootEnv,
    record: SlotRecord | None,
    now: datetime,
    reason: str,
    *,
    health_check: Sequence[str] | None,
    timeout: float,
) -> BootResult:
    """Give up the pending slot and boot the one that ran before it."""
    slot = env.pending
    state.events.append(
        EventType.ROLLED_BACK,
        f"slot {slot} given up because {reason}; back to slot {env.active}",
        now=now,
        slot=slot,
        version=record.version if record else None,
        back_to=env.active,
    )
    if record is not None:
        state.add_known_bad(record, at=now)  # first: from here on it never boots again
    env = env.with_changes(pending=None, tries_left=0, previous=None, recovery=False)
    state.write_bootenv(env)
    if record is not None and slot is not None:
        state.write_slot_record(slot, replace(record, failed=True))
    result = _boot_active(state, env, health_check=health_check, now=now, timeout=timeout)
    if result.outcome is not Outcome.BOOTED:
        return result
    return BootResult(result.slot, Outcome.ROLLED_BACK, f"slot {slot} {reason}; {result.message}")


def _boot_active(
    state: StateDir,
    env: BootEnv,
    *,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float,
) -> BootResult:
    active = env.active
    check = verify_slot(state, active)
    if env.mode is Mode.FAILSAFE:
        state.events.append(
            EventType.BOOTED,
            f"failsafe mode: slot {active} keeps running; only a signed recovery is installed",
            now=now,
            slot=active,
            verified=check.ok,
            mode=Mode.FAILSAFE.value,
        )
        return BootResult(active, Outcome.FAILSAFE, "failsafe mode: only a signed recovery")
    if check.ok and check.record is not None and check.record.committed is not False:
        _log_booted(state, check.record, active, now)
        return BootResult(active, Outcome.BOOTED, f"firmware {check.record.version} verified")
    problem = "does not verify"
    if check.ok and check.record is not None:
        # R29: its record says it never passed its trial here; a boot environment
        # that runs it (edited, or damaged yet readable) does not commit it.
        problem = "was never committed here"
        state.events.append(
            EventType.INTEGRITY_FAILURE,
            f"active slot {active} holds firmware {check.record.version} never committed here:"
            " the boot environment does not commit it; not run for good",
            now=now,
            slot=active,
            version=check.record.version,
        )
    else:
        state.events.append(
            check.event or EventType.INTEGRITY_FAILURE,
            f"active slot {active} does not verify: {check.reason}",
            now=now,
            slot=active,
        )
    alternative = verify_slot(state, other(active))
    if alternative.ok and alternative.record is not None and not alternative.record.committed:
        return _fallback_trial(
            state, env, alternative.record, health_check=health_check, now=now, timeout=timeout
        )
    if alternative.ok and alternative.record is not None:
        _log_booted(state, alternative.record, alternative.slot, now)
        state.write_bootenv(env.with_changes(active=alternative.slot, previous=active))
        return BootResult(
            alternative.slot,
            Outcome.SWITCHED,
            f"slot {active} {problem}; firmware {alternative.record.version}"
            f" in slot {alternative.slot} verified and runs",
        )
    state.events.append(
        alternative.event or EventType.INTEGRITY_FAILURE,
        f"slot {alternative.slot} does not verify either: {alternative.reason}",
        now=now,
        slot=alternative.slot,
    )
    reason = "no slot holds verified firmware"
    if check.ok:
        reason = f"no slot holds verified committed firmware (slot {active} {problem})"
    return enter_failsafe(state, now=now, reason=reason)


def _fallback_trial(
    state: StateDir,
    env: BootEnv,
    record: SlotRecord,
    *,
    health_check: Sequence[str] | None,
    now: datetime,
    timeout: float,
) -> BootResult:
    """R29: a verified slot never committed here runs only on trial, never for good at once."""
    slot = other(env.active)
    state.events.append(
        EventType.INSTALLED,
        f"firmware {record.version} in slot {slot} was never committed on this device:"
        f" it goes on trial ({FALLBACK_TRIES} boot try) instead of running for good",
        now=now,
        slot=slot,
        target=record.target_path,
        version=record.version,
        security_version=record.security_version,
        recovery=False,
    )
    pending = env.with_changes(
        pending=slot, tries_left=FALLBACK_TRIES, previous=env.active, recovery=False
    )
    return _trial(state, pending, health_check, now, timeout)


def _log_booted(state: StateDir, record: SlotRecord, slot: str, now: datetime) -> None:
    """Log that ``slot`` runs for good, mark it committed if its record predates the mark.

    R29: never one whose record says it was not committed (the callers run none).
    """
    state.events.append(
        EventType.BOOTED,
        f"firmware {record.version} in slot {slot} verified and runs",
        now=now,
        slot=slot,
        version=record.version,
    )
    if record.committed is None:  # only the active slot of a readable boot environment gets here
        state.write_slot_record(slot, replace(record, committed=True))
    _raise_floor(state, record)


def _raise_floor(state: StateDir, record: SlotRecord) -> None:
    """R25: the floor follows the running firmware up, never down."""
    floor = state.floor()
    raised = Floor(max(floor.security_version, record.security_version), record.version)
    if raised != floor:
        state.write_floor(raised)


def enter_failsafe(state: StateDir, *, now: datetime, reason: str) -> BootResult:
    """R24/R33: keep what runs, refuse every change but a signed recovery, raise the alert."""
    env = state.bootenv()
    state.events.append(
        EventType.FAILSAFE_ENTERED,
        f"failsafe mode entered: {reason}; slot {env.active} keeps running",
        now=now,
        slot=env.active,
        reason=reason,
    )
    if env.mode is not Mode.FAILSAFE:
        state.write_bootenv(env.with_changes(mode=Mode.FAILSAFE))
    return BootResult(env.active, Outcome.FAILSAFE, f"failsafe mode: {reason}")


def verify_active(state: StateDir, *, now: datetime) -> VerifyResult:
    """``fwclient verify``: re-hash the active slot against its record and evidence; log it."""
    state.require_provisioned()
    slot = state.bootenv().active
    result = verify_slot(state, slot)
    if result.ok and result.record is not None:
        state.events.append(
            EventType.VERIFIED,
            f"firmware {result.record.version} in slot {slot} verified",
            now=now,
            slot=slot,
        )
    else:
        state.events.append(
            result.event or EventType.INTEGRITY_FAILURE,
            f"active slot {slot} does not verify: {result.reason}",
            now=now,
            slot=slot,
        )
    return result


# -- health check ---------------------------------------------------------------


def run_health_check(
    argv: Sequence[str] | None,
    *,
    state: StateDir,
    slot: str,
    record: SlotRecord,
    timeout: float,
) -> HealthResult:
    """Run the firmware's health check: exit status 0 within ``timeout`` is healthy.

    The command learns what it checks from ``FWCLIENT_SLOT``,
    ``FWCLIENT_IMAGE`` and ``FWCLIENT_VERSION``. A command that hangs is
    killed with its whole process group.
    """
    if argv is None:
        return HealthResult(True, "no health check configured")
    env = {
        **os.environ,
        "FWCLIENT_SLOT": slot,
        "FWCLIENT_IMAGE": str(state.slot_image(slot)),
        "FWCLIENT_VERSION": record.version,
    }
    result = run_command(argv, env=env, timeout=timeout)
    if result.status == 0:
        return HealthResult(True, "healthy")
    return HealthResult(False, result.detail)


# -- status ---------------------------------------------------------------------


#: What happens to each record ``status`` finds damaged (R33: the device never stops).
REPAIRS: Mapping[str, str] = {
    "bootenv.json": "the next boot rebuilds it: the verified slot holding the last committed"
    " firmware runs, nothing pending (with no such slot, the device enters failsafe mode),"
    " in failsafe mode unless the event log proves the device had left it",
    "floor.json": "the next boot rebuilds it from the highest security version among the"
    " committed slots that verify",
    "known_bad.json": "the next boot rebuilds it from the slots marked failed",
    "time_floor.json": "the next update or check rebuilds it from what the device can prove"
    " (build time, provisioning floor, verified evidence)",
    "slot_a.json": "slot a does not verify: the next boot does not run it, and the next"
    " update writes over it",
    "slot_b.json": "slot b does not verify: the next boot does not run it, and the next"
    " update writes over it",
}


def status(state: StateDir) -> dict[str, Any]:
    """What the device runs and why (R37, R38); reads only, hashes nothing.

    A record that cannot be read (R33) does not stop the report: what
    depends on it is None, and ``damaged`` names the file, what is wrong
    with it and what the next boot or update does about it ({} if nothing).
    """
    state.require_provisioned()
    identity = state.identity()
    damaged: dict[str, str] = {}
    env = _readable(state.bootenv, "bootenv.json", damaged)
    floor = _readable(state.floor, "floor.json", damaged)
    time_floor = _readable(state.time_floor, "time_floor.json", damaged)
    _readable(state.known_bad, "known_bad.json", damaged)
    records = {slot: _readable(_slot_reader(state, slot), f"slot_{slot}.json", damaged)
               for slot in SLOTS}  # fmt: skip
    running = records[env.active] if env else None
    last = state.events.last(*UPDATE_RESULTS)
    return {
        "device_id": identity.device_id,
        "hardware_model": identity.hardware_model,
        "mode": env.mode.value if env else None,
        "slot": env.active if env else None,
        "running_version": running.version if running else None,
        "security_floor": floor.security_version if floor else None,
        "installed_version": floor.installed_version if floor else None,
        "pending": (
            {"slot": env.pending, "tries_left": env.tries_left, "recovery": env.recovery}
            if env and env.pending
            else None
        ),
        "slots": {
            slot: (
                {
                    "target": record.target_path,
                    "version": record.version,
                    "security_version": record.security_version,
                    "failed": record.failed,
                }
                if record
                else None
            )
            for slot, record in records.items()
        },
        "metadata_expires": _metadata_expiries(state),
        "time_floor": time_floor.isoformat() if time_floor else None,
        # client.offline O3: the provisioned bound of an offline (bundle) session.
        "offline_max_age": describe_max_age(identity.offline_max_age),
        "last_update": ({key: last[key] for key in ("time", "type", "message")} if last else None),
        "damaged": damaged,
    }


def _readable(read: Callable[[], _T], name: str, damaged: dict[str, str]) -> _T | None:
    """What ``read`` returns, or None with the damage noted under ``name``."""
    try:
        return read()
    except ClientError as exc:
        damaged[name] = f"{exc}; {REPAIRS[name]}"
        return None


def _slot_reader(state: StateDir, slot: str) -> Callable[[], SlotRecord | None]:
    return lambda: state.slot_record(slot)


def _record_or_none(state: StateDir, slot: str) -> SlotRecord | None:
    try:
        return state.slot_record(slot)
    except ClientError:
        return None


def _metadata_expiries(state: StateDir) -> dict[str, str | None]:
    """Expiry of each top-level role in the metadata cache (None: not cached or unreadable)."""
    expiries: dict[str, str | None] = {}
    for role in _TOP_LEVEL:
        try:
            data = json.loads((state.metadata_dir / f"{role}.json").read_bytes())
            expiries[role] = str(data["signed"]["expires"])
        except (OSError, ValueError, KeyError, TypeError):
            expiries[role] = None
    return expiries
