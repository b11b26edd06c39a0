"""A real process killed with SIGKILL at random points while it writes a large slot.

The child (``child()`` below, run in a fresh interpreter) downloads a 32 MiB
firmware into the inactive slot with a checkpoint per MiB, commits it and
boots it, printing a line at each stage. The parent kills it after a random
number of lines plus a random delay (odd seeds while it writes, even ones
while it commits or boots), reboots the device itself, and checks
that the slot it runs verifies and is the old firmware or, once committed,
the new one; then it lets the child finish, which must resume from the last
checkpoint it announced. The seed is in the test id, to replay a failure.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from client.boot import boot
from client.evidence import read_evidence, write_evidence
from client.integrity import verify_slot
from client.slots import TargetRef, open_inactive
from client.state import SlotRecord, StateDir
from tests.client.helpers_state import NOW, SignedLine, assert_consistent, image_bytes, provision

MIB = 1024 * 1024
SIZE = 32 * MIB
CHUNK = 256 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 10


def child() -> None:
    """Install the release in ``argv[2]`` on the device in ``argv[1]``, then reboot."""
    state, release = StateDir(Path(sys.argv[1])), Path(sys.argv[2])
    record = SlotRecord(**json.loads((release / "record.json").read_text()))
    env = state.bootenv()
    running = state.slot_record(env.active)
    if env.pending is None and (running is None or running.version != record.version):
        image = image_bytes(record.version, record.length)
        target = TargetRef(record.target_path, record.length, record.sha256)
        with open_inactive(state, target) as writer:
            print(f"resume {writer.offset}", flush=True)  # noqa: T201
            while writer.offset < record.length:
                writer.write(image[writer.offset : writer.offset + CHUNK])
                if writer.offset % MIB == 0:
                    writer.checkpoint()
                    print(f"checkpoint {writer.offset}", flush=True)  # noqa: T201
            print("commit", flush=True)  # noqa: T201
            evidence = read_evidence(release / "evidence")
            writer.commit(record=record, evidence=evidence, now=NOW)
    print("boot", flush=True)  # noqa: T201
    boot(state, health_check=None, now=NOW)
    print("done", flush=True)  # noqa: T201


def child_argv(state: StateDir, release: Path) -> list[str]:
    code = "from tests.client.test_power_kill import child; child()"
    return [sys.executable, "-c", code, str(state.root), str(release)]


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A device running 1.0.0, and release 1.1.0 (32 MiB) laid out for the child."""
    base = tmp_path_factory.mktemp("kill")
    line = SignedLine(base / "repo")
    old = line.release("1.0.0", 1)
    new = line.release("1.1.0", 2, size=SIZE)
    provision(base / "template", line, old)
    release = base / "release"
    release.mkdir()
    (release / "record.json").write_text(json.dumps(asdict(new.record)))
    write_evidence(release / "evidence", new.evidence)
    return base / "template", release


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_sigkill_while_writing_a_large_slot(
    device: tuple[Path, Path], tmp_path: Path, seed: int
) -> None:
    template, release = device
    rng = random.Random(seed)  # noqa: S311  kill points, not secrets
    state = StateDir(tmp_path / "device")
    shutil.copytree(template, state.root)
    process = subprocess.Popen(
        child_argv(state, release), stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    assert process.stdout is not None
    if seed % 2:  # while writing
        wait_for, delay = rng.randint(1, 33), rng.uniform(0, 0.02)
    else:  # while committing (hashing 32 MiB again, sealing) or booting
        wait_for, delay = rng.choice([34, 35]), rng.uniform(0, 0.15)
    lines = [process.stdout.readline().strip() for _ in range(wait_for)]
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    committed = state.bootenv().active == "b"
    assert_consistent(state)

    result = boot(state, health_check=None, now=NOW)  # the reboot after the power cut
    check = verify_slot(state, result.slot)
    assert check.ok and check.record is not None, check.reason
    assert check.record.version in {"1.0.0", "1.1.0"}
    if committed:
        assert check.record.version == "1.1.0"

    finish = subprocess.run(
        child_argv(state, release), capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    announced = [int(line.split()[1]) for line in lines if line.startswith("checkpoint")]
    if lines[-1].startswith("checkpoint") and check.record.version == "1.0.0":
        resumed = int(finish.stdout.split()[1])
        assert resumed >= announced[-1], finish.stdout
    released = SlotRecord(**json.loads((release / "record.json").read_text()))
    assert verify_slot(state, state.bootenv().active).record == replace(released, committed=True)
    assert_consistent(state)
