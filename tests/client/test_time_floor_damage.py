"""A damaged time floor record never stops an update and never lets the clock go back.

Threats (R52 emergency use, R33, R29): storage damage leaves
``time_floor.json`` truncated, not JSON, or holding other fields. Before,
every ``fwclient update`` then failed with a plain ``error`` and logged
nothing: the device could not be updated again. Dropping the record instead
would let a device whose clock reset trust expired metadata again. The
record is rebuilt from what the device can prove (``client.provisioning``
rule P3), the damage is logged as ``integrity_failure`` naming the file, and
the update goes on. ngclient reads the wall clock, so a factory clock ahead
of it plays a device whose clock is behind its provisioning.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuf.api.metadata import Metadata

from client import cli, provisioning
from client.boot import boot
from client.directive import STANDALONE
from client.state import DeviceIdentity, StateDir
from client.update import Outcome, Remote, update
from tests.client.sim import DEVICE, MODEL, Sim, event_types
from tests.client.sim import provision as legacy_provision

#: How storage damage leaves the record.
DAMAGE = {
    "truncated": lambda text: text[:9],
    "not_json": lambda _text: "\x00\x17 not a record \xff",
    "empty": lambda _text: "",
    "other_fields": lambda text: text.replace('"time"', '"tiem"'),
    "extra_field": lambda text: text.replace("{", '{"floor": 1,', 1),
    "time_not_a_string": lambda _text: '{"time": 1764547200}',
    "time_not_a_date": lambda _text: '{"time": "yesterday"}',
    "time_without_offset": lambda _text: '{"time": "2026-12-01T00:00:00"}',
    "not_an_object": lambda _text: '["2026-12-01T00:00:00+00:00"]',
}


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


def damage(state: StateDir, kind: str) -> None:
    file = state.root / "time_floor.json"
    file.write_text(DAMAGE[kind](file.read_text()))


def provision_at(tmp_path: Path, sim: Sim, factory_time: datetime) -> StateDir:
    state = StateDir(tmp_path / "device")
    provisioning.provision(
        state,
        root=sim.root(1),
        identity=DeviceIdentity(DEVICE, MODEL),
        now=factory_time,
        built=provisioning.BUILT,
    )
    return state


def rebuilt_entry(state: StateDir) -> dict[str, object]:
    entries = [e for e in state.events.entries() if e["type"] == "integrity_failure"]
    assert len(entries) == 1, entries
    assert entries[0]["detail"]["file"] == "time_floor.json"
    assert "time_floor.json" in str(entries[0]["message"])
    return entries[0]


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_time_floor_is_rebuilt_from_the_provisioning_floor_r52(
    tmp_path: Path, sim: Sim, kind: str
) -> None:
    """R52, TUF freeze: after the damage, metadata expired before provisioning is still refused.

    The device's clock (the wall clock) is 12 days behind its provisioning;
    the set served expires in 7. With the floor dropped, it would install.
    """
    factory_time = datetime.now(UTC) + timedelta(days=12)
    state = provision_at(tmp_path, sim, factory_time)
    damage(state, kind)
    sim.release("1.0.0", 1, publish=False)
    sim.publish(timestamp_expires=timedelta(days=7), snapshot_expires=timedelta(days=7))
    result = update(state, sim.remote(), directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.REFUSED, "freeze_attack")
    assert event_types(state) == ["provisioned", "integrity_failure", "clock_skew", "freeze_attack"]
    assert "the provisioning floor" in str(rebuilt_entry(state)["message"])
    assert state.time_floor() == factory_time
    assert not state.slots_dir.exists()


@pytest.mark.parametrize("kind", ["truncated", "other_fields"])
def test_a_damaged_time_floor_is_rebuilt_from_the_verified_evidence_r52(
    tmp_path: Path, sim: Sim, kind: str
) -> None:
    """R52: a device with no provisioning floor in its log keeps its slots' verified time.

    The floor comes back at the time the running firmware's signed evidence
    was verified (or the build time, if later), never earlier; the update
    then goes on and installs.
    """
    state = legacy_provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    assert update(state, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    record = state.slot_record("b")
    assert record is not None
    damage(state, kind)
    floor, _sources = provisioning.proven_time(state, built=provisioning.BUILT)
    assert floor == max(provisioning.BUILT, datetime.fromisoformat(record.verified_at))
    sim.release("2.0.0", 2)
    result = update(state, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED, result.message
    rebuilt_entry(state)
    moved = state.time_floor()
    assert moved is not None and moved >= floor


def test_a_damaged_verified_time_cannot_push_the_floor_past_the_signed_expiry_r52(
    tmp_path: Path, sim: Sim
) -> None:
    """R52, R33: a flipped year in a slot record's ``verified_at`` is capped by signed expiries.

    The evidence and the newest cached timestamp were verified before they
    expired, so a floor rebuilt past that would be damage, and would refuse
    every update as expired: the device installs the next release.
    """
    state = legacy_provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    assert update(state, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    record_file = state.slot_record_file("b")
    data = json.loads(record_file.read_text())
    data["verified_at"] = "2999-01-01T00:00:00+00:00"
    record_file.write_text(json.dumps(data))
    (state.root / "time_floor.json").write_text("{")
    floor, sources = provisioning.proven_time(state, built=provisioning.BUILT)
    cached = Metadata.from_bytes((state.metadata_dir / "timestamp.json").read_bytes())
    assert floor == max(provisioning.BUILT, cached.signed.expires), sources
    # The next timestamp is signed later than the cached one, so it expires later.
    sim.release("2.0.0", 2, publish=False)
    sim.publish(timestamp_expires=timedelta(days=2))
    result = update(state, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED, result.message


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_fwclient_update_with_a_damaged_time_floor_goes_on_r52(
    tmp_path: Path, sim: Sim, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """R52 emergency use: ``fwclient update`` installs, exits 0, and logs the damage."""
    monkeypatch.setattr(cli, "_remote", lambda *_args: Remote("https://updates.test", sim))
    root_file = tmp_path / "1.root.json"
    root_file.write_bytes(sim.root(1))
    ca = tmp_path / "ca.pem"
    ca.write_text("not used: the simulated network stands in for HTTPS\n")
    path = tmp_path / "device"
    runner = CliRunner()
    provisioned = runner.invoke(
        cli.main,
        ["provision", "--state", str(path), "--root", str(root_file),
         "--hardware-model", MODEL, "--device-id", DEVICE],
    )  # fmt: skip
    assert provisioned.exit_code == 0, provisioned.output
    state = StateDir(path)
    damage(state, kind)
    sim.release("1.0.0", 1)
    args = ["--state", str(path), "--server", "https://updates.test", "--ca", str(ca)]
    result = runner.invoke(cli.main, ["update", *args])
    assert result.exit_code == 0, result.output
    assert "1.0.0" in result.stdout
    assert event_types(state) == ["provisioned", "integrity_failure", "installed"]
    rebuilt_entry(state)
    assert state.time_floor() is not None
