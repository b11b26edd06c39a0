"""The offline maximum age is a device setting, fixed at provisioning (``client.offline`` O3).

``fwclient provision --offline-max-age`` writes it with the identity
(``client.provisioning`` P4); ``fwclient update --bundle --offline-max-age``
(or ``FWCLIENT_OFFLINE_MAX_AGE``) may narrow it for one run and never widen
it: a wider bound would let whoever runs the command replay an older bundle
(TUF freeze attack; R25 anti-replay by expiry, R52 updates off the network).
A device provisioned before the setting existed reads the default.

The device of the bundle tests (``tests.client.bundles.offline_device``)
runs 1.0.0 and last trusted a time twenty days ago (its time floor).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from client import cli
from client.bundle_source import update_from_bundle
from client.errors import ProvisioningError
from client.events import EventType
from client.offline import DEFAULT_MAX_AGE, WiderMaxAgeError
from client.state import StateDir
from fwcommon.files import atomic_write
from tests.client.bundles import (
    make_bundle,
    offline_device,
    refuse_connections,
    set_time_floor,
    snapshot_of,
)
from tests.client.sim import DEVICE, MODEL, Sim, event_types, tree

DAY = timedelta(days=1)


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    """Provisioned with the default setting (30 days); time floor twenty days ago."""
    return offline_device(tmp_path, sim)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    return refuse_connections(monkeypatch)


def fwclient(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), env=env)


def provision(path: Path, sim: Sim, *extra: str) -> Result:
    root = path.parent / "1.root.json"
    root.write_bytes(sim.root(1))
    return fwclient(
        "provision", "--state", str(path), "--root", str(root),
        "--hardware-model", MODEL, "--device-id", DEVICE, *extra,
    )  # fmt: skip


def expired_bundle(path: Path, sim: Sim, *, ago: timedelta) -> Path:
    """A bundle of release 1.1.0 whose timestamp and snapshot expired ``ago``."""
    release = sim.release("1.1.0", 2, publish=False)
    sim.publish(timestamp_expires=-ago, snapshot_expires=-ago)
    return make_bundle(path, sim, release=release)


def status(state: StateDir) -> dict[str, object]:
    shown = fwclient("status", "--state", str(state.root), "--json")
    assert shown.exit_code == 0, shown.output
    report: dict[str, object] = json.loads(shown.stdout)
    return report


def unchanged_but_the_log(state: StateDir) -> tuple[object, ...]:
    """What a refused session leaves as it was: slots, boot environment, both floors."""
    return tree(state.slots_dir), state.bootenv(), state.floor(), state.time_floor()


# -- provisioning (P4) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "shown", "seconds"),
    [
        ([], "30d", 30 * 86400),
        (["--offline-max-age", "10d"], "10d", 10 * 86400),
        (["--offline-max-age", "36h"], "36h", 36 * 3600),
        (["--offline-max-age", "7"], "7d", 7 * 86400),
    ],
    ids=["default", "days", "hours", "number-is-days"],
)
def test_provisioning_stores_the_offline_max_age_and_status_shows_it_r52(
    tmp_path: Path, sim: Sim, extra: list[str], shown: str, seconds: int
) -> None:
    """P4 (R52, R38): the setting is written read-only with the identity, logged, shown."""
    path = tmp_path / "device"
    result = provision(path, sim, *extra)
    assert result.exit_code == 0, result.output
    state = StateDir(path)
    assert state.identity().offline_max_age == timedelta(seconds=seconds)
    stored = state.provisioned / "device.json"
    assert json.loads(stored.read_text())["offline_max_age_seconds"] == seconds
    assert stored.stat().st_mode & 0o222 == 0
    entry = state.events.last(EventType.PROVISIONED)
    assert entry is not None and entry["detail"]["offline_max_age_seconds"] == seconds
    assert status(state)["offline_max_age"] == shown
    text = fwclient("status", "--state", str(path))
    assert f"offline_max_age: {shown}" in text.stdout.splitlines()


@pytest.mark.parametrize("value", ["91d", "0.5h", "3599s", "0", "never", "-5", "30 days"])
def test_provisioning_refuses_an_offline_max_age_outside_its_bounds_o3(
    tmp_path: Path, sim: Sim, value: str
) -> None:
    """O3 (TUF freeze attack, never unbounded): exit 2, and nothing is provisioned."""
    path = tmp_path / "device"
    result = provision(path, sim, "--offline-max-age", value)
    assert result.exit_code == 2, result.output
    assert "--offline-max-age" in result.output
    assert "Traceback" not in result.output
    assert not StateDir(path).is_provisioned()
    assert not (path / "provisioned").exists()


def test_a_device_provisioned_before_the_setting_reads_the_default_o3(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O3 (R52): an older device.json, without the setting, is the 30-day default."""
    identity = device.provisioned / "device.json"
    older = {"device_id": DEVICE, "hardware_model": MODEL, "slot_capacity": 1024**3}
    atomic_write(identity, json.dumps(older).encode(), mode=0o444)
    assert device.identity().offline_max_age == DEFAULT_MAX_AGE == 30 * DAY
    assert status(device)["offline_max_age"] == "30d"
    bundle = expired_bundle(tmp_path / "b.fwbundle", sim, ago=15 * DAY)
    result = fwclient("update", "--state", str(device.root), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    entry = device.events.last(EventType.OFFLINE_INSTALL)
    assert entry is not None and entry["detail"]["max_age_seconds"] == 30 * 86400


@pytest.mark.parametrize("seconds", [365 * 86400, 60, "30d", True, 2**70])
def test_a_setting_outside_its_bounds_in_device_json_is_refused_o3(
    device: StateDir, seconds: object
) -> None:
    """O3 (TUF freeze attack): a device.json holding an unbounded setting is not obeyed."""
    identity = device.provisioned / "device.json"
    data = json.loads(identity.read_text()) | {"offline_max_age_seconds": seconds}
    atomic_write(identity, json.dumps(data).encode(), mode=0o444)
    with pytest.raises(ProvisioningError, match="offline"):
        device.identity()


# -- the setting bounds the session (O2, O3) -------------------------------------------------


def test_the_provisioned_setting_bounds_the_offline_session_tuf_freeze_attack(
    tmp_path: Path, sim: Sim
) -> None:
    """O3 (R25): provisioned with ten days, a bundle expired fifteen days ago is a freeze.

    The device's time floor is twenty days back: with the default it would
    install (next test), with its own setting it does not.
    """
    strict = offline_device(tmp_path / "strict", sim, offline_max_age=10 * DAY)
    bundle = expired_bundle(tmp_path / "b.fwbundle", sim, ago=15 * DAY)
    before = unchanged_but_the_log(strict)
    installs = event_types(strict).count(EventType.OFFLINE_INSTALL)
    result = fwclient("update", "--state", str(strict.root), "--bundle", str(bundle))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("fwclient: freeze_attack: ")
    assert unchanged_but_the_log(strict) == before
    assert event_types(strict).count(EventType.OFFLINE_INSTALL) == installs


def test_a_narrower_value_for_one_run_is_applied_then_the_setting_again_r25(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O3 (R25, TUF freeze attack): a run may narrow the bound; the next run has the setting.

    The bundle's metadata expired fifteen days ago, between the run's ten
    days and the device's thirty: refused with the narrower bound, installed
    without it.
    """
    bundle = expired_bundle(tmp_path / "b.fwbundle", sim, ago=15 * DAY)
    before = unchanged_but_the_log(device)
    narrowed = fwclient(
        "update", "--state", str(device.root), "--bundle", str(bundle),
        "--offline-max-age", "10d",
    )  # fmt: skip
    assert narrowed.exit_code == 1, narrowed.output
    assert narrowed.stderr.startswith("fwclient: freeze_attack: ")
    assert unchanged_but_the_log(device) == before
    result = fwclient("update", "--state", str(device.root), "--bundle", str(bundle))
    assert result.exit_code == 0, result.output
    assert f"{MODEL}/fw-1.1.0.bin version 1.1.0 in slot" in result.stdout
    entry = device.events.last(EventType.OFFLINE_INSTALL)
    assert entry is not None and entry["detail"]["max_age_seconds"] == 30 * 86400


def test_a_narrower_value_from_the_environment_is_applied_r25(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O3 (R25): ``FWCLIENT_OFFLINE_MAX_AGE`` narrows as the option does (TUF freeze attack)."""
    bundle = expired_bundle(tmp_path / "b.fwbundle", sim, ago=15 * DAY)
    result = fwclient(
        "update", "--state", str(device.root), "--bundle", str(bundle),
        env={"FWCLIENT_OFFLINE_MAX_AGE": "240h"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("fwclient: freeze_attack: ")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--offline-max-age", "45"], None),
        (["--offline-max-age", "365"], None),
        ([], {"FWCLIENT_OFFLINE_MAX_AGE": "45d"}),
    ],
    ids=["option", "beyond-the-longest", "environment"],
)
def test_a_wider_value_for_one_run_is_a_usage_error_and_changes_nothing_r25(
    tmp_path: Path, device: StateDir, sim: Sim, args: list[str], env: dict[str, str] | None
) -> None:
    """O3 (R25, TUF freeze attack): whoever runs fwclient cannot widen the device's bound.

    The bundle's metadata expired forty days ago; a 45-day bound would
    install it. Exit 2 naming the device's setting; the state directory is
    byte for byte as it was, and the bundle is not read.
    """
    set_time_floor(device, datetime.now(UTC) - 60 * DAY)
    bundle = expired_bundle(tmp_path / "b.fwbundle", sim, ago=40 * DAY)
    before = snapshot_of(device)
    result = fwclient(
        "update", "--state", str(device.root), "--bundle", str(bundle), *args, env=env
    )
    assert result.exit_code == 2, result.output
    assert "this device's offline maximum age, 30d, set when it was provisioned" in result.output
    assert "Traceback" not in result.output
    assert snapshot_of(device) == before


def test_a_wider_value_is_refused_before_the_bundle_is_read_o3(
    tmp_path: Path, device: StateDir
) -> None:
    """O3 (R25): ``update_from_bundle`` itself refuses a wider bound, first (TUF freeze attack)."""
    before = snapshot_of(device)
    with pytest.raises(WiderMaxAgeError, match="a run may only narrow it"):
        update_from_bundle(device, tmp_path / "absent.fwbundle", max_age=31 * DAY)
    assert snapshot_of(device) == before
