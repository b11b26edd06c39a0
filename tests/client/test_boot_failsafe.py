"""Integrity at every boot and on demand, and the failsafe mode (R24, R29, R33, R37-R39).

Threat: the running firmware (or its record, or its evidence) is altered at
rest. The device boots the other slot if that one verifies; if none does,
it keeps what runs, refuses every change but a signed recovery, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.boot import (
    HOUSEKEEPING,
    UPDATE_RESULTS,
    Outcome,
    boot,
    enter_failsafe,
    status,
    verify_active,
)
from client.errors import FailsafeError
from client.events import EventType
from client.evidence import write_evidence
from client.slots import open_inactive
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
    put_in_slot,
)


@pytest.fixture
def state(tmp_path: Path, line: SignedLine, factory: Release) -> StateDir:
    """A device in service: provisioning logged, factory firmware committed in slot a."""
    return in_service(tmp_path / "device", line, factory)


@pytest.fixture
def updated(state: StateDir, update: Release) -> StateDir:
    """Running 1.1.0 from slot b, with 1.0.0 still sealed in slot a."""
    install(state, update)
    boot(state, health_check=HEALTHY, now=NOW)
    return state


def test_corrupted_active_slot_boots_the_other_slot(updated: StateDir) -> None:
    corrupt(updated, "b")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.SWITCHED)
    assert updated.bootenv().active == "a"
    assert event_types(updated)[-2:] == ["bad_hash", "booted"]
    assert updated.floor() == Floor(2, "1.0.0")  # the floor stays up
    assert_consistent(updated)


@pytest.mark.parametrize("part", ["record", "evidence"])
def test_altered_record_or_evidence_at_rest_is_an_integrity_failure(
    updated: StateDir, part: str
) -> None:
    if part == "record":
        file = updated.slot_record_file("b")
        data = json.loads(file.read_text())
        data["security_version"] = 99  # would lift the floor for good
        file.write_text(json.dumps(data))
    else:
        (updated.slot_evidence("b") / "pump-x100.json").write_bytes(b"{}")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.SWITCHED)
    assert "integrity_failure" in event_types(updated)
    assert updated.floor().security_version == 2


@pytest.mark.parametrize(
    "damage",
    [b'{"active": "b", "pend', b"", b'{"active": "c"}\n', b'{"slot": "a"}\n'],
    ids=["truncated", "empty", "unknown_slot", "unknown_field"],
)
def test_a_damaged_boot_environment_still_boots_the_verified_committed_slot_r33(
    updated: StateDir, damage: bytes
) -> None:
    """R33: a boot environment that cannot be read never stops the device."""
    (updated.root / "bootenv.json").write_bytes(damage)
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.BOOTED)
    assert updated.bootenv() == BootEnv(active="b")
    assert event_types(updated)[-2:] == ["integrity_failure", "booted"]
    assert status(updated)["last_update"]["type"] == "integrity_failure"
    assert_consistent(updated)


def test_a_damaged_boot_environment_with_no_verified_slot_enters_failsafe_r33(
    updated: StateDir,
) -> None:
    """R24/R33: nothing verifies and the boot environment is lost: failsafe, not a stop."""
    corrupt(updated, "a")
    corrupt(updated, "b")
    (updated.root / "bootenv.json").write_bytes(b'{"active": ')
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert result.outcome is Outcome.FAILSAFE
    assert updated.bootenv().mode is Mode.FAILSAFE
    assert event_types(updated)[-3:] == ["integrity_failure", "failsafe_entered", "booted"]


@pytest.mark.parametrize("record", ["floor.json", "known_bad.json"])
def test_a_damaged_floor_or_known_bad_record_never_stops_the_boot_r33(
    updated: StateDir, record: str
) -> None:
    """R33: damaged storage under the floors or the known-bad list; the device still boots."""
    (updated.root / record).write_bytes(b'{"security_version": 2, "inst')
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.BOOTED)
    assert event_types(updated)[-2:] == ["integrity_failure", "booted"]
    assert updated.floor() == Floor(2, "1.1.0"), "rebuilt from the slots, raised by the boot"
    assert updated.known_bad() == {}
    assert_consistent(updated)


def test_a_damaged_known_bad_record_keeps_the_firmware_that_failed_here_r33(
    state: StateDir, update: Release
) -> None:
    """R33 and no reinstall loop: the list is rebuilt from the slot marked failed."""
    install(state, update, tries=1)
    assert boot(state, health_check=UNHEALTHY, now=NOW).outcome is Outcome.ROLLED_BACK
    state.known_bad_file.write_bytes(b"{")
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.BOOTED
    assert set(state.known_bad()) == {update.record.sha256}


def test_no_verified_slot_enters_failsafe(updated: StateDir) -> None:
    corrupt(updated, "a")
    corrupt(updated, "b")
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.FAILSAFE)
    assert updated.bootenv().mode is Mode.FAILSAFE
    assert event_types(updated)[-3:] == ["bad_hash", "bad_hash", "failsafe_entered"]
    again = boot(updated, health_check=HEALTHY, now=NOW)
    assert (again.slot, again.outcome) == ("b", Outcome.FAILSAFE)  # keeps what runs


def test_failsafe_refuses_every_change_but_a_signed_recovery(
    updated: StateDir, line: SignedLine
) -> None:
    enter_failsafe(updated, now=NOW, reason="rollback attack")
    newer = line.release("1.2.0", 3)
    with pytest.raises(FailsafeError):
        open_inactive(updated, newer.target)
    install(updated, newer, recovery=True)
    result = boot(updated, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.COMMITTED)
    assert updated.bootenv().mode is Mode.NORMAL
    assert event_types(updated)[-3:] == ["installed", "updated", "failsafe_left"]
    assert_consistent(updated)


def test_recovery_that_fails_its_health_check_stays_in_failsafe(
    updated: StateDir, line: SignedLine
) -> None:
    enter_failsafe(updated, now=NOW, reason="test")
    install(updated, line.release("1.2.0", 3), tries=1, recovery=True)
    result = boot(updated, health_check=UNHEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.FAILSAFE)
    assert updated.bootenv() == BootEnv(active="b", mode=Mode.FAILSAFE)


def test_pending_update_is_dropped_when_failsafe_is_entered_before_its_trial(
    state: StateDir, update: Release
) -> None:
    install(state, update)
    enter_failsafe(state, now=NOW, reason="freeze attack")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.FAILSAFE)
    assert state.bootenv() == BootEnv(active="a", mode=Mode.FAILSAFE, previous="a")
    assert "failsafe_refused" in event_types(state)
    assert state.floor().security_version == 1


def test_verify_on_demand_logs_the_answer(updated: StateDir) -> None:
    assert verify_active(updated, now=NOW).ok
    corrupt(updated, "b")
    result = verify_active(updated, now=NOW)
    assert (result.ok, result.event) == (False, EventType.BAD_HASH)
    assert event_types(updated)[-2:] == ["verified", "bad_hash"]
    assert updated.bootenv().active == "b"  # the decision is the next boot's


def test_slot_with_evidence_for_other_firmware_does_not_verify(
    state: StateDir, factory: Release, update: Release
) -> None:
    """Evidence and image of 1.1.0 under the record of 1.0.0 (a mix of two installs)."""
    put_in_slot(state, "a", update)
    state.write_slot_record("a", factory.record)
    result = verify_active(state, now=NOW)
    assert not result.ok
    write_evidence(state.slot_evidence("a"), factory.evidence)
    assert not verify_active(state, now=NOW).ok  # image is still 1.1.0


def test_unreadable_record_does_not_verify(state: StateDir) -> None:
    state.slot_record_file("a").write_text('{"bogus": 1}')
    result = verify_active(state, now=NOW)
    assert (result.ok, result.event) == (False, EventType.INTEGRITY_FAILURE)


def test_status_reports_what_runs_and_why(updated: StateDir, line: SignedLine) -> None:
    install(updated, line.release("1.2.0", 3), tries=1)
    boot(updated, health_check=UNHEALTHY, now=NOW)
    updated.metadata_dir.mkdir()
    (updated.metadata_dir / "timestamp.json").write_text(
        json.dumps({"signed": {"expires": "2026-11-24T09:00:00Z"}})
    )
    report = status(updated)
    assert report["slot"] == "b"
    assert report["running_version"] == "1.1.0"
    assert report["security_floor"] == 2
    assert report["mode"] == "normal"
    assert report["pending"] is None
    assert report["slots"]["a"]["failed"] is True
    assert report["last_update"]["type"] == "rolled_back"
    assert report["metadata_expires"]["timestamp"] == "2026-11-24T09:00:00Z"
    assert report["metadata_expires"]["root"] is None


def test_status_of_a_device_waiting_for_its_trial(state: StateDir, update: Release) -> None:
    install(state, update, tries=3)
    report = status(state)
    assert report["pending"] == {"slot": "b", "tries_left": 3, "recovery": False}
    assert report["last_update"]["type"] == "installed"


@pytest.mark.parametrize(
    ("record", "unknown"),
    [
        ("bootenv.json", {"mode", "slot", "running_version"}),
        ("floor.json", {"security_floor", "installed_version"}),
        ("time_floor.json", {"time_floor"}),
        ("known_bad.json", set()),
    ],
)
def test_status_with_a_damaged_record_reports_the_rest_and_the_repair_r33(
    updated: StateDir, record: str, unknown: set[str]
) -> None:
    """R33, R37: status reads past a damaged record, naming it and what comes next.

    It writes nothing: the record stays damaged until the next boot or
    update rebuilds it, and the next boot does.
    """
    updated.raise_time_floor(NOW)
    updated.add_known_bad(updated.slot_record("a") or pytest.fail("slot a is sealed"), at=NOW)
    before = status(updated)
    assert before["damaged"] == {}
    file = updated.root / record
    damage = file.read_bytes()[:7]
    file.write_bytes(damage)
    report = status(updated)
    assert set(report["damaged"]) == {record}
    assert record in report["damaged"][record]
    assert "the next " in report["damaged"][record]
    assert {key for key, value in report.items() if value != before[key]} == {"damaged", *unknown}
    assert all(report[key] is None for key in unknown)
    assert file.read_bytes() == damage
    boot(updated, health_check=HEALTHY, now=NOW)
    assert status(updated)["damaged"] == ({record: report["damaged"][record]}
                                          if record == "time_floor.json" else {})  # fmt: skip


def test_status_names_a_damaged_slot_record_r33(updated: StateDir) -> None:
    """R29, R33: a slot record that cannot be read is shown damaged, not as an empty slot."""
    updated.slot_record_file("a").write_text('{"bogus": 1}')
    report = status(updated)
    assert report["slots"]["a"] is None
    assert "does not verify" in report["damaged"]["slot_a.json"]
    assert report["running_version"] == "1.1.0"


def test_every_event_type_is_classified_for_status_r37() -> None:
    """A new event type must be declared an update result or housekeeping, never by default."""
    assert frozenset(EventType) == UPDATE_RESULTS | HOUSEKEEPING
    assert not UPDATE_RESULTS & HOUSEKEEPING
