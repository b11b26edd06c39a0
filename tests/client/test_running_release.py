"""The signed release set must account for the firmware the device runs.

Threats: a replay of an old, still unexpired release set to a device whose
metadata cache was wiped (nothing to compare versions with), a withdrawn
release, and a second signed build of the running version with other bytes
(R29). None of them may pass as a quiet "no update": each is an event of
its own, and ``fwclient status`` shows it as the last update result; the
second build freezes nothing else (a newer release still installs).

The client is under test, so what each test adds to the signed set is
built with python-tuf's Metadata API and the line's keys (``sign_line``),
not through fwsign.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.api.serialization.json import JSONSerializer

from client.boot import boot, status
from client.directive import STANDALONE
from client.state import Floor, StateDir
from client.update import Outcome, UpdateResult, check, update
from tests.client.sim import MODEL, Sim, event_types, image_bytes, provision


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
    assert update(state, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))


def sign_line(sim: Sim, edit: Callable[[Targets], None]) -> None:
    """Serve the product line edited by ``edit``: a new version signed by alice and bob."""
    file = sim.path / "metadata" / f"{MODEL}.json"
    line = Metadata[Targets].from_bytes(file.read_bytes())
    edit(line.signed)
    line.signed.version += 1
    line.signatures.clear()
    for name in ("alice", "bob"):
        line.sign(sim.keys[name], append=True)
    file.write_bytes(line.to_bytes(JSONSerializer()))
    sim.publish()


def firmware(sim: Sim, version: str, security_version: int, *, path: str, size: int) -> TargetFile:
    """A firmware target for ``MODEL``, its image served by ``sim``."""
    image = image_bytes(version, size)
    target = TargetFile.from_data(path, image, ["sha256"])
    target.unrecognized_fields["custom"] = {
        "version": version,
        "security_version": security_version,
        "hardware_models": [MODEL],
    }
    sim.images[path] = image
    return target


def refused(state: StateDir, sim: Sim, event: str) -> UpdateResult:
    slots = {slot: state.slot_record(slot) for slot in ("a", "b")}
    result = update(state, sim.remote(), directive=STANDALONE)
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
    sign_line(sim, lambda line: line.targets.pop(path))
    result = refused(device, sim, "running_not_listed")
    assert "withdrawn" in result.message


def test_a_replay_after_a_cache_wipe_is_not_hidden_by_a_newer_prerelease_r25(
    device: StateDir, sim: Sim
) -> None:
    """R25: the replayed set's only newer entry is a pre-release, which this device never takes.

    It must not count as newer: the result is ``running_not_listed``, not
    a silent ``no_update``.
    """
    sim.release("2.0.0-rc.1", 2)
    old_set = len(sim.published) - 1  # lists 1.0.0 and 2.0.0-rc.1
    sim.release("1.5.0", 2)
    install_and_boot(device, sim)
    assert device.floor() == Floor(2, "1.5.0")
    shutil.rmtree(device.metadata_dir)
    sim.replay(old_set)
    result = refused(device, sim, "running_not_listed")
    assert "runs 1.5.0" in result.message


def rebuilt_running_version(sim: Sim) -> TargetFile:
    """A second build of the running 1.0.0, other bytes (a signing mistake, or worse)."""
    return firmware(sim, "1.0.0", 1, path=f"{MODEL}/fw-1.0.0-rebuilt.bin", size=50_000)


def test_the_running_version_signed_with_other_bytes_is_an_integrity_failure_r29(
    device: StateDir, sim: Sim
) -> None:
    """R29: a second signed build of the running version, whose hash is not the slot's.

    Nothing newer is signed: the integrity failure is the result (non-zero
    exit), and what ``status`` shows.
    """
    rebuilt = rebuilt_running_version(sim)
    sign_line(sim, lambda line: line.targets.update({rebuilt.path: rebuilt}))
    result = refused(device, sim, "integrity_failure")
    assert rebuilt.path in result.message
    assert "the same version, other bytes" in result.message


def test_one_mis_signed_build_does_not_freeze_the_fleet_away_from_a_security_fix_r29(
    device: StateDir, sim: Sim
) -> None:
    """R29: the contradiction is reported and shown by ``status``; the newer fix still installs.

    Each release is verified on its own: a signing mistake on the running
    version must not keep a fleet from the next security fix.
    """
    rebuilt, fix = (
        rebuilt_running_version(sim),
        firmware(sim, "1.1.0", 2, path=f"{MODEL}/fw-1.1.0.bin", size=40_000),
    )
    sign_line(sim, lambda line: line.targets.update({rebuilt.path: rebuilt, fix.path: fix}))

    checked = check(device, sim.remote(), directive=STANDALONE)
    assert checked.outcome is Outcome.AVAILABLE and fix.path in checked.message
    assert event_types(device)[-2:] == ["checked", "integrity_failure"]

    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert rebuilt.path in result.message and "the same version, other bytes" in result.message
    assert event_types(device)[-2:] == ["installed", "integrity_failure"]
    report = status(device)
    assert report["pending"] is not None
    last = report["last_update"]
    assert last is not None and last["type"] == "integrity_failure"
    assert rebuilt.path in last["message"]

    boot(device, health_check=None, now=datetime.now(UTC))
    assert device.floor() == Floor(2, "1.1.0")
