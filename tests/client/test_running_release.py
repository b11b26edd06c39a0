"""The signed release set must account for the firmware the device runs.

Threats: a replay of an old, still unexpired release set to a device whose
metadata cache was wiped (nothing to compare versions with), a withdrawn
release, and a second signed build of the running version with other bytes
(R29). None of them may pass as a quiet "no update": each is an event of
its own, and ``fwclient status`` shows it as the last update result.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.boot import boot, status
from client.state import Floor, StateDir
from client.update import Outcome, UpdateResult, update
from signer.authoring import revoke_release
from tests.client.sim import MODEL, Sim, event_types, provision


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    """A device running 1.0.0 (security version 1)."""
    sim.release("1.0.0", 1)
    state = provision(tmp_path / "device", sim)
    install_and_boot(state, sim)
    return state


def install_and_boot(state: StateDir, sim: Sim) -> None:
    assert update(state, sim.remote()).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))


def refused(state: StateDir, sim: Sim, event: str) -> UpdateResult:
    slots = {slot: state.slot_record(slot) for slot in ("a", "b")}
    result = update(state, sim.remote())
    assert (result.outcome, result.event) == (Outcome.REFUSED, event), result.message
    assert event_types(state)[-1] == event
    last = status(state)["last_update"]
    assert last is not None and last["type"] == event
    assert {slot: state.slot_record(slot) for slot in ("a", "b")} == slots
    return result


def test_replay_after_a_cache_wipe_of_a_set_older_than_the_running_release(
    device: StateDir, sim: Sim
) -> None:
    """TUF rollback after a cache wipe: an old, unexpired set that stops before the running one."""
    old_set = len(sim.published) - 1  # lists 1.0.0 only
    sim.release("2.0.0", 2)
    install_and_boot(device, sim)
    assert device.floor() == Floor(2, "2.0.0")
    shutil.rmtree(device.metadata_dir)
    sim.replay(old_set)
    result = refused(device, sim, "running_not_listed")
    assert "runs 2.0.0" in result.message
    assert "replayed" in result.message


def test_a_withdrawn_running_release_is_reported_not_ignored(device: StateDir, sim: Sim) -> None:
    """R56/R57 withdrawal: the running release leaves the signed set, nothing replaces it."""
    path = f"{MODEL}/fw-1.0.0.bin"
    revoke_release(sim.repo("alice", "bob"), path=path)
    del sim.images[path]
    sim.publish()
    result = refused(device, sim, "running_not_listed")
    assert "withdrawn" in result.message


def test_the_running_version_signed_with_other_bytes_is_an_integrity_failure_r29(
    device: StateDir, sim: Sim
) -> None:
    """R29: a second signed build of the running version, whose hash is not the slot's.

    The set contradicts what runs, so not even a newer release is installed
    from it: the integrity failure is the result ``status`` shows.
    """
    rebuilt = sim.release("1.0.0", 1, path=f"{MODEL}/fw-1.0.0-rebuilt.bin", size=50_000)
    sim.release("1.1.0", 1)
    result = refused(device, sim, "integrity_failure")
    assert rebuilt in result.message
    assert "the same version, other bytes" in result.message
