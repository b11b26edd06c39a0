"""At boot, what writes cut short by a power loss left behind is removed, and only that.

A record is staged in a temporary file beside it (then synced and renamed), a
slot's evidence in a temporary directory, ngclient's metadata likewise: a power
cut in the middle leaves the staged copy. Nothing reads it, but such files pile
up on a device that loses power often. ``boot`` (a reboot) removes them and
logs it; it never removes the partial download a resume needs (the slot's
bytes and its progress record) nor anything outside the state directory, and
the device still boots a verified image.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from client.boot import Outcome, boot
from client.events import EventType
from client.evidence import write_evidence
from client.slots import open_inactive
from client.state import Floor, StateDir
from tests.client.helpers_state import NOW, Release, SignedLine, event_types, provision
from tests.client.sim import tree
from tests.client.test_power import (
    CHUNK,
    PowerCut,
    count_steps,
    cut_at,
    download,
    fresh,
    fuse,
    running_version,
)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Release]:
    """A device running 1.0.0 (a template to copy), and the signed release 1.1.0."""
    line = SignedLine(tmp_path / "repo")
    template = tmp_path / "template"
    provision(template, line, line.release("1.0.0", 1))
    return template, line.release("1.1.0", 2, size=100_000)


@pytest.fixture
def state(signed: tuple[Path, Release]) -> StateDir:
    return fresh(signed[0], "device")


@pytest.fixture
def update(signed: tuple[Path, Release]) -> Release:
    return signed[1]


def cut(write: Callable[[], object], *, at: int = 1) -> None:
    """Run ``write`` with the power cut at its ``at``-th durable step (nothing after it runs)."""
    with pytest.raises(PowerCut), fuse(at):
        write()


def staged(root: Path) -> list[str]:
    """Every temporary name under ``root`` (a staged directory once, not its files)."""
    names = [path.relative_to(root).as_posix() for path in root.rglob("*")]
    found = [name for name in names if name.endswith(".tmp") or name.startswith("metadata/tmp")]
    return sorted(name for name in found if not any(name.startswith(f"{d}/") for d in found))


def removed(state: StateDir) -> list[str]:
    entry = state.events.last(EventType.LEFTOVERS_REMOVED)
    assert entry is not None, "no leftovers_removed event"
    return list(entry["detail"]["files"])


def unmarked(files: dict[str, bytes]) -> dict[str, object]:
    """Slot b's files, its record without the committed mark (a commit's only change)."""
    record = json.loads(files.get("slot_b.json", b"{}"))
    record.pop("committed", None)
    return {**files, "slot_b.json": record}


def test_boot_removes_exactly_what_interrupted_writes_left(
    state: StateDir, update: Release
) -> None:
    kept = tree(state.root)
    cut(lambda: state.write_bootenv(state.bootenv().with_changes(tries_left=0)))
    cut(lambda: state.write_floor(Floor(2, "1.1.0")))
    cut(lambda: write_evidence(state.slot_evidence("b"), update.evidence))
    state.metadata_dir.mkdir()
    cut(
        lambda: Updater(
            str(state.metadata_dir),
            "https://updates.test/metadata/",
            bootstrap=state.trusted_root.read_bytes(),
        )
    )
    left = staged(state.root)
    assert len(left) == 4, left
    assert "slots/.slot_b.evidence.tmp" in left

    result = boot(state, health_check=None, now=NOW)

    assert (result.slot, result.outcome) == ("a", Outcome.BOOTED)
    assert removed(state) == left
    assert staged(state.root) == []
    # What this boot writes: slot a's record predates the committed mark, and the
    # first boot that runs it as the active slot marks it.
    written = {"events.log", "lock", "slots/slot_a.json"}
    untouched = {name: data for name, data in tree(state.root).items() if name not in written}
    assert untouched == {name: data for name, data in kept.items() if name not in written}
    assert event_types(state) == ["leftovers_removed", "booted"]


def test_boot_keeps_the_partial_download_a_resume_needs(state: StateDir, update: Release) -> None:
    with open_inactive(state, update.target) as writer:
        writer.write(update.image[:CHUNK])
        writer.checkpoint()
        writer.write(update.image[CHUNK : 2 * CHUNK])
        cut(writer.checkpoint, at=2)  # the slot synced; the cut in the progress record's write
    partial = {
        name: (state.slots_dir / name).read_bytes()
        for name in ("slot_b.bin", "slot_b.progress.json")
    }
    left = staged(state.root)
    assert len(left) == 1 and left[0].startswith("slots/.slot_b.progress.json."), left

    assert boot(state, health_check=None, now=NOW).outcome is Outcome.BOOTED

    assert removed(state) == left
    assert {name: (state.slots_dir / name).read_bytes() for name in partial} == partial
    with open_inactive(state, update.target) as writer:
        assert writer.offset == CHUNK  # from the durable checkpoint
        writer.write(update.image[writer.offset :])
        writer.commit(record=update.record, evidence=update.evidence, now=NOW)
    assert boot(state, health_check=None, now=NOW).outcome is Outcome.COMMITTED
    assert running_version(state, "b") == "1.1.0"


def test_boot_never_removes_anything_outside_the_state_directory(
    state: StateDir, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    lookalikes = {"tmpabcd1234": b"not the device's", ".bootenv.json.abcd1234.tmp": b"nor this"}
    for name, data in lookalikes.items():
        (outside / name).write_bytes(data)
    state.metadata_dir.symlink_to(outside, target_is_directory=True)
    (state.root / ".floor.json.abcd1234.tmp").symlink_to(outside / ".bootenv.json.abcd1234.tmp")

    assert boot(state, health_check=None, now=NOW).outcome is Outcome.BOOTED

    assert {path.name: path.read_bytes() for path in outside.iterdir()} == lookalikes
    assert (state.root / ".floor.json.abcd1234.tmp").is_symlink()
    assert event_types(state) == ["booted"]


def test_after_a_cut_at_each_install_step_the_reboot_leaves_nothing_staged(
    signed: tuple[Path, Release],
) -> None:
    template, update = signed

    def sequence(state: StateDir) -> None:
        download(state, update, tries=2)

    cleaned = 0
    for k in range(1, count_steps(template, sequence) + 1):
        state = cut_at(template, k, sequence)
        left = staged(state.root)
        partial = {
            name: data for name, data in tree(state.slots_dir).items() if name.startswith("slot_b.")
        }
        result = boot(state, health_check=None, now=NOW)
        assert running_version(state, result.slot) in {"1.0.0", "1.1.0"}, f"step {k}"
        assert staged(state.root) == [], f"step {k}"
        if left:
            assert removed(state) == left, f"step {k}"
            cleaned += 1
        after = {
            name: data for name, data in tree(state.slots_dir).items() if name.startswith("slot_b.")
        }
        assert unmarked(after) == unmarked(partial), f"step {k}: the slot's download changed"
        shutil.rmtree(state.root)
    assert cleaned > 5, "the cuts should leave staged files"
