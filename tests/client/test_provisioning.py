"""Provisioning seeds the time floor: a device never trusts a clock older than its provisioning.

Threat (R52, TUF freeze): a device's clock resets (a flat RTC battery reads
1970) after it leaves the factory, and a server replays a release set that
expired before then. With no time floor, the first refresh would check
expiries at the dead clock. ngclient reads the wall clock itself, so the
test's factory clock runs ahead of it: the wall clock plays the device's
clock, behind its provisioning.
"""

from __future__ import annotations

import subprocess
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client import provisioning
from client import update as update_module
from client.directive import STANDALONE
from client.errors import ProvisioningError
from client.state import DeviceIdentity, StateDir
from client.update import Outcome, update
from tests.client.sim import DEVICE, MODEL, Sim, event_types
from tests.client.sim import provision as sim_provision


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


def provision(tmp_path: Path, sim: Sim, *, now: datetime) -> StateDir:
    state = StateDir(tmp_path / "device")
    provisioning.provision(
        state,
        root=sim.root(1),
        identity=DeviceIdentity(DEVICE, MODEL),
        now=now,
        built=provisioning.BUILT,
    )
    return state


def test_freeze_attack_after_a_clock_reset_below_the_factory_time_r52(
    tmp_path: Path, sim: Sim
) -> None:
    """TUF freeze, R52: metadata expired five days before provisioning is never installed."""
    factory_time = datetime.now(UTC) + timedelta(days=12)
    state = provision(tmp_path, sim, now=factory_time)
    sim.release("1.0.0", 1, publish=False)
    sim.publish(timestamp_expires=timedelta(days=7), snapshot_expires=timedelta(days=7))
    result = update(state, sim.remote(), directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.REFUSED, "freeze_attack")
    assert event_types(state) == ["provisioned", "clock_skew", "freeze_attack"]
    assert state.time_floor() == factory_time
    assert not state.slots_dir.exists()


def test_provisioning_never_trusts_a_clock_before_the_client_was_built_r52(
    tmp_path: Path, sim: Sim
) -> None:
    """R52: a factory clock that itself reads 1970 still gives the client's build time."""
    state = provision(tmp_path, sim, now=datetime(1970, 1, 1, tzinfo=UTC))
    assert state.time_floor() == provisioning.BUILT
    entry = state.events.last()
    assert entry is not None and entry["detail"]["time_floor"] == provisioning.BUILT.isoformat()


def test_provisioning_twice_is_refused_and_keeps_the_first_floor(tmp_path: Path, sim: Sim) -> None:
    """No re-provisioning: a second provisioning cannot move the floor either way."""
    first = datetime.now(UTC) + timedelta(days=3)
    state = provision(tmp_path, sim, now=first)
    with pytest.raises(ProvisioningError, match="already provisioned"):
        provision(tmp_path, sim, now=datetime(1970, 1, 1, tzinfo=UTC))
    assert state.time_floor() == first


def test_freeze_attack_on_a_device_provisioned_without_a_time_floor_r52(
    tmp_path: Path, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R52, TUF freeze: a device an older client provisioned (no floor) takes the build time.

    The build time stands ahead of the wall clock here, as it would for a
    device whose clock reset: metadata expired before it is refused.
    """
    state = sim_provision(tmp_path / "legacy", sim)
    assert state.time_floor() is None
    monkeypatch.setattr(update_module, "BUILT", datetime.now(UTC) + timedelta(days=12))
    sim.release("1.0.0", 1, publish=False)
    sim.publish(timestamp_expires=timedelta(days=7), snapshot_expires=timedelta(days=7))
    result = update(state, sim.remote(), directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.REFUSED, "freeze_attack")
    assert event_types(state) == ["clock_skew", "freeze_attack"]


PROJECT = Path(__file__).resolve().parents[2]


def test_the_build_time_is_moved_with_each_release_r52() -> None:
    """R52: a release that bumps the version without moving ``BUILT`` fails here.

    A forgotten build time leaves every newly provisioned device trusting
    clocks older than its client (P2); ``BUILT_RELEASE`` is set with it.
    """
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert project["version"] == provisioning.BUILT_RELEASE, (
        f"version {project['version']}: set provisioning.BUILT to this release's date,"
        " then BUILT_RELEASE to the version"
    )


def test_the_build_time_is_never_after_the_client_source_r52() -> None:
    """R52: a build time in the future would refuse every update as a freeze until then.

    Compared with the newest commit touching client/, never with the clock:
    it holds on any date, and in a shallow clone (whose only commit is newer).
    """
    newest = subprocess.run(
        ["git", "log", "-1", "--format=%cI", "--", "client/"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert newest, "client/ has no commit: run the tests in a clone of the repository"
    assert datetime.fromisoformat(newest) >= provisioning.BUILT
    assert provisioning.BUILT.tzinfo is not None
