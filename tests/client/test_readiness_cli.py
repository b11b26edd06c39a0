"""The clinical-use guard (R52) through ``fwclient run``'s agent and the ``fwclient`` commands.

Threat: a device in clinical use rebooting into an update because it was
reached by the agent or a person's command rather than a direct call; and
a deferral reported as a failure (exit 1), which would make an integrator
retry or alarm when the device is only busy.
"""

from __future__ import annotations

import json
import random
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from client import cli
from client.agent import Agent, Schedule
from client.boot import Outcome as BootOutcome
from client.boot import boot
from client.readiness import Activation
from client.state import StateDir
from client.update import Outcome, Remote
from tests.client.sim import DEVICE, MODEL, Sim, event_types, provision
from tests.client.test_readiness import Clinic


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def clinic(tmp_path: Path) -> Clinic:
    return Clinic(tmp_path / "clinic")


# -- the agent -------------------------------------------------------------------------


def agent_for(device: StateDir, sim: Sim, clinic: Clinic, boots: list[BootOutcome]) -> Agent:
    guard = clinic.guard()

    def reboot() -> None:
        boots.append(boot(device, health_check=None, now=datetime.now(UTC), guard=guard).outcome)

    return Agent(
        device,
        sim.remote(),
        Schedule(interval=100),
        after_install=reboot,
        rng=random.Random(1),  # noqa: S311 - jitter, not a secret
        wait=lambda _delay: False,
        guard=guard,
    )


def test_the_agent_defers_an_install_in_use_and_installs_at_a_later_poll_r52(
    tmp_path: Path, sim: Sim, clinic: Clinic
) -> None:
    device = provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    boots: list[BootOutcome] = []
    agent = agent_for(device, sim, clinic, boots)
    clinic.busy(Activation.INSTALL)
    report = agent.run(max_polls=2)
    assert report.outcomes == [Outcome.DEFERRED, Outcome.DEFERRED]
    assert (report.failures_in_a_row, boots) == (0, [])
    assert device.bootenv().pending is None
    clinic.idle()
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]
    assert boots == [BootOutcome.COMMITTED]
    assert len(sim.fetched("/targets/")) == 1, "the verified bytes were downloaded again"
    assert event_types(device) == ["deferred_in_use", "deferred_in_use", "installed", "updated"]


def test_the_agent_retries_a_deferred_trial_boot_at_the_next_poll_r52(
    tmp_path: Path, sim: Sim, clinic: Clinic
) -> None:
    device = provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    boots: list[BootOutcome] = []
    agent = agent_for(device, sim, clinic, boots)
    agent.run(max_polls=1)  # the first firmware runs from slot b
    sim.release("1.1.0", 2)
    clinic.busy(Activation.TRIAL_BOOT)
    assert agent.run(max_polls=1).outcomes == [Outcome.INSTALLED]
    assert boots[1:] == [BootOutcome.DEFERRED]
    assert (device.bootenv().active, device.bootenv().pending) == ("b", "a")
    clinic.idle()
    assert agent.run(max_polls=1).outcomes == [Outcome.PENDING_REBOOT]
    assert boots[1:] == [BootOutcome.DEFERRED, BootOutcome.COMMITTED]
    assert device.bootenv().active == "a"


# -- fwclient --------------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path, sim: Sim) -> Path:
    root = tmp_path / "1.root.json"
    root.write_bytes(sim.root(1))
    path = tmp_path / "device"
    result = fwclient(
        "provision", "--state", str(path), "--root", str(root),
        "--hardware-model", MODEL, "--device-id", DEVICE,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def server(tmp_path: Path, sim: Sim, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--state``, ``--server``, ``--ca`` for a CLI whose network is the simulated repository."""
    monkeypatch.setattr(cli, "_remote", lambda *_args: Remote("https://updates.test", sim))
    ca = tmp_path / "ca.pem"
    ca.write_text("not used: the simulated network stands in for HTTPS\n")
    return ["--state", str(state_dir), "--server", "https://updates.test", "--ca", str(ca)]


def fwclient(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli.main, list(args))


def ready_check(clinic: Clinic) -> str:
    return shlex.join(clinic.check.argv)


def status(state_dir: Path) -> dict[str, object]:
    result = fwclient("status", "--state", str(state_dir), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def test_fwclient_update_in_use_exits_0_and_status_shows_the_deferral_r52(
    sim: Sim, server: list[str], state_dir: Path, clinic: Clinic
) -> None:
    sim.release("1.0.0", 1)
    clinic.busy()
    result = fwclient("update", *server, "--ready-check", ready_check(clinic), "--boot")
    assert result.exit_code == 0, result.output
    assert "in use (ready-check: exit status 1)" in result.stdout
    assert "fw-1.0.0" in result.stdout
    report = status(state_dir)
    assert report["pending"] is None
    last = report["last_update"]
    assert isinstance(last, dict) and last["type"] == "deferred_in_use"
    clinic.idle()
    env = {"FWCLIENT_READY_CHECK": ready_check(clinic)}
    again = fwclient("update", *server, "--boot", env=env)
    assert again.exit_code == 0, again.output
    assert "committed" in again.stdout
    assert status(state_dir)["running_version"] == "1.0.0"


def test_fwclient_boot_in_use_runs_the_active_slot_and_exits_0_r52(
    sim: Sim, server: list[str], state_dir: Path, clinic: Clinic
) -> None:
    sim.release("1.0.0", 1)
    assert fwclient("update", *server, "--boot").exit_code == 0  # 1.0.0 runs from slot b
    sim.release("1.1.0", 2)
    assert fwclient("update", *server).exit_code == 0
    clinic.busy()
    env = {"FWCLIENT_READY_CHECK": ready_check(clinic)}
    result = fwclient("boot", "--state", str(state_dir), env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("slot b: deferred: firmware 1.0.0 verified")
    report = status(state_dir)
    pending = report["pending"]
    assert isinstance(pending, dict) and (pending["slot"], pending["tries_left"]) == ("a", 3)
    assert report["running_version"] == "1.0.0"


def test_fwclient_refuses_to_ignore_the_ready_check_outside_a_recovery_r52(
    sim: Sim, server: list[str], state_dir: Path
) -> None:
    sim.release("1.0.0", 1)
    result = fwclient("update", *server, "--ignore-ready-check")
    assert result.exit_code == 2
    assert "only a signed recovery (--recovery) may ignore the ready-check" in result.output
    assert status(state_dir)["last_update"] is None


def test_fwclient_refuses_an_empty_ready_check(server: list[str]) -> None:
    result = fwclient("update", *server, "--ready-check", " ")
    assert result.exit_code == 2
    assert "--ready-check" in result.output
