"""Power loss at every durable step of an install and a trial boot.

"Killed at any instant, the device afterwards boots a verified image: the
old one or, once committed, the new one." Every ``fsync``, ``rename``,
``replace`` and ``unlink`` the client makes is a step; for each step ``k``
the power is cut just before it, and every later step fails too (nothing
after a power cut reaches the disk). Then the device reboots, and:

- right after the cut, the boot environment points only at verified slots,
  and a pending slot's bytes, record and evidence are all durable;
- the reboot runs a slot that verifies, the old firmware or the new one, and
  the new one for good once the cut came after the commit;
- the device still updates afterwards (no state left that wedges it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from client.boot import Outcome, boot, enter_failsafe
from client.errors import InstallError
from client.events import EventType
from client.integrity import verify_slot
from client.slots import open_inactive
from client.state import Mode, StateDir
from tests.client.helpers_state import (
    NOW,
    UNHEALTHY,
    Release,
    SignedLine,
    assert_consistent,
    in_service,
    install,
    provision,
)

STEPS = ("fsync", "rename", "replace", "unlink", "rmdir")
CHUNK = 16 * 1024
CHECKPOINT_EVERY = 4  # chunks


class PowerCut(BaseException):
    """Nothing catches it: the device just stops."""


class Fuse:
    """Counts durable steps; from step ``at`` on, every one raises ``PowerCut``."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.steps = 0

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            self.steps += 1
            if self.at is not None and self.steps >= self.at:
                raise PowerCut(f"power cut at step {self.at} ({name})")
            return real(*args, **kwargs)

        return step


@contextmanager
def fuse(at: int | None) -> Iterator[Fuse]:
    blown = Fuse(at)
    with pytest.MonkeyPatch.context() as patch:
        for name in STEPS:
            patch.setattr(os, name, blown.wrap(name, getattr(os, name)))
        yield blown


def download(state: StateDir, release: Release, *, tries: int) -> None:
    """The updater's part: stream in chunks, checkpoint now and then, commit."""
    with open_inactive(state, release.target) as writer:
        while writer.offset < len(release.image):
            writer.write(release.image[writer.offset : writer.offset + CHUNK])
            if writer.offset // CHUNK % CHECKPOINT_EVERY == 0:
                writer.checkpoint()
        writer.commit(record=release.record, evidence=release.evidence, tries=tries, now=NOW)


@pytest.fixture
def old(line: SignedLine) -> Release:
    return line.release("1.0.0", 1, size=100_000)


@pytest.fixture
def new(line: SignedLine) -> Release:
    return line.release("1.1.0", 2, size=200_000)


@pytest.fixture
def template(tmp_path: Path, line: SignedLine, old: Release) -> Path:
    provision(tmp_path / "template", line, old)
    return tmp_path / "template"


def fresh(template: Path, name: str) -> StateDir:
    path = template.parent / name
    shutil.copytree(template, path)
    return StateDir(path)


def count_steps(template: Path, sequence: Callable[[StateDir], object]) -> int:
    state = fresh(template, "count")
    with fuse(None) as counter:
        sequence(state)
    return counter.steps


def cut_at(template: Path, k: int, sequence: Callable[[StateDir], object]) -> StateDir:
    state = fresh(template, f"cut-{k}")
    with pytest.raises(PowerCut), fuse(k):
        sequence(state)
    return state


def running_version(state: StateDir, slot: str) -> str:
    check = verify_slot(state, slot)
    assert check.ok and check.record is not None, check.reason
    return check.record.version


def test_kill_at_each_install_and_commit_step(template: Path, new: Release) -> None:
    def sequence(state: StateDir) -> None:
        download(state, new, tries=2)
        boot(state, health_check=None, now=NOW)

    total = count_steps(template, sequence)
    assert total > 30, "the sequence should have many durable steps"
    outcomes = set()
    for k in range(1, total + 1):
        state = cut_at(template, k, sequence)
        assert_consistent(state)
        committed = state.bootenv().active == "b"
        result = boot(state, health_check=None, now=NOW)
        outcomes.add(result.outcome)
        version = running_version(state, result.slot)
        assert version in {"1.0.0", "1.1.0"}, f"step {k}"
        if committed:
            assert version == "1.1.0", f"step {k}: went back after the commit"
        assert_consistent(state)
        if version == "1.0.0":  # the update is still possible, and completes
            if state.bootenv().pending is None:
                download(state, new, tries=2)
            boot(state, health_check=None, now=NOW)
        assert running_version(state, state.bootenv().active) == "1.1.0", f"step {k}"
        assert state.floor().security_version == 2, f"step {k}"
    assert {Outcome.BOOTED, Outcome.COMMITTED} <= outcomes


def test_kill_at_each_step_of_a_failed_trial_and_its_fall_back(
    template: Path, new: Release
) -> None:
    def sequence(state: StateDir) -> None:
        install(state, new, tries=1)
        boot(state, health_check=UNHEALTHY, now=NOW)

    total = count_steps(template, sequence)
    for k in range(1, total + 1):
        state = cut_at(template, k, sequence)
        assert_consistent(state)
        for _ in range(3):  # reboot until nothing is pending
            result = boot(state, health_check=UNHEALTHY, now=NOW)
            assert running_version(state, result.slot) in {"1.0.0", "1.1.0"}, f"step {k}"
        env = state.bootenv()
        assert (env.active, env.pending) == ("a", None), f"step {k}"
        assert running_version(state, "a") == "1.0.0"
        assert state.floor().security_version == 1, f"step {k}: floor rose for a failure"
        if new.record.sha256 in state.known_bad():
            with pytest.raises(InstallError) as caught:
                open_inactive(state, new.target)
            assert caught.value.event is EventType.KNOWN_BAD, f"step {k}"
        assert_consistent(state)


def test_kill_at_each_step_of_opening_an_already_sealed_slot(
    template: Path, old: Release, new: Release
) -> None:
    """Slot b holds a committed firmware (a verified fall-back) when a new download starts."""

    def sequence(state: StateDir) -> None:
        with open_inactive(state, new.target) as writer:
            writer.write(new.image[:CHUNK])
            writer.checkpoint()

    base = fresh(template, "sealed")
    install(base, old)
    base.write_bootenv(base.bootenv().with_changes(pending=None, tries_left=0))
    base.write_slot_record("b", replace(old.record, committed=True))  # it ran for good once
    total = count_steps(base.root, sequence)
    for k in range(1, total + 1):
        state = cut_at(base.root, k, sequence)
        assert_consistent(state)
        b = verify_slot(state, "b")
        assert b.ok or state.slot_record("b") is None, f"step {k}: unsealed slot {b.reason}"
        state.slot_image("a").write_bytes(b"decayed")
        result = boot(state, health_check=None, now=NOW)
        if b.ok:
            assert result.outcome is Outcome.SWITCHED, f"step {k}"
        else:
            assert result.outcome is Outcome.FAILSAFE, f"step {k}"


def test_kill_at_each_install_and_commit_step_then_lose_the_boot_records_r29(
    tmp_path: Path, line: SignedLine, old: Release, new: Release
) -> None:
    """R29, R25, R33: a power cut anywhere in an install and its commit, then bootenv.json
    and floor.json lost: the rebuild runs a committed firmware only (the new one only once
    its commit mark is durable), no trial is run on its behalf, and the floor comes only
    from committed firmware."""

    def sequence(state: StateDir) -> None:
        download(state, new, tries=2)
        boot(state, health_check=None, now=NOW)

    base = in_service(tmp_path / "in-service", line, old)
    total = count_steps(base.root, sequence)
    for k in range(1, total + 1):
        state = cut_at(base.root, k, sequence)
        new_committed = (record := state.slot_record("b")) is not None and record.committed
        for name in ("bootenv.json", "floor.json"):
            (state.root / name).write_bytes(b"{")
        result = boot(state, health_check=UNHEALTHY, now=NOW)
        assert result.outcome is Outcome.BOOTED, f"step {k}"
        running = state.slot_record(result.slot)
        assert running is not None and running.committed, f"step {k}"
        assert running_version(state, result.slot) == ("1.1.0" if new_committed else "1.0.0")
        assert state.floor().security_version == (2 if new_committed else 1), f"step {k}"
        assert "health_check_failed" not in [e["type"] for e in state.events.entries()]
        assert_consistent(state)


def test_kill_at_each_step_of_leaving_failsafe_then_lose_the_boot_record_r24_r34(
    tmp_path: Path, line: SignedLine, old: Release, new: Release
) -> None:
    """R24, R34, R33: a power cut anywhere in a signed recovery's commit, then bootenv.json
    lost: the log proves failsafe mode was left only once the recovery is committed and
    runs, so the rebuild keeps failsafe mode (or runs the committed recovery), never normal
    mode around the firmware that ran before it (``failsafe_left`` logged before the mark
    and the switch were durable let a cut between them do that)."""
    base = in_service(tmp_path / "in-service", line, old)
    install(base, new)
    assert boot(base, health_check=None, now=NOW).outcome is Outcome.COMMITTED
    enter_failsafe(base, now=NOW, reason="rollback attack")
    install(base, line.release("1.2.0", 3), recovery=True)  # slot a, on trial

    def sequence(state: StateDir) -> None:
        assert boot(state, health_check=None, now=NOW).outcome is Outcome.COMMITTED

    total = count_steps(base.root, sequence)
    recovered = False
    for k in range(1, total + 1):
        state = cut_at(base.root, k, sequence)
        (state.root / "bootenv.json").write_bytes(b"{")
        result = boot(state, health_check=None, now=NOW)
        env = state.bootenv()
        if env.mode is Mode.NORMAL:
            recovery = state.slot_record("a")
            assert (result.slot, result.outcome) == ("a", Outcome.BOOTED), f"step {k}"
            assert recovery is not None and recovery.committed, f"step {k}"
            recovered = True
        else:
            assert result.outcome is Outcome.FAILSAFE, f"step {k}"
        assert_consistent(state)
    assert recovered, "a cut after the last step leaves the committed recovery in normal mode"
