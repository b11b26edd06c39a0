"""Writing the inactive slot at its edges: refusals before any byte changes (R13, R24, R33).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36). Each test names the rule of ``client.slots`` it proves and checks what is
left behind: the boot environment, the slot's record and its progress.
"""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from client.errors import InstallError
from client.events import EventType
from client.slots import open_inactive
from client.state import BootEnv, DeviceIdentity, StateDir
from tests.client.helpers_state import NOW, Release, SignedLine, install

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def update(line: SignedLine) -> Release:
    return line.release("1.1.0", 2, size=50_000)


def test_r13_a_target_larger_than_a_slot_is_refused_before_the_slot_changes(
    state: StateDir, update: Release
) -> None:
    state.write_identity(DeviceIdentity("pump-0001", "pump-x100", update.record.length - 1))
    with pytest.raises(InstallError, match="a slot holds") as caught:
        open_inactive(state, update.target)
    assert caught.value.event is EventType.INSUFFICIENT_SPACE
    assert not state.slot_image("b").exists()
    assert state.bootenv() == BootEnv(active="a")


def test_r13_a_target_larger_than_the_free_storage_is_refused_before_the_slot_changes(
    state: StateDir, update: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk (simulated by what the storage reports) would lose the log and floors."""
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: Usage(10**9, 10**9, 1000))
    with pytest.raises(InstallError, match="free storage") as caught:
        open_inactive(state, update.target)
    assert caught.value.event is EventType.INSUFFICIENT_SPACE
    assert not state.slot_image("b").exists()


@pytest.mark.parametrize("offset", [-1, True, 10**9], ids=["negative", "boolean", "past-the-end"])
def test_r24_a_progress_record_with_an_impossible_offset_starts_from_zero(
    state: StateDir, update: Release, offset: object
) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image[:4096])
        writer.checkpoint()
    progress = json.loads(state.slot_progress("b").read_text())
    progress["offset"] = offset
    state.slot_progress("b").write_text(json.dumps(progress))
    with open_inactive(state, update.target) as writer:
        assert writer.offset == 0


def test_r24_a_damaged_slot_record_is_no_reason_to_resume(state: StateDir, update: Release) -> None:
    """The record of the slot being written cannot be read: start over, never trust it."""
    state.slots_dir.mkdir(parents=True, exist_ok=True)
    state.slot_record_file("b").write_text('{"committed": "yes"}')
    with open_inactive(state, update.target) as writer:
        assert writer.offset == 0
    assert state.slot_record("b") is None  # unbootable before its bytes change


def test_r13_a_closed_writer_writes_nothing(state: StateDir, update: Release) -> None:
    writer = open_inactive(state, update.target)
    writer.close()
    with pytest.raises(InstallError, match="slot b is closed"):
        writer.write(update.image)
    assert state.slot_image("b").stat().st_size == 0


def test_r33_mark_pending_refuses_an_absurd_number_of_tries_or_an_unsealed_slot(
    state: StateDir, update: Release
) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        with pytest.raises(ValueError, match="tries"):
            writer.mark_pending(record=update.record, tries=0, now=NOW)
        with pytest.raises(InstallError, match="not sealed"):
            writer.mark_pending(record=update.record, tries=3, now=NOW)
    assert state.bootenv() == BootEnv(active="a")


def test_r33_a_boot_environment_changed_while_writing_is_not_overwritten(
    state: StateDir, update: Release
) -> None:
    """Another install (or a switch to slot b) happened meanwhile: this one never marks."""
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        writer.seal(record=update.record, evidence=update.evidence)
        state.write_bootenv(BootEnv(active="b"))
        with pytest.raises(InstallError, match="boot environment changed"):
            writer.mark_pending(record=update.record, tries=3, now=NOW)
    assert state.bootenv() == BootEnv(active="b")


def test_r13_aborting_a_download_whose_image_is_gone_forgets_its_progress(
    state: StateDir, update: Release
) -> None:
    writer = open_inactive(state, update.target)
    writer.write(update.image[:4096])
    writer.checkpoint()
    Path(state.slot_image("b")).unlink()
    writer.abort()
    assert not state.slot_progress("b").exists()
    assert not state.slot_image("b").exists()
    assert install(state, update) == "b"  # the next install starts from zero and works
