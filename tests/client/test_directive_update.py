"""A device following the server's directive (issue 11), against the in-memory repository.

Rules P3, P5 and P6 of ``client.directive`` and policy rule 8 as an update
and the agent apply them: an assignment installed, nothing without one, a
freeze that keeps the running firmware (and leaves the boot path alone), a
maintenance window that defers activation, and a poll without a valid answer.
Windows are placed around the device's own clock (P6: the window is
scheduling), never at a fixed date.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client import agent as agent_module
from client.agent import Agent, Schedule
from client.boot import Outcome as BootOutcome
from client.boot import boot
from client.directive import (
    NEWEST,
    STANDALONE,
    Assignment,
    Directive,
    Install,
    Selection,
    ServerMode,
    Window,
)
from client.events import EventType
from client.readiness import Guard, ReadyCheck
from client.state import StateDir
from client.update import Outcome, UpdateResult, update
from tests.client.helpers_state import UNHEALTHY
from tests.client.sim import Sim, event_types, provision, sha256

HOUR = timedelta(hours=1)


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    """A device running 1.0.0 (security version 1), committed."""
    provisioned = provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    assert update(provisioned, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(provisioned, health_check=None, now=datetime.now(UTC))
    assert provisioned.floor().installed_version == "1.0.0"
    return provisioned


def directive(
    sim: Sim,
    path: str | None = None,
    *,
    mode: ServerMode = ServerMode.NORMAL,
    install: Install = Install.ASSIGNED,
    window: Window | None = None,
) -> Directive:
    assignment = None
    if path is not None:
        version = path.rsplit("fw-", 1)[1].removesuffix(".bin")
        assignment = Assignment(3, path, sha256(sim.images[path]), version)
    return Directive(mode, Selection(install, assignment), window)


def window(opens_in: timedelta) -> Window:
    """A two-hour window opening ``opens_in`` from the device's clock (negative: open now)."""
    opens = datetime.now(UTC) + opens_in
    return Window(opens, opens + 2 * HOUR)


def new_events(device: StateDir, before: int) -> list[str]:
    return event_types(device)[before:]


def last_detail(device: StateDir, event: EventType) -> dict[str, object]:
    entry = device.events.last(event)
    assert entry is not None
    detail = entry["detail"]
    assert isinstance(detail, dict)
    return detail


# -- selection (policy rule 8) ----------------------------------------------------------


def test_a_registered_device_installs_the_assigned_release_not_the_newest(
    device: StateDir, sim: Sim
) -> None:
    assigned = sim.release("1.1.0", 1)
    sim.release("1.2.0", 1)
    result = update(device, sim.remote(), directive=directive(sim, assigned))
    assert result.outcome is Outcome.INSTALLED
    assert result.candidate is not None and result.candidate.path == assigned


def test_assigned_without_an_assignment_installs_nothing_newest_installs_the_newest(
    device: StateDir, sim: Sim
) -> None:
    """Issue 11: "assigned" is every fleet's default; "newest" is explicit (both shown)."""
    newest = sim.release("1.2.0", 1)
    held = update(device, sim.remote(), directive=directive(sim))
    assert (held.outcome, held.event) == (Outcome.UP_TO_DATE, EventType.NO_ASSIGNMENT)
    assert device.bootenv().pending is None
    assert not sim.fetched("/targets/pump-x100/" + sha256(sim.images[newest]))
    taken = update(device, sim.remote(), directive=directive(sim, install=Install.NEWEST))
    assert taken.outcome is Outcome.INSTALLED
    assert taken.candidate is not None and taken.candidate.path == newest


def test_an_assigned_older_release_is_refused_and_logged_with_its_reason(
    device: StateDir, sim: Sim
) -> None:
    older = sim.release("0.9.0", 1)
    before = len(event_types(device))
    result = update(device, sim.remote(), directive=directive(sim, older))
    assert (result.outcome, result.event) == (Outcome.REFUSED, EventType.ASSIGNMENT_REFUSED)
    assert new_events(device, before) == ["assignment_refused"]
    detail = last_detail(device, EventType.ASSIGNMENT_REFUSED)
    assert detail["reason"] == "not_newer"
    assert (detail["deployment"], detail["target"]) == (3, older)
    assert device.bootenv().pending is None


# -- freeze (P5) -------------------------------------------------------------------------


def test_a_freeze_refreshes_the_metadata_and_installs_nothing_r24(
    device: StateDir, sim: Sim
) -> None:
    path = sim.release("2.0.0", 2)
    sim.requests.clear()
    before = len(event_types(device))
    frozen = directive(sim, path, mode=ServerMode.FROZEN)
    result = update(device, sim.remote(), directive=frozen)
    assert (result.outcome, result.event, result.ok) == (
        Outcome.FROZEN,
        EventType.SERVER_FROZEN,
        True,
    )
    assert "metadata/timestamp.json" in "".join(sim.fetched("/metadata/"))
    assert not sim.fetched("/targets/"), "nothing is downloaded while frozen"
    assert new_events(device, before) == ["server_frozen"]
    assert last_detail(device, EventType.SERVER_FROZEN)["target"] == path
    env = device.bootenv()
    assert (env.active, env.pending) == ("b", None)
    assert device.floor().installed_version == "1.0.0"
    resumed = update(device, sim.remote(), directive=directive(sim, path))
    assert resumed.outcome is Outcome.INSTALLED


def test_a_freeze_neither_reboots_into_a_pending_slot_nor_stops_the_boot_path(
    device: StateDir, sim: Sim
) -> None:
    """P5: the agent does not activate the pending slot; a reboot still tries it and rolls back."""
    path = sim.release("2.0.0", 2)
    assert update(device, sim.remote(), directive=directive(sim, path)).outcome is (
        Outcome.INSTALLED
    )
    reboots: list[str] = []
    agent = Agent(
        device,
        sim.remote(),
        Schedule(interval=100),
        after_install=lambda: reboots.append("reboot"),
        wait=lambda _delay: False,
        poll=lambda: directive(sim, path, mode=ServerMode.FROZEN),
    )
    assert agent.run(max_polls=2).outcomes == [Outcome.FROZEN, Outcome.FROZEN]
    assert reboots == []
    assert last_detail(device, EventType.SERVER_FROZEN)["pending"] == "a"
    rebooted = boot(device, health_check=UNHEALTHY, now=datetime.now(UTC), timeout=10)
    assert rebooted.outcome is BootOutcome.RETRY
    assert device.bootenv().active == "b", "the health check still refuses the new firmware"


def test_a_freeze_still_reports_a_withdrawn_running_release_rule_7(
    device: StateDir, sim: Sim
) -> None:
    sim.repo.remove_target("pump-x100", "pump-x100/fw-1.0.0.bin", "alice", "bob")
    sim.publish()
    result = update(device, sim.remote(), directive=directive(sim, mode=ServerMode.FROZEN))
    assert result.event is EventType.RUNNING_NOT_LISTED
    assert {"running_not_listed", "server_frozen"} <= set(event_types(device))


# -- maintenance window (P6) -------------------------------------------------------------


def test_outside_the_window_the_firmware_is_verified_and_kept_then_activated_inside(
    device: StateDir, sim: Sim
) -> None:
    path = sim.release("2.0.0", 2)
    later = window(opens_in=3 * HOUR)
    deferred = update(device, sim.remote(), directive=directive(sim, path, window=later))
    assert (deferred.outcome, deferred.event, deferred.ok) == (
        Outcome.DEFERRED,
        EventType.DEFERRED_WINDOW,
        True,
    )
    assert device.bootenv().pending is None
    detail = last_detail(device, EventType.DEFERRED_WINDOW)
    assert (detail["opens"], detail["closes"]) == (
        later.opens.isoformat(),
        later.closes.isoformat(),
    )
    assert (detail["slot"], detail["target"], detail["deployment"]) == ("a", path, 3)
    downloads = len(sim.fetched("/targets/"))
    now_open = directive(sim, path, window=window(opens_in=-HOUR))
    installed = update(device, sim.remote(), directive=now_open)
    assert installed.outcome is Outcome.INSTALLED
    assert device.bootenv().pending == "a"
    assert len(sim.fetched("/targets/")) == downloads, "the kept bytes are hashed, not fetched"


def test_a_pending_slot_is_not_rebooted_into_outside_the_window(device: StateDir, sim: Sim) -> None:
    path = sim.release("2.0.0", 2)
    assert update(device, sim.remote(), directive=directive(sim, path)).outcome is (
        Outcome.INSTALLED
    )
    reboots: list[str] = []
    closed = directive(sim, path, window=window(opens_in=HOUR))

    def agent(poll: Callable[[], Directive]) -> Agent:
        return Agent(
            device,
            sim.remote(),
            Schedule(interval=100),
            after_install=lambda: reboots.append("reboot"),
            wait=lambda _delay: False,
            poll=poll,
        )

    assert agent(lambda: closed).run(max_polls=1).outcomes == [Outcome.DEFERRED]
    assert reboots == []
    assert event_types(device)[-1] == "deferred_window"
    opened = directive(sim, path, window=window(opens_in=-HOUR))
    assert agent(lambda: opened).run(max_polls=1).outcomes == [Outcome.PENDING_REBOOT]
    assert reboots == ["reboot"]


def test_inside_the_window_the_clinical_use_guard_still_decides_r52(
    device: StateDir, sim: Sim
) -> None:
    path = sim.release("2.0.0", 2)
    in_use = Guard(ReadyCheck((sys.executable, "-c", "raise SystemExit(1)")))
    inside = directive(sim, path, window=window(opens_in=-HOUR))
    result = update(device, sim.remote(), directive=inside, guard=in_use)
    assert (result.outcome, result.event) == (Outcome.DEFERRED, EventType.DEFERRED_IN_USE)


# -- no valid answer (P3) ----------------------------------------------------------------


def test_a_registered_device_without_a_valid_answer_installs_nothing_and_backs_off(
    device: StateDir, sim: Sim
) -> None:
    sim.release("2.0.0", 2)
    sim.requests.clear()

    def unanswered() -> Directive:
        return Directive.no_answer("the server refused it (503): maintenance")

    waits: list[float] = []
    agent = Agent(
        device,
        sim.remote(),
        Schedule(interval=1000, backoff=10),
        rng=random.Random(1),  # noqa: S311 - jitter, not a secret
        wait=lambda delay: waits.append(delay) or False,
        poll=unanswered,
    )
    report = agent.run(max_polls=2)
    assert report.outcomes == [Outcome.FAILED, Outcome.FAILED]
    assert report.last is not None and report.last.event is EventType.POLL_UNANSWERED
    assert waits and waits[0] <= 10, "a server without an answer is backed off from"
    assert sim.fetched("/metadata/"), "the metadata is still refreshed"
    assert not sim.fetched("/targets/")
    assert event_types(device)[-1] == "poll_unanswered"
    assert "maintenance" in str(device.events.last(EventType.POLL_UNANSWERED))
    assert device.bootenv().pending is None


def test_the_new_event_types_back_off_only_for_an_unanswered_poll() -> None:
    assert EventType.POLL_UNANSWERED in agent_module.BACKOFF
    for event in (
        EventType.ASSIGNMENT_REFUSED,
        EventType.NO_ASSIGNMENT,
        EventType.SERVER_FROZEN,
        EventType.DEFERRED_WINDOW,
    ):
        assert event in agent_module.NORMAL_INTERVAL


def test_an_unregistered_device_still_takes_the_newest(device: StateDir, sim: Sim) -> None:
    newest = sim.release("1.2.0", 1)
    result: UpdateResult = update(device, sim.remote(), directive=STANDALONE)
    assert STANDALONE.selection == NEWEST
    assert result.candidate is not None and result.candidate.path == newest
