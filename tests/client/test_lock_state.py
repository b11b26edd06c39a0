"""One writer at a time on a device's state directory.

Threat: two ``fwclient`` processes (the agent and a technician's command, or a
reboot script) interleave their writes to the boot environment, a slot, the
floors or the hash-chained event log. Every command that writes holds the
state directory's lock (the agent, for each poll); a second one waits a
bounded time, then fails naming the directory and the holder. The holders
here are real processes (forked, so they share the test's simulated
repository), driven through pipes; the kernel releases a killed holder's lock.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from client import cli
from client.agent import Agent, Schedule
from client.boot import boot
from client.directive import STANDALONE
from client.fetcher import Pace
from client.state import StateBusyError, StateDir
from client.update import Outcome, Remote, update
from tests.client.sim import BASE, DEVICE, MODEL, Sim, event_types, provision, tree
from tests.client.test_cli import REPO_ROOT, fwclient, one_line_error, server_args

FORK = multiprocessing.get_context("fork")
#: Bound on a child's answer: a hang fails the test instead of blocking it (not a pacing).
ANSWER = 60.0
#: Where the agent's first download of 2.0.0 loses its connection.
CUT = 20_000


class Pausing(Sim):
    """The mirror; given a pipe, it holds a resumed firmware download until told to go on."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.pace = Pace(min_rate=1.0, grace=3600.0)  # a held download is not a slow one
        self.pause: Connection | None = None

    def _fetch_from(self, url: str, offset: int) -> Iterator[bytes]:
        chunks = super()._fetch_from(url, offset)
        if self.pause is None or offset == 0 or not url.startswith(f"{BASE}/targets/"):
            return chunks
        return self._held(chunks, self.pause, offset)

    def _held(self, chunks: Iterator[bytes], pause: Connection, offset: int) -> Iterator[bytes]:
        pause.send(offset)  # the client is reading the download, resumed from ``offset``
        pause.recv()
        self.pause = None
        yield from chunks


def _hold(root: Path, pipe: Connection) -> None:
    """A writer that holds ``root`` until told to go on."""
    with StateDir(root).lock():
        pipe.send("held")
        pipe.recv()
    pipe.send("released")


def _poll_paused(root: Path, sim: Pausing, pipe: Connection) -> None:
    """The agent, halfway through a download: its first poll loses the connection after
    ``CUT`` bytes (kept for a resume), its second is held as it resumes until told to go on."""
    sim.cut[sim.target_url(f"{MODEL}/fw-2.0.0.bin")] = CUT
    sim.pause = pipe
    agent = Agent(StateDir(root), sim.remote(), Schedule(), wait=lambda _delay: None)
    report = agent.run(max_polls=2)
    pipe.send([outcome.value for outcome in report.outcomes])


class Child:
    """A real process running ``target(*args, pipe)``; ``ready`` is its first message."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        self._pipe, theirs = FORK.Pipe()
        self.process = FORK.Process(target=target, args=(*args, theirs))
        self.process.start()
        self.ready = self._receive()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def _receive(self) -> object:
        assert self._pipe.poll(ANSWER), "the child did not answer"
        return self._pipe.recv()

    def finish(self) -> object:
        """Let it go on; its last message, once it has ended well."""
        self._pipe.send("go on")
        last = self._receive()
        self.process.join(ANSWER)
        assert self.process.exitcode == 0
        return last

    def kill(self) -> None:
        """SIGKILL: what a power cut or the OOM killer does to a holder."""
        self.process.kill()
        self.process.join(ANSWER)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self.kill()


@pytest.fixture
def sim(tmp_path: Path) -> Pausing:
    return Pausing(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Pausing) -> StateDir:
    return provision(tmp_path / "device", sim)


@pytest.fixture
def running(device: StateDir, sim: Pausing) -> StateDir:
    """The device running 1.0.0 from slot b, with 2.0.0 published."""
    sim.release("1.0.0", 1)
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    sim.release("2.0.0", 2)
    return device


def test_the_lock_is_reentrant_within_one_state_dir_and_excludes_every_other(
    device: StateDir,
) -> None:
    other = StateDir(device.root, lock_wait=0)
    with device.lock():
        with device.lock():  # 'fwclient update --boot' installs, then boots
            pass
        with pytest.raises(StateBusyError, match=f"pid {os.getpid()}"), other.lock():
            pass
    with other.lock():
        pass


@pytest.mark.parametrize("command", ["check", "update", "boot", "verify"])
def test_a_second_writer_fails_naming_the_directory_and_the_holder(
    command: str, device: StateDir, sim: Pausing, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.release("1.0.0", 1)
    monkeypatch.setattr(cli, "_remote", lambda *_args: Remote(BASE, sim))
    ca = device.root.parent / "ca.pem"
    ca.write_text("not used: the simulated network stands in for HTTPS\n")
    online_command = command in {"check", "update"}
    args = server_args(device.root, ca) if online_command else ["--state", str(device.root)]
    with Child(_hold, device.root) as holder:
        before = tree(device.root)
        result = fwclient("--lock-wait", "0", command, *args)
        assert tree(device.root) == before, "it wrote while another process held the state"
        holder.finish()
    line = one_line_error(result, "error")
    assert f"{device.root} is in use by pid {holder.pid}" in line
    assert "Run this again once it has finished" in line
    assert sim.requests == []


def test_provisioning_waits_for_another_writer_of_the_same_directory(
    tmp_path: Path, sim: Pausing
) -> None:
    root = tmp_path / "root.json"
    root.write_bytes(sim.root(1))
    target = tmp_path / "new"
    target.mkdir()
    args = ["--root", str(root), "--hardware-model", MODEL, "--device-id", DEVICE]
    with Child(_hold, target) as holder:
        result = fwclient("--lock-wait", "0", "provision", "--state", str(target), *args)
        holder.finish()
    assert f"pid {holder.pid}" in one_line_error(result, "error")
    assert not StateDir(target).is_provisioned()


def test_status_and_log_verify_read_while_another_process_holds_the_state(
    running: StateDir,
) -> None:
    with Child(_hold, running.root) as holder:
        status = fwclient("--lock-wait", "0", "status", "--state", str(running.root))
        logged = fwclient("--lock-wait", "0", "log", "verify", "--state", str(running.root))
        holder.finish()
    assert status.exit_code == 0, status.output
    assert "running_version: 1.0.0" in status.stdout
    assert logged.exit_code == 0, logged.output


def test_a_second_writer_waits_for_the_first_then_runs(running: StateDir) -> None:
    argv = [sys.executable, "-c", "from client.cli import main; main()", "--lock-wait", "600"]
    argv += ["boot", "--state", str(running.root)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    before = event_types(running)
    with Child(_hold, running.root) as holder:
        second = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        assert second.stderr is not None
        assert f"in use by pid {holder.pid}: waiting" in second.stderr.readline()
        assert event_types(running) == before
        holder.finish()
        stdout, stderr = second.communicate(timeout=ANSWER)
    assert second.returncode == 0, stderr
    assert "slot b: booted" in stdout
    assert event_types(running) == [*before, "booted"]


def test_concurrent_boot_and_update_cannot_interleave(running: StateDir, sim: Pausing) -> None:
    """A reboot script runs 'fwclient boot' while the agent is halfway through a download."""
    env, before = running.bootenv(), event_types(running)
    with Child(_poll_paused, running.root, sim) as agent:
        assert agent.ready == CUT
        during = event_types(running)
        refused = fwclient("--lock-wait", "0", "boot", "--state", str(running.root))
        assert (running.bootenv(), event_types(running)) == (env, during)
        assert agent.finish() == ["failed", "installed"]
    assert f"pid {agent.pid}" in one_line_error(refused, "error")
    booted = fwclient("boot", "--state", str(running.root))
    assert booted.exit_code == 0, booted.output
    assert "firmware 2.0.0 committed in slot a" in booted.stdout
    assert event_types(running) == [*during, "installed", "updated"]
    assert during == [*before, "unreachable"]
    assert running.events.verify().ok


def test_killed_holder_leaves_no_stale_lock(running: StateDir) -> None:
    with Child(_hold, running.root) as holder:
        holder.kill()
    # The file stays, naming a dead process: only the kernel's lock counts.
    assert running.lock_file.read_text().strip() == str(holder.pid)
    result = fwclient("--lock-wait", "0", "boot", "--state", str(running.root))
    assert result.exit_code == 0, result.output
    assert "slot b: booted" in result.stdout


def test_a_killed_agent_leaves_no_stale_lock_and_its_download_resumes(
    running: StateDir, sim: Pausing
) -> None:
    with Child(_poll_paused, running.root, sim) as agent:
        agent.kill()
    result = fwclient("--lock-wait", "0", "boot", "--state", str(running.root))
    assert result.exit_code == 0, result.output
    assert "slot b: booted" in result.stdout
    assert update(running, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    resumed = [offset for path, offset in sim.requests if path.endswith("fw-2.0.0.bin")]
    assert resumed == [CUT]
