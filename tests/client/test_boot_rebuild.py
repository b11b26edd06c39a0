"""Damaged boot records rebuilt at boot, failing closed (R24, R25, R29, R33, R34).

Threats: a damaged ``bootenv.json`` (the only record of failsafe mode, of
the slot on trial and its tries) or ``floor.json`` must not stop the device
(R33), and must not be a way around a rule either: leaving failsafe mode
without a signed recovery (R24, R34), running or committing a firmware that
never passed its trial boot here (R29), or letting a firmware that failed
here set the security floor (R25).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from client.boot import Outcome, boot, enter_failsafe
from client.errors import ProvisioningError
from client.events import EventLog, EventType
from client.state import BootEnv, Floor, Mode, StateDir
from tests.client.helpers_state import (
    HEALTHY,
    NOW,
    UNHEALTHY,
    Release,
    SignedLine,
    assert_consistent,
    corrupt,
    event_types,
    in_service,
    install,
    provision,
)


@pytest.fixture
def state(tmp_path: Path, line: SignedLine, factory: Release) -> StateDir:
    return in_service(tmp_path / "device", line, factory)


@pytest.fixture
def updated(state: StateDir, update: Release) -> StateDir:
    """Running 1.1.0 from slot b (committed), with 1.0.0 still committed in slot a."""
    install(state, update)
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.COMMITTED
    return state


def damage(state: StateDir, name: str) -> None:
    """A power cut or a flipped block leaves half of a record."""
    file = state.root / name
    file.write_bytes(file.read_bytes()[:9])


# -- S1: failsafe mode is recorded only in bootenv.json -----------------------------


def test_a_damaged_boot_environment_does_not_leave_failsafe_without_a_signed_recovery_r24_r34(
    updated: StateDir,
) -> None:
    """R24/R34: only a signed recovery's trial leaves failsafe; a lost bootenv.json is not one."""
    enter_failsafe(updated, now=NOW, reason="rollback attack")
    damage(updated, "bootenv.json")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.FAILSAFE)
    assert updated.bootenv() == BootEnv(active="b", mode=Mode.FAILSAFE)
    assert event_types(updated)[-3:] == ["integrity_failure", "failsafe_entered", "booted"]
    damage(updated, "bootenv.json")  # and again: the log now says failsafe twice over
    assert boot(updated, health_check=HEALTHY, now=NOW).outcome is Outcome.FAILSAFE
    assert_consistent(updated)


def test_failsafe_left_by_a_signed_recovery_is_proven_by_the_log_after_bootenv_damage_r24(
    updated: StateDir, line: SignedLine
) -> None:
    """R24: the log's last failsafe entry is ``failsafe_left``: the rebuild keeps normal mode."""
    enter_failsafe(updated, now=NOW, reason="rollback attack")
    install(updated, line.release("1.2.0", 3), recovery=True)
    assert boot(updated, health_check=HEALTHY, now=NOW).outcome is Outcome.COMMITTED
    damage(updated, "bootenv.json")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.BOOTED)
    assert updated.bootenv() == BootEnv(active="a")
    assert_consistent(updated)


def test_a_failsafe_boot_left_in_a_rotated_log_keeps_failsafe_after_bootenv_damage_r24(
    updated: StateDir,
) -> None:
    """R24: the entering entry rotated out; a boot in failsafe mode after it still says so."""
    enter_failsafe(updated, now=NOW, reason="rollback attack")
    small = EventLog(updated.events.path, max_bytes=1, archives=1)
    for _ in range(3):  # every append rotates: only the last few entries are kept
        small.append(EventType.CHECKED, "checked", now=NOW)
    assert boot(updated, health_check=HEALTHY, now=NOW).outcome is Outcome.FAILSAFE
    types = [entry["type"] for entry in updated.events.entries()]
    assert "failsafe_entered" not in types and updated.events.verify().first_seq > 1
    damage(updated, "bootenv.json")
    assert boot(updated, health_check=HEALTHY, now=NOW).outcome is Outcome.FAILSAFE


@pytest.mark.parametrize("log", ["emptied", "altered"])
def test_a_log_that_proves_nothing_rebuilds_failsafe_r24_r27(updated: StateDir, log: str) -> None:
    """R24, R27: an emptied log, or one whose chain breaks, cannot prove failsafe was left."""
    events = updated.events.path
    if log == "emptied":
        events.write_bytes(b"")
    else:
        events.write_bytes(events.read_bytes().replace(b'"installed"', b'"checked"', 1))
    damage(updated, "bootenv.json")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.FAILSAFE)
    assert "failsafe_entered" in event_types(updated)


def test_a_damaged_boot_environment_of_a_device_never_in_failsafe_boots_normally_r33(
    updated: StateDir,
) -> None:
    """R33: the log verifies from provisioning with no failsafe entry: normal mode is proven."""
    damage(updated, "bootenv.json")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.BOOTED)
    assert updated.bootenv() == BootEnv(active="b")
    assert event_types(updated)[-2:] == ["integrity_failure", "booted"]


# -- S2: only a committed slot runs for good or sets the floor after a rebuild -------


def test_a_damaged_boot_environment_and_floor_never_commit_a_firmware_on_trial_r29(
    state: StateDir, update: Release
) -> None:
    """R29, R25: the rebuild runs the committed slot; the firmware waiting for its trial
    neither runs for good nor sets the floor, and still gets its trial at the next update."""
    install(state, update)
    damage(state, "bootenv.json")
    damage(state, "floor.json")
    result = boot(state, health_check=UNHEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.BOOTED)
    assert state.bootenv() == BootEnv(active="a")
    assert state.floor() == Floor(1, "1.0.0")
    record = state.slot_record("b")
    assert record is not None and not record.committed and not record.failed
    assert "never committed here: not run" in str(state.events.last(EventType.INTEGRITY_FAILURE))
    assert install(state, update) == "b"  # resumed from the sealed bytes, then its trial
    assert boot(state, health_check=UNHEALTHY, now=NOW).outcome is Outcome.RETRY
    assert_consistent(state)


def test_a_firmware_that_failed_its_trial_does_not_raise_a_rebuilt_floor_r25(
    state: StateDir, update: Release
) -> None:
    """R25: the floor is rebuilt from the committed slot, not from the firmware on trial."""
    install(state, update, tries=1)
    damage(state, "floor.json")
    result = boot(state, health_check=UNHEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.ROLLED_BACK)
    assert state.floor() == Floor(1, "1.0.0")
    assert update.record.sha256 in state.known_bad()


def test_a_rebuilt_floor_counts_a_legacy_record_only_as_the_running_slot_r25(
    tmp_path: Path, line: SignedLine, factory: Release, update: Release
) -> None:
    """R25: records older than the mark: the readable boot environment names the committed one."""
    state = provision(tmp_path / "legacy", line, factory)  # slot a's record has no mark
    install(state, update, tries=1)
    damage(state, "floor.json")
    assert boot(state, health_check=UNHEALTHY, now=NOW).outcome is Outcome.ROLLED_BACK
    assert state.floor() == Floor(1, "1.0.0")
    record = state.slot_record("a")
    assert record is not None and record.committed, "its boot as the active slot marks it"


def test_legacy_records_with_every_boot_record_lost_enter_failsafe_and_run_nothing_untried_r29(
    tmp_path: Path, line: SignedLine, factory: Release, update: Release
) -> None:
    """R29, R24: no slot is known committed: failsafe, keeping the older firmware, no trial."""
    state = provision(tmp_path / "legacy", line, factory)
    state.events.append(EventType.PROVISIONED, "provisioned", now=NOW)
    install(state, update)
    damage(state, "bootenv.json")
    damage(state, "floor.json")
    result = boot(state, health_check=UNHEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.FAILSAFE)
    assert state.bootenv() == BootEnv(active="a", mode=Mode.FAILSAFE)
    assert state.floor() == Floor(0)
    assert "health_check_failed" not in event_types(state)
    record = state.slot_record("b")
    assert record is not None and not record.committed


def test_a_sealed_slot_never_committed_is_no_fall_back_without_its_trial_r29(
    state: StateDir, update: Release
) -> None:
    """R29: the running slot decays; the other one, sealed but never tried, runs only on trial."""
    install(state, update)
    state.write_bootenv(state.bootenv().with_changes(pending=None, tries_left=0))
    corrupt(state, "a")
    result = boot(state, health_check=UNHEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.FAILSAFE)
    assert event_types(state)[-7:] == [
        "bad_hash", "installed", "health_check_failed", "rolled_back",
        "bad_hash", "integrity_failure", "failsafe_entered",
    ]  # fmt: skip
    assert state.floor() == Floor(1, "1.0.0")


def test_a_sealed_slot_never_committed_that_passes_its_trial_is_committed_r29(
    state: StateDir, update: Release
) -> None:
    install(state, update)
    state.write_bootenv(state.bootenv().with_changes(pending=None, tries_left=0))
    corrupt(state, "a")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.COMMITTED)
    record = state.slot_record("b")
    assert record is not None and record.committed
    assert state.floor() == Floor(2, "1.1.0")


def test_the_committed_mark_is_written_by_the_trial_only_r29(
    state: StateDir, update: Release
) -> None:
    """R29: an install cannot seal a slot as committed, whatever record it is given."""
    install(state, replace(update, record=replace(update.record, committed=True)))
    record = state.slot_record("b")
    assert record is not None and not record.committed
    boot(state, health_check=HEALTHY, now=NOW)
    record = state.slot_record("b")
    assert record is not None and record.committed


def test_a_record_written_before_the_mark_reads_as_not_committed(state: StateDir) -> None:
    file = state.slot_record_file("a")
    data = json.loads(file.read_text())
    del data["committed"]
    file.write_text(json.dumps(data))
    record = state.slot_record("a")
    assert record is not None and not record.committed


# -- S3: only a record without the mark is legacy ------------------------------------


@pytest.mark.parametrize("floor", ["kept", "lost"])
def test_an_edited_boot_environment_never_commits_a_firmware_on_trial_r29(
    state: StateDir, update: Release, floor: str
) -> None:
    """R29, R25: a boot environment edited (or damaged yet readable) to run the slot an
    install wrote, ``committed: false``, in normal mode neither commits it nor lets it set
    the floor: it is no legacy record. The committed slot runs; the update still resumes."""
    install(state, update)
    assert json.loads(state.slot_record_file("b").read_text())["committed"] is False
    state.write_bootenv(BootEnv(active="b", previous="a"))
    if floor == "lost":
        damage(state, "floor.json")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.SWITCHED)
    assert state.bootenv() == BootEnv(active="a", previous="b")
    assert state.floor() == Floor(1, "1.0.0")
    record = state.slot_record("b")
    assert record is not None and record.committed is False and not record.failed
    assert "never committed here" in str(state.events.last(EventType.INTEGRITY_FAILURE))
    assert_consistent(state)
    assert install(state, update) == "b"
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.COMMITTED
    assert state.floor() == Floor(2, "1.1.0")


@pytest.mark.parametrize("floor", ["kept", "lost"])
def test_a_legacy_record_without_the_key_is_committed_by_the_boot_environment_running_it_r29(
    state: StateDir, update: Release, floor: str
) -> None:
    """R29: a record written before the mark existed (no ``committed`` key) counts as
    committed while a readable boot environment runs it in normal mode, as before."""
    install(state, update)
    file = state.slot_record_file("b")
    data = json.loads(file.read_text())
    del data["committed"]
    file.write_text(json.dumps(data))
    state.write_bootenv(BootEnv(active="b", previous="a"))
    if floor == "lost":
        damage(state, "floor.json")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.BOOTED)
    assert state.floor() == Floor(2, "1.1.0")
    record = state.slot_record("b")
    assert record is not None and record.committed is True
    assert json.loads(file.read_text())["committed"] is True


def test_a_legacy_record_is_written_back_without_the_key(
    tmp_path: Path, line: SignedLine, factory: Release
) -> None:
    """A legacy record stays one when rewritten (marked failed, say): only a boot marks it."""
    state = provision(tmp_path / "legacy", line, factory)
    record = state.slot_record("a")
    assert record is not None and record.committed is None
    state.write_slot_record("a", replace(record, failed=True))
    assert "committed" not in json.loads(state.slot_record_file("a").read_text())


@pytest.mark.parametrize("value", [None, 0, "false", "true", 1])
def test_a_committed_mark_that_is_no_boolean_is_damage_r33(state: StateDir, value: object) -> None:
    """R33: ``committed`` is true, false or absent; anything else is a damaged record."""
    file = state.slot_record_file("b")
    data = {**json.loads(state.slot_record_file("a").read_text()), "committed": value}
    file.write_text(json.dumps(data))
    with pytest.raises(ProvisioningError, match="committed is not a boolean"):
        state.slot_record("b")
