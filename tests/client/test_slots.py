"""Writing the inactive slot: only verified bytes ever become bootable (R13).

Each test names the threat; each checks the error and its event, the slot's
files and the boot environment left behind.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from client.errors import FailsafeError, InstallError
from client.events import EventType
from client.slots import TargetRef, open_inactive
from client.state import BootEnv, Mode, StateDir
from tests.client.helpers_state import (
    NOW,
    Release,
    SignedLine,
    assert_consistent,
    event_types,
    install,
)


@pytest.fixture
def update(line: SignedLine) -> Release:
    return line.release("1.1.0", 2, size=300_000)


def untouched(state: StateDir) -> None:
    """The device still runs slot a, nothing pending, slot b not bootable."""
    assert state.bootenv() == BootEnv(active="a")
    assert state.slot_record("b") is None
    assert not state.slot_evidence("b").exists()
    assert_consistent(state)


def test_install_marks_the_slot_pending_only_once_sealed(state: StateDir, update: Release) -> None:
    slot = install(state, update, tries=2)
    assert slot == "b"
    assert state.bootenv() == BootEnv(active="a", pending="b", tries_left=2, previous="a")
    assert state.slot_record("b") == replace(update.record, committed=False)  # never legacy
    assert state.slot_image("b").read_bytes() == update.image
    assert not state.slot_progress("b").exists()
    assert event_types(state) == ["installed"]
    assert_consistent(state)


def test_file_swapped_between_verification_and_install_is_caught(
    state: StateDir, update: Release
) -> None:
    """The updater verified the bytes it streamed; the slot on disk is then replaced."""
    writer = open_inactive(state, update.target)
    writer.write(update.image)
    writer.checkpoint()
    swapped = bytearray(update.image)
    swapped[-1] ^= 1
    state.slot_image("b").write_bytes(bytes(swapped))
    with pytest.raises(InstallError) as caught:
        writer.commit(record=update.record, evidence=update.evidence, now=NOW)
    assert caught.value.event is EventType.BAD_HASH
    assert state.slot_image("b").stat().st_size == 0
    assert not state.slot_progress("b").exists()
    untouched(state)


def test_record_for_another_target_than_the_one_written_is_refused(
    state: StateDir, update: Release, factory: Release
) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        with pytest.raises(InstallError) as caught:
            writer.commit(record=factory.record, evidence=factory.evidence, now=NOW)
    assert caught.value.event is EventType.BAD_HASH
    untouched(state)


def test_endless_data_is_cut_at_the_signed_length(state: StateDir, update: Release) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        with pytest.raises(InstallError) as caught:
            writer.write(b"x")
    assert caught.value.event is EventType.TOO_LONG
    assert state.slot_image("b").stat().st_size == 0
    untouched(state)


def test_incomplete_image_is_not_committed(state: StateDir, update: Release) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image[:1000])
        with pytest.raises(InstallError, match="1000 of"):
            writer.commit(record=update.record, evidence=update.evidence, now=NOW)
    untouched(state)


def test_evidence_that_does_not_prove_the_record_is_refused(
    state: StateDir, update: Release
) -> None:
    evidence = dict(update.evidence)
    del evidence["pump-x100.json"]
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        with pytest.raises(InstallError) as caught:
            writer.commit(record=update.record, evidence=evidence, now=NOW)
    assert caught.value.event is EventType.INTEGRITY_FAILURE
    untouched(state)


def test_opening_the_slot_makes_it_unbootable_before_its_bytes_change(
    state: StateDir, factory: Release, update: Release
) -> None:
    """The inactive slot held a verified firmware; writing starts by unsealing it."""
    install(state, factory)  # slot b: a sealed copy
    state.write_bootenv(BootEnv(active="a"))
    assert state.slot_record("b") is not None
    with open_inactive(state, update.target):
        assert state.slot_record("b") is None
        assert not state.slot_evidence("b").exists()


def test_interrupted_download_resumes_from_its_last_checkpoint(
    state: StateDir, update: Release
) -> None:
    writer = open_inactive(state, update.target)
    writer.write(update.image[:100_000])
    writer.checkpoint()
    writer.write(update.image[100_000:150_000])  # never checkpointed: may not be on disk
    writer.close()
    resumed = open_inactive(state, update.target)
    assert resumed.offset == 100_000
    assert state.slot_image("b").stat().st_size == 100_000
    resumed.write(update.image[100_000:])
    resumed.commit(record=update.record, evidence=update.evidence, now=NOW)
    assert state.bootenv().pending == "b"
    assert_consistent(state)


def test_download_of_another_target_starts_from_zero(
    state: StateDir, line: SignedLine, update: Release
) -> None:
    other = line.release("1.2.0", 2)
    with open_inactive(state, other.target) as writer:
        writer.write(other.image[:4096])
        writer.checkpoint()
    with open_inactive(state, update.target) as writer:
        assert writer.offset == 0
        assert state.slot_image("b").stat().st_size == 0


def test_progress_record_with_a_forged_offset_starts_from_zero(
    state: StateDir, update: Release
) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image[:4096])
        writer.checkpoint()
    state.slot_progress("b").write_text('{"offset": 999999999}')
    with open_inactive(state, update.target) as writer:
        assert writer.offset == 0


def test_aborted_download_forgets_its_bytes(state: StateDir, update: Release) -> None:
    writer = open_inactive(state, update.target)
    writer.write(update.image[:4096])
    writer.checkpoint()
    writer.abort()
    with open_inactive(state, update.target) as resumed:
        assert resumed.offset == 0


def test_failsafe_refuses_an_install(state: StateDir, update: Release) -> None:
    state.write_bootenv(BootEnv(active="a", mode=Mode.FAILSAFE))
    with pytest.raises(FailsafeError) as caught:
        open_inactive(state, update.target)
    assert caught.value.event is EventType.FAILSAFE_REFUSED
    assert not state.slot_image("b").exists()


def test_failsafe_accepts_a_signed_recovery(state: StateDir, update: Release) -> None:
    state.write_bootenv(BootEnv(active="a", mode=Mode.FAILSAFE))
    install(state, update, recovery=True)
    env = state.bootenv()
    assert (env.pending, env.recovery, env.mode) == ("b", True, Mode.FAILSAFE)


def test_failsafe_entered_during_the_download_refuses_the_commit(
    state: StateDir, update: Release
) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        state.write_bootenv(BootEnv(active="a", mode=Mode.FAILSAFE))
        with pytest.raises(FailsafeError):
            writer.commit(record=update.record, evidence=update.evidence, now=NOW)
    assert state.bootenv().pending is None


def test_second_install_before_the_trial_boot_is_refused(
    state: StateDir, update: Release, line: SignedLine
) -> None:
    install(state, update)
    with pytest.raises(InstallError, match="fwclient boot"):
        open_inactive(state, line.release("1.2.0", 2).target)
    assert state.slot_record("b") == replace(update.record, committed=False)


def test_firmware_that_failed_here_is_not_installed_again(state: StateDir, update: Release) -> None:
    state.add_known_bad(update.record, at=NOW)
    with pytest.raises(InstallError) as caught:
        open_inactive(state, update.target)
    assert caught.value.event is EventType.KNOWN_BAD
    untouched(state)


def test_target_reference_is_validated() -> None:
    with pytest.raises(ValueError, match="sha256"):
        TargetRef("pump-x100/fw.bin", 1, "ABC")
    with pytest.raises(ValueError, match="length"):
        TargetRef("pump-x100/fw.bin", -1, hashlib.sha256().hexdigest())
    with pytest.raises(ValueError, match="length"):
        TargetRef("pump-x100/fw.bin", True, hashlib.sha256().hexdigest())


def test_commit_refuses_an_absurd_number_of_tries(state: StateDir, update: Release) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image)
        with pytest.raises(ValueError, match="tries"):
            writer.commit(record=update.record, evidence=update.evidence, tries=0)
    assert replace(state.bootenv()) == BootEnv(active="a")
