"""The clinical-use guard (R52: emergencies come first), rules G1 to G4 of ``client.readiness``.

Threat: a device in clinical use (a pump mid-infusion) rebooting into an
update, by any path: an install, a trial boot, the agent, failsafe mode's
recovery. And its mirror: a guard that fails open (a ready-check that hangs
or is missing must not count as "idle").
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from client.boot import Outcome as BootOutcome
from client.boot import boot, enter_failsafe
from client.directive import STANDALONE
from client.events import EventType
from client.integrity import verify_sealed
from client.readiness import (
    Activation,
    Guard,
    InUse,
    Ready,
    ReadyCheck,
    ask,
    may_activate,
)
from client.state import BootEnv, Mode, StateDir
from client.update import Outcome
from client.update import update as run_update
from tests.client.helpers_state import NOW, Release, assert_consistent, corrupt, install
from tests.client.helpers_state import event_types as events_of
from tests.client.sim import Sim, event_types, provision

#: Exits 1 ("in use") while ``<dir>/<FWCLIENT_ACTIVATION>`` or ``<dir>/all`` exists.
_SCRIPT = (
    "import os, sys; d, a = sys.argv[1], os.environ['FWCLIENT_ACTIVATION'];"
    " sys.exit(1 if os.path.exists(os.path.join(d, a)) or os.path.exists(os.path.join(d, 'all'))"
    " else 0)"
)
HANGING = ReadyCheck((sys.executable, "-c", "import time; time.sleep(30)"), timeout=0.3)
MISSING = ReadyCheck(("/nonexistent/pump-ready-check",))


class Clinic:
    """The device's clinical activity, as its ready-check sees it (files in a directory)."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.check = ReadyCheck((sys.executable, "-c", _SCRIPT, str(path)))

    def busy(self, activation: str = "all") -> None:
        (self.path / activation).touch()

    def idle(self) -> None:
        for file in self.path.iterdir():
            file.unlink()

    def guard(self, *, ignore_for_recovery: bool = False) -> Guard:
        return Guard(self.check, ignore_for_recovery=ignore_for_recovery)


@pytest.fixture
def clinic(tmp_path: Path) -> Clinic:
    return Clinic(tmp_path / "clinic")


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


# -- the decision, pure (G2, G3) -------------------------------------------------------


def test_an_idle_device_may_activate_r52() -> None:
    decision = may_activate(Ready("idle"), recovery=False, ignore_ready_check=False)
    assert (decision.proceed, decision.overridden) == (True, False)


def test_a_device_in_use_defers_every_activation_even_a_recovery_r52() -> None:
    for recovery in (False, True):
        decision = may_activate(InUse("infusing"), recovery=recovery, ignore_ready_check=False)
        assert not decision.proceed
        assert "infusing" in decision.detail


def test_only_a_recovery_may_ignore_the_ready_check_and_says_so_r52() -> None:
    """G3: the one bypass is explicit, for a signed recovery, and its words are logged."""
    refused = may_activate(InUse("infusing"), recovery=False, ignore_ready_check=True)
    assert not refused.proceed
    assert "recovery only" in refused.detail
    allowed = may_activate(InUse("infusing"), recovery=True, ignore_ready_check=True)
    assert (allowed.proceed, allowed.overridden) == (True, True)
    assert "infusing" in allowed.detail and "--ignore-ready-check" in allowed.detail


# -- the command (G1, G4) --------------------------------------------------------------


def test_exit_status_zero_is_idle_and_anything_else_in_use(clinic: Clinic) -> None:
    assert isinstance(ask(clinic.check, activation=Activation.INSTALL, version="1"), Ready)
    clinic.busy(Activation.TRIAL_BOOT)
    assert isinstance(ask(clinic.check, activation=Activation.INSTALL, version="1"), Ready)
    answer = ask(clinic.check, activation=Activation.TRIAL_BOOT, version="1")
    assert answer == InUse("ready-check: exit status 1")


def test_a_hanging_ready_check_counts_as_in_use_fail_safe() -> None:
    answer = ask(HANGING, activation=Activation.INSTALL, version="1")
    assert answer == InUse("ready-check: no answer within 0.3 s")


def test_a_missing_ready_check_counts_as_in_use_fail_safe() -> None:
    answer = ask(MISSING, activation=Activation.INSTALL, version="1")
    assert isinstance(answer, InUse)
    assert "cannot run /nonexistent/pump-ready-check" in answer.reason


def test_no_ready_check_configured_lets_activations_happen() -> None:
    assert ask(None, activation=Activation.INSTALL, version="1") == Ready(
        "no ready-check configured"
    )


@pytest.mark.parametrize(
    "settings", [{"argv": ()}, {"argv": ("",)}, {"argv": ("x",), "timeout": 0}]
)
def test_a_nonsensical_ready_check_is_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        ReadyCheck(**settings)  # type: ignore[arg-type]


# -- update: before the slot is marked pending -----------------------------------------


def test_an_update_on_a_device_in_use_keeps_the_verified_slot_and_activates_nothing_r52(
    device: StateDir, sim: Sim, clinic: Clinic
) -> None:
    path = sim.release("1.0.0", 1)
    clinic.busy()
    result = run_update(device, sim.remote(), guard=clinic.guard(), directive=STANDALONE)
    assert (result.outcome, result.event, result.ok) == (
        Outcome.DEFERRED,
        EventType.DEFERRED_IN_USE,
        True,
    )
    assert result.candidate is not None and result.candidate.path == path
    assert device.bootenv().pending is None
    assert verify_sealed(device, "b").ok  # verified bytes kept, sealed, not bootable as is
    assert device.slot_image("b").read_bytes() == sim.images[path]
    assert event_types(device) == ["deferred_in_use"]
    entry = device.events.last(EventType.DEFERRED_IN_USE)
    assert entry is not None
    assert (entry["detail"]["target"], entry["detail"]["version"]) == (path, "1.0.0")


def test_once_idle_the_deferred_update_installs_without_a_second_download_r52(
    device: StateDir, sim: Sim, clinic: Clinic
) -> None:
    sim.release("1.0.0", 1)
    clinic.busy()
    run_update(device, sim.remote(), guard=clinic.guard(), directive=STANDALONE)
    clinic.idle()
    result = run_update(device, sim.remote(), guard=clinic.guard(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert device.bootenv().pending == "b"
    assert len(sim.fetched("/targets/")) == 1, "the target was downloaded again"
    assert event_types(device) == ["deferred_in_use", "installed"]
    installed = device.events.last(EventType.INSTALLED)
    assert installed is not None
    assert "idle" in installed["detail"]["ready_check"]


@pytest.mark.parametrize("check", [HANGING, MISSING], ids=["hanging", "missing"])
def test_an_update_with_a_ready_check_that_hangs_or_is_missing_is_deferred(
    device: StateDir, sim: Sim, check: ReadyCheck
) -> None:
    sim.release("1.0.0", 1)
    result = run_update(device, sim.remote(), guard=Guard(check), directive=STANDALONE)
    assert result.outcome is Outcome.DEFERRED
    assert device.bootenv().pending is None


def test_a_recovery_in_failsafe_mode_respects_the_guard_r52(
    device: StateDir, sim: Sim, clinic: Clinic
) -> None:
    sim.release("1.0.0", 1)
    device.write_bootenv(device.bootenv().with_changes(mode=Mode.FAILSAFE))
    clinic.busy()
    deferred = run_update(
        device, sim.remote(), recovery=True, guard=clinic.guard(), directive=STANDALONE
    )
    assert deferred.outcome is Outcome.DEFERRED
    assert device.bootenv().pending is None


def test_a_person_may_install_a_recovery_on_a_device_in_use_and_it_is_logged_r52(
    device: StateDir, sim: Sim, clinic: Clinic
) -> None:
    sim.release("1.0.0", 1)
    device.write_bootenv(device.bootenv().with_changes(mode=Mode.FAILSAFE))
    clinic.busy()
    guard = clinic.guard(ignore_for_recovery=True)
    result = run_update(device, sim.remote(), recovery=True, guard=guard, directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert device.bootenv().recovery
    installed = device.events.last(EventType.INSTALLED)
    assert installed is not None
    assert "ignored for a signed recovery" in installed["detail"]["ready_check"]


def test_the_override_does_not_open_an_ordinary_update_r52(
    device: StateDir, sim: Sim, clinic: Clinic
) -> None:
    sim.release("1.0.0", 1)
    clinic.busy()
    result = run_update(
        device, sim.remote(), guard=clinic.guard(ignore_for_recovery=True), directive=STANDALONE
    )
    assert result.outcome is Outcome.DEFERRED
    assert device.bootenv().pending is None


# -- boot: before a trial boot starts --------------------------------------------------


def test_a_boot_in_use_runs_the_active_slot_and_keeps_the_pending_one_without_a_try_r52(
    state: StateDir, update: Release, clinic: Clinic
) -> None:
    install(state, update)
    clinic.busy(Activation.TRIAL_BOOT)
    result = boot(state, health_check=None, now=NOW, guard=clinic.guard())
    assert (result.slot, result.outcome) == ("a", BootOutcome.DEFERRED)
    assert state.bootenv() == BootEnv(active="a", pending="b", tries_left=3, previous="a")
    assert events_of(state)[-2:] == ["deferred_in_use", "booted"]
    assert_consistent(state)
    clinic.idle()
    again = boot(state, health_check=None, now=NOW, guard=clinic.guard())
    assert (again.slot, again.outcome) == ("b", BootOutcome.COMMITTED)


@pytest.mark.parametrize("check", [HANGING, MISSING], ids=["hanging", "missing"])
def test_a_boot_with_a_ready_check_that_hangs_or_is_missing_is_deferred(
    state: StateDir, update: Release, check: ReadyCheck
) -> None:
    install(state, update)
    result = boot(state, health_check=None, now=NOW, guard=Guard(check))
    assert result.outcome is BootOutcome.DEFERRED
    assert state.bootenv().pending == "b"


def test_a_pending_recovery_in_failsafe_mode_waits_while_in_use_r52(
    state: StateDir, update: Release, clinic: Clinic
) -> None:
    enter_failsafe(state, now=NOW, reason="test")
    install(state, update, recovery=True)
    clinic.busy()
    result = boot(state, health_check=None, now=NOW, guard=clinic.guard())
    assert result.outcome is BootOutcome.DEFERRED
    env = state.bootenv()
    assert (env.mode, env.pending, env.tries_left, env.recovery) == (Mode.FAILSAFE, "b", 3, True)


def test_a_person_may_boot_a_pending_recovery_on_a_device_in_use_and_it_is_logged_r52(
    state: StateDir, update: Release, clinic: Clinic
) -> None:
    enter_failsafe(state, now=NOW, reason="test")
    install(state, update, recovery=True)
    clinic.busy()
    result = boot(state, health_check=None, now=NOW, guard=clinic.guard(ignore_for_recovery=True))
    assert result.outcome is BootOutcome.COMMITTED
    assert state.bootenv().mode is Mode.NORMAL
    booted = state.events.last(EventType.BOOTED)
    assert booted is not None
    assert "ignored for a signed recovery" in booted["detail"]["ready_check"]


def test_the_override_does_not_start_an_ordinary_trial_boot_r52(
    state: StateDir, update: Release, clinic: Clinic
) -> None:
    install(state, update)
    clinic.busy()
    result = boot(state, health_check=None, now=NOW, guard=clinic.guard(ignore_for_recovery=True))
    assert result.outcome is BootOutcome.DEFERRED
    assert "recovery only" in result.message


def test_a_boot_whose_running_firmware_does_not_verify_runs_the_verified_one_even_in_use(
    state: StateDir, update: Release, clinic: Clinic
) -> None:
    """R29 over R52 (client.boot's rules): the firmware in use failed; a verified one runs.

    The guard cannot keep running what runs when it does not verify, and
    failsafe mode would keep running exactly that; the pending firmware runs
    on trial (one try), as at any boot whose active slot does not verify.
    """
    install(state, update)
    corrupt(state, "a")
    clinic.busy()
    result = boot(state, health_check=None, now=NOW, guard=clinic.guard())
    assert (result.slot, result.outcome) == ("b", BootOutcome.COMMITTED)
    assert "deferred_in_use" in events_of(state)
