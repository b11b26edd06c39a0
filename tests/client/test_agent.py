"""The long-running agent: jittered polls, capped exponential back-off, clean stop,
the state directory held for each poll and only then."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from client import agent as agent_module
from client.agent import Agent, Schedule
from client.boot import boot
from client.events import EventType
from client.state import StateBusyError, StateDir
from client.update import Outcome, UpdateResult
from repo_metadata.authorization import Authorization, SignedAuthorization, sign
from tests.client.sim import MODEL, Sim, event_types, provision, sha256


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


def seeded(seed: int) -> random.Random:
    """A reproducible jitter source (jitter spreads load; it is not a secret)."""
    return random.Random(seed)  # noqa: S311


class Waits:
    """Records the agent's waits instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, delay: float) -> bool:
        self.delays.append(delay)
        return False


def test_polls_are_spread_around_the_interval() -> None:
    schedule = Schedule(interval=100, jitter=0.2)
    rng = seeded(7)
    delays = [schedule.delay(0, rng) for _ in range(200)]
    assert all(80 <= d <= 120 for d in delays)
    assert max(delays) - min(delays) > 20, "not all devices poll in step"


def test_back_off_doubles_per_failure_up_to_the_cap() -> None:
    schedule = Schedule(interval=100, backoff=10, backoff_max=60)
    rng = seeded(1)
    for failures, ceiling in ((1, 10), (2, 20), (3, 40), (4, 60), (50, 60)):
        delay = schedule.delay(failures, rng)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(
    "settings",
    [{"interval": 0}, {"jitter": 1.0}, {"jitter": -0.1}, {"backoff": 0}, {"backoff_max": 1.0}],
)
def test_a_nonsensical_schedule_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Schedule(**settings)


def test_the_agent_installs_then_reboots_then_finds_nothing_new(device: StateDir, sim: Sim) -> None:
    sim.release("1.0.0", 1)
    waits = Waits()
    agent = Agent(
        device,
        sim.remote(),
        Schedule(interval=100, jitter=0.1),
        after_install=lambda: boot(device, health_check=None, now=datetime.now(UTC)),
        rng=seeded(3),
        wait=waits,
    )
    report = agent.run(max_polls=2)
    assert report.outcomes == [Outcome.INSTALLED, Outcome.UP_TO_DATE]
    assert len(waits.delays) == 1 and 90 <= waits.delays[0] <= 110
    assert event_types(device) == ["installed", "updated", "no_update"]


def test_an_unreachable_server_is_polled_with_growing_back_off_r52(
    device: StateDir, sim: Sim
) -> None:
    sim.down = True
    waits = Waits()
    agent = Agent(
        device,
        sim.remote(),
        Schedule(interval=1000, backoff=10, backoff_max=40),
        rng=seeded(5),
        wait=waits,
    )
    report = agent.run(max_polls=5)
    assert report.failures_in_a_row == 5
    for delay, ceiling in zip(waits.delays, (10, 20, 40, 40), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    sim.down = False
    sim.release("1.0.0", 1)
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]


def test_a_policy_refusal_keeps_the_normal_interval(device: StateDir, sim: Sim) -> None:
    sim.release("2.0.0", 1, models=("pump-x200",), path="pump-x100/fw-2.0.0.bin")
    waits = Waits()
    agent = Agent(
        device, sim.remote(), Schedule(interval=100, backoff=1), rng=seeded(2), wait=waits
    )
    report = agent.run(max_polls=2)
    assert report.failures_in_a_row == 0
    assert all(d >= 90 for d in waits.delays)


def test_every_event_type_backs_off_or_keeps_the_interval_r52() -> None:
    """A new event type must be declared a back-off or not, never by default."""
    assert frozenset(EventType) == agent_module.BACKOFF | agent_module.NORMAL_INTERVAL
    assert not agent_module.BACKOFF & agent_module.NORMAL_INTERVAL


def test_a_release_too_large_for_the_slot_keeps_the_normal_interval_r52(
    tmp_path: Path, sim: Sim
) -> None:
    """R52: ``insufficient_space`` is the device's own limit, not a server to spare."""
    device = provision(tmp_path / "small", sim, slot_capacity=1000)
    sim.release("1.0.0", 1)
    waits = Waits()
    agent = Agent(
        device, sim.remote(), Schedule(interval=100, backoff=1), rng=seeded(4), wait=waits
    )
    report = agent.run(max_polls=3)
    assert report.last is not None and report.last.event is EventType.INSUFFICIENT_SPACE
    assert report.failures_in_a_row == 0
    assert len(waits.delays) == 2 and all(d >= 90 for d in waits.delays)


def test_a_withdrawn_running_release_is_replaced_on_the_normal_schedule_r52(
    device: StateDir, sim: Sim
) -> None:
    """R52, withdrawal: ``running_not_listed`` polls at the interval, not a 6-hour back-off.

    The replacement, signed after the withdrawal, is installed at the next
    ordinary poll.
    """
    withdrawn = sim.release("1.0.0", 1)
    waits = Waits()
    agent = Agent(
        device,
        sim.remote(),
        Schedule(interval=100, backoff=1),
        after_install=lambda: boot(device, health_check=None, now=datetime.now(UTC)),
        rng=seeded(6),
        wait=waits,
    )
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]
    sim.repo.remove_target(MODEL, withdrawn, "alice", "bob")
    del sim.images[withdrawn]
    sim.publish()
    report = agent.run(max_polls=2)
    assert report.last is not None and report.last.event is EventType.RUNNING_NOT_LISTED
    assert report.failures_in_a_row == 0
    assert all(d >= 90 for d in waits.delays)
    sim.release("1.0.1", 1)
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]
    assert event_types(device)[-4:] == [
        "running_not_listed", "running_not_listed", "installed", "updated"
    ]  # fmt: skip


def test_stop_ends_the_loop_before_the_next_poll(device: StateDir, sim: Sim) -> None:
    agents: list[Agent] = []

    def wait(_delay: float) -> bool:
        agents[0].stop()  # SIGTERM arrives while the agent waits
        return True

    agent = Agent(device, sim.remote(), Schedule(interval=100), wait=wait)
    agents.append(agent)
    report = agent.run()
    assert report.polls == 1
    assert agent.stopped


def test_the_agent_reuses_the_one_remote_it_is_given(device: StateDir, sim: Sim) -> None:
    remote = sim.remote()
    waits = Waits()
    agent = Agent(device, remote, Schedule(interval=10), wait=waits)
    agent.run(max_polls=3)
    assert agent.remote is remote
    assert len(sim.fetched("/metadata/timestamp.json")) == 3


def test_an_unforeseen_error_is_logged_and_the_agent_keeps_polling(
    device: StateDir, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = agent_module.update

    def flaky(*args: Any, **kwargs: Any) -> UpdateResult:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(agent_module, "update", flaky)
    sim.release("1.0.0", 1)
    waits = Waits()
    report = Agent(device, sim.remote(), Schedule(interval=10), wait=waits).run(max_polls=2)
    assert report.outcomes == [Outcome.FAILED, Outcome.INSTALLED]
    assert event_types(device) == ["error", "installed"]


def test_the_agent_holds_the_state_only_while_it_polls(
    device: StateDir, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between polls, 'fwclient boot' or 'verify' may run; during one, nothing else writes."""
    other = StateDir(device.root, lock_wait=0)

    def free() -> bool:
        try:
            with other.lock():
                return True
        except StateBusyError:
            return False

    during: list[bool] = []
    real = agent_module.update

    def observed(*args: Any, **kwargs: Any) -> UpdateResult:
        during.append(free())
        return real(*args, **kwargs)

    monkeypatch.setattr(agent_module, "update", observed)
    between: list[bool] = []
    agent = Agent(
        device, sim.remote(), Schedule(interval=10), wait=lambda _: between.append(free())
    )
    agent.run(max_polls=2)
    assert (during, between) == ([False, False], [True])


def test_a_poll_while_another_writer_holds_the_state_backs_off_and_writes_nothing(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    waits = Waits()
    agent = Agent(
        StateDir(device.root, lock_wait=0),
        sim.remote(),
        Schedule(interval=1000, backoff=10),
        rng=seeded(4),
        wait=waits,
    )
    with device.lock():  # 'fwclient boot', say, in another process
        report = agent.run(max_polls=1)
    assert (report.outcomes, report.failures_in_a_row) == ([Outcome.FAILED], 1)
    assert report.last is not None and "is in use by pid" in report.last.message
    assert (event_types(device), sim.requests) == ([], [])
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]


def test_the_agent_waits_for_an_authorization_then_installs_with_the_one_picked_up_r58(
    device: StateDir, sim: Sim
) -> None:
    """Flow 4: each poll picks up what the server holds; the release waits until one allows it."""
    key = CryptoSigner.generate_ed25519()
    sim.trust_authorization_key(key)
    path = sim.release("2.0.0", 2, requires_authorization=True)
    held: list[SignedAuthorization] = []
    agent = Agent(
        device, sim.remote(), Schedule(interval=10), wait=Waits(), pickup=lambda: list(held)
    )
    assert agent.run(max_polls=1).outcomes == [Outcome.WAITING]
    issued = datetime.now(UTC).replace(microsecond=0)
    held.append(
        sign(
            Authorization(
                device_id=device.identity().device_id,
                target_path=path,
                sha256=sha256(sim.images[path]),
                nonce="3e" * 32,
                issued=issued,
                expires=issued + timedelta(minutes=15),
                technician="tom",
            ),
            key,
        )
    )
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]
    assert event_types(device) == [
        "awaiting_authorization",
        "authorization_accepted",
        "authorization_used",
        "installed",
    ]
