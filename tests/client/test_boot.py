"""The trial boot: a firmware runs for good only after its health check passes.

Threats: a firmware that does not come up (failed or hanging health check,
crash during the trial), a reinstall loop of that firmware, and the floor
(R25) going down with a fall-back.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace

import pytest

from client.boot import Outcome, boot, run_health_check
from client.errors import InstallError
from client.events import EventType
from client.slots import open_inactive
from client.state import BootEnv, Floor, StateDir
from tests.client.helpers_state import (
    HANGING,
    HEALTHY,
    NOW,
    UNHEALTHY,
    Release,
    SignedLine,
    assert_consistent,
    corrupt,
    event_types,
    install,
)


def wipe_cache(state: StateDir) -> None:
    """The TUF metadata cache is lost (or wiped by an attacker)."""
    state.metadata_dir.mkdir(parents=True, exist_ok=True)
    (state.metadata_dir / "root.json").write_text("{}")
    shutil.rmtree(state.metadata_dir)


def test_plain_boot_verifies_and_runs_the_active_slot(state: StateDir) -> None:
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.BOOTED)
    assert event_types(state) == ["booted"]


def test_healthy_firmware_is_committed_and_raises_the_floor(
    state: StateDir, update: Release
) -> None:
    install(state, update)
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("b", Outcome.COMMITTED)
    assert state.bootenv() == BootEnv(active="b", previous="a")
    assert state.floor() == Floor(2, "1.1.0")
    assert event_types(state) == ["installed", "updated"]
    assert boot(state, health_check=UNHEALTHY, now=NOW).outcome is Outcome.BOOTED
    assert_consistent(state)


def test_no_health_check_configured_counts_as_healthy(state: StateDir, update: Release) -> None:
    install(state, update)
    assert boot(state, health_check=None, now=NOW).outcome is Outcome.COMMITTED


def test_failed_health_check_falls_back_when_tries_run_out(
    state: StateDir, update: Release
) -> None:
    install(state, update, tries=2)
    first = boot(state, health_check=UNHEALTHY, now=NOW)
    assert (first.slot, first.outcome) == ("b", Outcome.RETRY)
    assert state.bootenv().tries_left == 1
    second = boot(state, health_check=UNHEALTHY, now=NOW)
    assert (second.slot, second.outcome) == ("a", Outcome.ROLLED_BACK)
    assert "exit status 1" in second.message
    assert state.bootenv() == BootEnv(active="a")
    assert state.floor() == Floor(1, "1.0.0")
    record = state.slot_record("b")
    assert record is not None and record.failed
    assert event_types(state) == [
        "installed",
        "health_check_failed",
        "health_check_failed",
        "rolled_back",
        "booted",
    ]
    assert_consistent(state)


def test_no_reinstall_loop_after_a_fall_back(state: StateDir, update: Release) -> None:
    install(state, update, tries=1)
    assert boot(state, health_check=UNHEALTHY, now=NOW).outcome is Outcome.ROLLED_BACK
    with pytest.raises(InstallError) as caught:
        open_inactive(state, update.target)
    assert caught.value.event is EventType.KNOWN_BAD
    wipe_cache(state)
    assert update.record.sha256 in state.known_bad()


def test_failed_slot_is_never_booted_again(state: StateDir, update: Release) -> None:
    """Even when the running slot then decays, the failed one is not a fall-back."""
    install(state, update, tries=1)
    boot(state, health_check=UNHEALTHY, now=NOW)
    state.slot_image("a").write_bytes(b"decayed")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.FAILSAFE)


def test_hanging_health_check_is_a_failure(state: StateDir, update: Release) -> None:
    install(state, update, tries=1)
    result = boot(state, health_check=HANGING, now=NOW, timeout=0.5)
    assert result.outcome is Outcome.ROLLED_BACK
    assert "no answer within 0.5 s" in result.message


def test_missing_health_check_program_is_a_failure(state: StateDir, update: Release) -> None:
    install(state, update, tries=1)
    result = boot(state, health_check=["/nonexistent/check"], now=NOW)
    assert result.outcome is Outcome.ROLLED_BACK
    assert "cannot run" in result.message


def test_health_check_learns_what_it_checks(state: StateDir, update: Release) -> None:
    check = (
        "import os, sys; sys.exit(0 if os.environ['FWCLIENT_VERSION'] == '1.1.0'"
        " and os.environ['FWCLIENT_SLOT'] == 'b' and os.path.isfile(os.environ['FWCLIENT_IMAGE'])"
        " else 3)"
    )
    install(state, update)
    health = run_health_check(
        [sys.executable, "-c", check], state=state, slot="b", record=update.record, timeout=30
    )
    assert health.healthy, health.detail


def test_crash_during_the_trial_counts_as_a_failed_try(
    state: StateDir, update: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter goes down before the firmware runs: a firmware that kills the
    device (here: the health check never returns) cannot loop forever."""
    install(state, update, tries=2)

    def power_cut(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for the device dying mid-trial

    monkeypatch.setattr("client.boot.run_health_check", power_cut)
    for _ in range(2):
        with pytest.raises(KeyboardInterrupt):
            boot(state, health_check=HEALTHY, now=NOW)
    monkeypatch.undo()
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.ROLLED_BACK)
    assert "tries ran out" in result.message


def test_tampered_pending_slot_is_never_started(state: StateDir, update: Release) -> None:
    install(state, update)
    state.slot_image("b").write_bytes(update.image[:-1] + b"\x00")
    result = boot(state, health_check=HEALTHY, now=NOW)
    assert (result.slot, result.outcome) == ("a", Outcome.ROLLED_BACK)
    assert event_types(state)[1:] == ["bad_hash", "rolled_back", "booted"]
    assert update.record.sha256 not in state.known_bad()  # storage, not the firmware, failed


def test_storage_decay_of_a_pending_slot_caught_at_boot_does_not_fail_the_next_install_r29(
    state: StateDir, update: Release
) -> None:
    """R29: a byte flipped in a pending slot is caught at boot; the next install rewrites it.

    The slot is still sealed for the same target, but its bytes are not the
    record's: resuming from its end would fail ``commit`` once with a
    spurious ``bad_hash``.
    """
    install(state, update)
    corrupt(state, "b")
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.ROLLED_BACK
    assert install(state, update) == "b"
    assert state.slot_image("b").read_bytes() == update.image
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.COMMITTED
    assert "bad_hash" not in event_types(state)[-3:]


def test_floor_is_never_lowered(state: StateDir, line: SignedLine) -> None:
    """A validly signed firmware with a lower security version (a recovery
    image, say) may run, but the floor stays where it was."""
    state.write_floor(Floor(5, "1.0.0"))
    older = line.release("0.9.0", 1)
    install(state, older)
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.COMMITTED
    assert state.floor() == Floor(5, "0.9.0")
    with pytest.raises(ValueError, match="never lowered"):
        state.write_floor(Floor(4, "0.9.0"))


def test_floor_lost_in_a_power_cut_after_commit_is_raised_at_next_boot(
    state: StateDir, update: Release
) -> None:
    install(state, update)
    marked = state.slot_record("b")
    assert marked is not None
    state.write_slot_record("b", replace(marked, committed=True))  # the commit's mark,
    state.write_bootenv(BootEnv(active="b", previous="a"))  # its switch, then a power cut
    assert state.floor().security_version == 1
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.BOOTED
    assert state.floor() == Floor(2, "1.1.0")


def test_cache_wipe_does_not_reset_the_floors(state: StateDir, update: Release) -> None:
    install(state, update)
    boot(state, health_check=HEALTHY, now=NOW)
    state.raise_time_floor(NOW)
    wipe_cache(state)
    assert state.floor() == Floor(2, "1.1.0")
    assert state.time_floor() == NOW


def test_empty_health_check_command_is_a_configuration_error(state: StateDir) -> None:
    with pytest.raises(ValueError, match="empty health check"):
        boot(state, health_check=[], now=NOW)
    assert event_types(state) == []
