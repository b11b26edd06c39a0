"""Idle polls: what a long-running client asks when nothing changed, and when it must ask more.

One ``Remote`` is reused for every poll, as ``fwclient run`` does; its
``PollMemory`` runs on a clock the test moves. ``EtagSim`` answers like the
update server: a strong ETag from the content's SHA-256, ``304`` on a match.
The plain ``Sim`` has no validators, so the client compares bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client.boot import boot
from client.directive import STANDALONE
from client.fetcher import Fetched
from client.state import StateDir
from client.update import ROOT_PROBE_MAX_AGE, Outcome, PollMemory, Remote, UpdateResult, update
from tests.client.sim import BASE, Sim, event_types, provision, sha256
from tests.clocks import FakeClock

TIMESTAMP = "/metadata/timestamp.json"
ROOT_PROBE = "/metadata/2.root.json"


class EtagSim(Sim):
    """The mirror with the update server's validators."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.not_modified = 0

    def fetch_unless(self, url: str, etag: str | None, *, max_length: int) -> Fetched:
        path = url.removeprefix(BASE)
        current = self.override.get(path, self.files.get(path))
        tag = None if current is None else f'"{sha256(current)}"'
        if etag is not None and etag == tag and not self.down:
            self.requests.append((path, 0))
            self.not_modified += 1
            return Fetched(None, etag)
        return Fetched(self.download_bytes(url, max_length), tag)


@pytest.fixture
def sim(tmp_path: Path) -> EtagSim:
    return EtagSim(tmp_path / "sim")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def remote(sim: Sim, clock: FakeClock) -> Remote:
    return Remote(BASE, sim, PollMemory(clock=clock.monotonic))


@pytest.fixture
def device(tmp_path: Path, sim: Sim, remote: Remote) -> StateDir:
    """A device running 1.0.0, after one full poll on ``remote``."""
    state = provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    assert update(state, remote, directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    assert poll(state, remote, sim).outcome is Outcome.UP_TO_DATE
    return state


def poll(state: StateDir, remote: Remote, sim: Sim) -> UpdateResult:
    """One poll, with only its own requests left in ``sim.requests``."""
    sim.requests.clear()
    return update(state, remote, directive=STANDALONE)


def refused_by_a_full_refresh(device: StateDir, remote: Remote, sim: Sim, event: str) -> None:
    """The poll runs the whole TUF workflow, root probe first, and refuses with ``event``."""
    result = poll(device, remote, sim)
    assert (result.outcome, result.event) == (Outcome.REFUSED, event)
    assert sim.fetched() == [TIMESTAMP, ROOT_PROBE]


def test_idle_poll_is_one_conditional_request(
    device: StateDir, remote: Remote, sim: EtagSim
) -> None:
    before = sim.not_modified
    result = poll(device, remote, sim)
    assert result.outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == [TIMESTAMP]
    assert sim.not_modified == before + 1, "answered 304: no body"
    assert event_types(device)[-1] == "no_update"


def test_first_poll_of_a_remote_is_a_full_refresh_root_probe_first(
    tmp_path: Path, sim: Sim, remote: Remote
) -> None:
    state = provision(tmp_path / "device", sim)
    assert poll(state, remote, sim).outcome is Outcome.UP_TO_DATE
    assert sim.fetched()[:2] == [ROOT_PROBE, TIMESTAMP]
    assert sim.fetched().count(TIMESTAMP) == 1


def test_without_etags_an_unchanged_body_is_still_one_request(tmp_path: Path) -> None:
    sim = Sim(tmp_path / "sim")
    state = provision(tmp_path / "device", sim)
    remote = sim.remote()
    assert poll(state, remote, sim).outcome is Outcome.UP_TO_DATE
    assert poll(state, remote, sim).outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == [TIMESTAMP]


def test_changed_timestamp_runs_full_refresh_with_root_probe(
    device: StateDir, remote: Remote, sim: Sim
) -> None:
    path = sim.release("1.1.0", 1)
    result = poll(device, remote, sim)
    assert result.outcome is Outcome.INSTALLED
    fetched = sim.fetched()
    assert fetched[:2] == [TIMESTAMP, ROOT_PROBE], "root first, as TUF requires"
    assert fetched.count(TIMESTAMP) == 1, "the timestamp just fetched is handed to ngclient"
    assert sim.target_url(path) in fetched


def test_stale_last_refresh_forces_root_probe(
    device: StateDir, remote: Remote, sim: Sim, clock: FakeClock
) -> None:
    clock.advance(seconds=ROOT_PROBE_MAX_AGE)
    assert poll(device, remote, sim).outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == [TIMESTAMP, ROOT_PROBE]
    clock.advance(seconds=60)
    assert poll(device, remote, sim).outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == [TIMESTAMP], "the age counts from that root probe"


def test_a_root_rotated_alone_is_found_once_the_bounded_age_passes(
    device: StateDir, remote: Remote, sim: Sim, clock: FakeClock
) -> None:
    sim.repo.rotate(
        "root", add=["carol"], remove=["officer3"], signers=["officer1", "officer2", "carol"]
    )
    sim.files[ROOT_PROBE] = sim.root(2)  # served, with no new timestamp
    history = device.metadata_dir / "root_history"
    poll(device, remote, sim)
    assert not (history / "2.root.json").exists()
    clock.advance(seconds=ROOT_PROBE_MAX_AGE)
    assert poll(device, remote, sim).outcome is Outcome.UP_TO_DATE
    assert (history / "2.root.json").read_bytes() == sim.root(2)
    assert sim.fetched() == [TIMESTAMP, ROOT_PROBE, "/metadata/3.root.json"]


def test_expired_metadata_is_not_skipped(device: StateDir, remote: Remote, sim: Sim) -> None:
    # The device's trusted time moves past the timestamp's expiry (a day);
    # the server keeps answering "unchanged": a freeze.
    device.raise_time_floor(datetime.now(UTC) + timedelta(days=2))
    refused_by_a_full_refresh(device, remote, sim, "freeze_attack")


def test_a_replayed_older_timestamp_after_idle_polls_is_a_rollback(
    device: StateDir, remote: Remote, sim: Sim
) -> None:
    sim.replay(0)  # the repository as first published, before 1.0.0
    refused_by_a_full_refresh(device, remote, sim, "rollback_attack")


def test_a_failed_poll_makes_the_next_one_a_full_refresh(
    device: StateDir, remote: Remote, sim: Sim
) -> None:
    sim.down = True
    assert poll(device, remote, sim).event == "unreachable"
    sim.down = False
    assert poll(device, remote, sim).outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == [ROOT_PROBE, TIMESTAMP]
    assert poll(device, remote, sim).outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == [TIMESTAMP]


def test_an_idle_poll_decides_again_from_the_devices_own_state(
    device: StateDir, remote: Remote, sim: Sim
) -> None:
    sim.release("1.1.0", 1)
    assert update(device, remote, tries=1, directive=STANDALONE).outcome is Outcome.INSTALLED
    failing = ("python3", "-c", "raise SystemExit(1)")
    assert boot(device, health_check=failing, now=datetime.now(UTC)).outcome.value == "rolled_back"
    result = poll(device, remote, sim)
    assert (result.outcome, result.event) == (Outcome.REFUSED, "known_bad")
    assert sim.fetched() == [TIMESTAMP]


def test_a_wiped_metadata_cache_is_verified_again_without_the_root_probe(
    device: StateDir, remote: Remote, sim: Sim
) -> None:
    for file in device.metadata_dir.glob("*.json"):
        file.unlink()
    result = poll(device, remote, sim)
    assert result.outcome is Outcome.UP_TO_DATE
    assert sim.fetched()[0] == TIMESTAMP
    assert ROOT_PROBE not in sim.fetched()
    assert (device.metadata_dir / "timestamp.json").read_bytes() == sim.files[TIMESTAMP]
