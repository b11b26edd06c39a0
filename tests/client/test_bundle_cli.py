"""``fwclient update --bundle FILE`` on the command line, and the report that follows online.

A technician reads one line: what was installed, or what is wrong with the
bundle and that nothing was installed (exit 1, no traceback). The next
online report carries the offline install to the server (O8, R38), whose
real chain check accepts it. And the one private attribute of python-tuf
the offline session sets (ADR 0007) is checked here, so that an upgrade of
python-tuf that renames it fails this test rather than the devices.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from click.testing import CliRunner, Result
from tuf.ngclient import Updater

from client import cli
from client.boot import boot
from client.events import EventType
from client.report import Reporter, Sent
from client.state import StateDir
from client.update import set_reference_time
from tests.client.bundles import (
    make_bundle,
    offline_device,
    refuse_connections,
    snapshot_of,
)
from tests.client.sim import MODEL, Sim, event_types
from tests.client.test_report import Server


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return offline_device(tmp_path, sim)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """S1: any attempt to open a connection fails the test (and is recorded)."""
    return refuse_connections(monkeypatch)


def fwclient(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def test_update_from_a_bundle_on_the_command_line_r13(
    tmp_path: Path, device: StateDir, sim: Sim, no_network: list[object]
) -> None:
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2))
    result = fwclient("update", "--state", str(device.root), "--bundle", str(bundle), "--boot")
    assert result.exit_code == 0, result.output
    assert no_network == []
    assert f"{MODEL}/fw-1.1.0.bin version 1.1.0 in slot" in result.stdout
    assert "offline_install" in event_types(device)
    assert device.floor().installed_version == "1.1.0"


def test_a_bundle_for_another_model_is_one_line_and_exit_1_with_nothing_installed(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O7: a bundle for another hardware model is one line, exit 1, nothing installed (R15)."""
    bundle = make_bundle(
        tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2), model="infusion-z9"
    )
    before = snapshot_of(device)
    result = fwclient("update", "--state", str(device.root), "--bundle", str(bundle))
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert (
        f"this bundle is for model infusion-z9; this device is model {MODEL}: nothing was"
        " installed" in line
    )
    assert "Traceback" not in result.output
    assert snapshot_of(device) == before


def test_an_oversized_bundle_on_the_command_line_is_refused_unread(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """S3: an oversized bundle named on the command line is refused unread (R46)."""
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2))
    before = snapshot_of(device)
    result = fwclient(
        "update", "--state", str(device.root), "--bundle", str(bundle),
        "--bundle-max-bytes", "4096",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "more than the bound of 4096 bytes" in result.stderr
    assert snapshot_of(device) == before


def test_a_refusal_inside_the_session_names_its_event_and_exits_1(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """A bundle older than the bound (O3): the event a person reads is TUF's freeze."""
    path = sim.release("1.1.0", 2, publish=False)
    sim.publish(timestamp_expires=timedelta(days=-2), snapshot_expires=timedelta(days=-2))
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path)
    result = fwclient(
        "update", "--state", str(device.root), "--bundle", str(bundle),
        "--offline-max-age", "1",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("fwclient: freeze_attack: ")


@pytest.mark.parametrize(
    "extra",
    [["--server", "https://updates.test"], ["--ca", __file__]],
    ids=["server", "ca"],
)
def test_a_bundle_update_names_no_server_s1(
    tmp_path: Path, device: StateDir, sim: Sim, extra: list[str]
) -> None:
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2))
    before = snapshot_of(device)
    result = fwclient("update", "--state", str(device.root), "--bundle", str(bundle), *extra)
    assert result.exit_code == 2, result.output
    assert "--bundle installs with no network" in result.output
    assert snapshot_of(device) == before


def test_an_update_needs_a_server_or_a_bundle(device: StateDir) -> None:
    """S1: ``fwclient update`` needs a server URL or a bundle."""
    result = fwclient("update", "--state", str(device.root))
    assert result.exit_code == 2, result.output
    assert "give --server URL and --ca FILE, or --bundle FILE" in result.output


def test_the_offline_maximum_age_is_bounded_o3(tmp_path: Path, device: StateDir) -> None:
    """O3: the offline maximum age is bounded, never unbounded (TUF indefinite freeze)."""
    result = fwclient(
        "update", "--state", str(device.root), "--bundle", str(tmp_path / "x"),
        "--offline-max-age", "365",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--offline-max-age" in result.output


def test_the_next_online_report_carries_the_offline_install_to_the_server_o8_r38(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2))
    assert fwclient("update", "--state", str(device.root), "--bundle", str(bundle)).exit_code == 0
    boot(device, health_check=None, now=datetime.now(UTC))
    server = Server()
    result = Reporter(device, server).report(now=datetime.now(UTC))
    assert result.outcome is Sent.ACKNOWLEDGED, result.message
    sent = [entry for report in server.reports for entry in report["entries"]]
    offline = [entry for entry in sent if entry["type"] == EventType.OFFLINE_INSTALL]
    assert len(offline) == 2  # the first bundle (1.0.0), then this one
    assert offline[-1]["detail"]["target"] == f"{MODEL}/fw-1.1.0.bin"
    assert offline[-1]["detail"]["bundle"] == "b.fwbundle"
    assert server.reports[-1]["running_version"] == "1.1.0"
    assert server.head is not None and server.head.seq == sent[-1]["seq"]


# -- ADR 0007: the one private attribute of python-tuf -----------------------------------


def test_python_tuf_still_reads_its_reference_time_where_the_offline_session_sets_it(
    tmp_path: Path, sim: Sim
) -> None:
    """Fails when python-tuf renames ``Updater._trusted_set.reference_time`` (ADR 0007) (R45)."""
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    updater = Updater(
        metadata_dir=str(metadata),
        metadata_base_url="https://bundle.invalid/metadata/",
        target_base_url="https://bundle.invalid/targets/",
        bootstrap=sim.root(1),
    )
    trusted: Any = updater._trusted_set
    assert isinstance(trusted.reference_time, datetime)
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    set_reference_time(updater, moment)
    assert trusted.reference_time == moment
    code = inspect.getsource(type(trusted))
    assert code.count("is_expired(self.reference_time)") >= 4, (
        "python-tuf no longer checks root, timestamp, snapshot and targets at reference_time"
    )


def test_a_python_tuf_without_the_attribute_fails_closed() -> None:
    """ADR 0007: a python-tuf without reference_time fails closed (R45; TUF freeze attack)."""
    updater = cast(Updater, SimpleNamespace(_trusted_set=SimpleNamespace()))
    with pytest.raises(RuntimeError, match=r"no Updater\._trusted_set\.reference_time"):
        set_reference_time(updater, datetime(2030, 1, 1, tzinfo=UTC))
