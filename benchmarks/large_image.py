"""Target 1: ``add`` of a large image costs one hash pass and flat memory.

Hashing is the work: ``add`` must run at no less than 0.9 of plain
``hashlib`` over the same file (so it makes no second pass), and its peak
memory, measured in a child process after imports, must stay under 64 MiB
whatever the image size (it streams).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmarks.fixtures import (
    IMAGE_NAME,
    LINE,
    People,
    make_repository,
    release_info,
    release_path,
    write_image,
)
from benchmarks.report import MIB, Check, heading, mib, table
from signer.authoring import add_firmware
from signer.repository import OfflineRepository

THROUGHPUT_TARGET = 0.9
MEMORY_TARGET = 64 * MIB
_PROJECT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ChildMemory:
    """What the child process reported, in bytes, and the kernel's view of it."""

    baseline: int
    peak: int
    peak_reset: bool
    import_peak: int
    maxrss: int
    seconds: float

    @property
    def extra(self) -> int:
        return self.peak - self.baseline


def run(*, size: int, rounds: int, workdir: Path, people: People, now: datetime) -> list[Check]:
    heading(f"add of a {mib(size)} image vs plain hashlib.sha256 (best of {rounds})")
    image = workdir / "image.bin"
    write_image(image, size=size)
    repo = workdir / "repo-large-image"
    make_repository(repo, people, now=now, bin_bits=None)
    expected = _plain_sha256(image)  # also warms the page cache for both sides
    hash_times, add_times = [], []
    for round_ in range(rounds):
        # Alternate which side goes first, so neither always inherits the other's cache state.
        hash_first = round_ % 2 == 0
        if hash_first:
            hash_times.append(_timed(lambda: _plain_sha256(image)))
        add_times.append(_timed_add(repo, image, version=f"3.0.{round_}", now=now))
        if not hash_first:
            hash_times.append(_timed(lambda: _plain_sha256(image)))
    _check_recorded(repo, version="3.0.0", expected=expected, now=now)
    best_hash, best_add = min(hash_times), min(add_times)
    ratio = best_hash / best_add
    table(
        ("side", "best", "throughput", "all runs (s)"),
        [
            ("hashlib.sha256", f"{best_hash:.3f} s", _rate(size, best_hash), _runs(hash_times)),
            ("add_firmware", f"{best_add:.3f} s", _rate(size, best_add), _runs(add_times)),
        ],
    )
    print(f"throughput ratio add / hashlib: {ratio:.3f}")

    memory = _child_add(repo, image, version="3.1.0")
    print("\npeak memory of one add, in a child process:")
    table(
        ("measure", "value"),
        [
            ("RSS after imports (baseline)", mib(memory.baseline)),
            (
                f"peak RSS during add (VmHWM{', reset' if memory.peak_reset else ''})",
                mib(memory.peak),
            ),
            ("peak over baseline", mib(memory.extra)),
            ("peak RSS during imports", mib(memory.import_peak)),
            ("child ru_maxrss (wait4, whole life)", mib(memory.maxrss)),
            ("child add time", f"{memory.seconds:.3f} s"),
        ],
    )
    if not memory.peak_reset:
        print("(could not reset the peak mark: the peak includes the imports, an upper bound)")
    return [
        Check(
            "add throughput / hashlib.sha256",
            f"{ratio:.3f}",
            f">= {THROUGHPUT_TARGET}",
            ratio >= THROUGHPUT_TARGET,
        ),
        Check(
            f"add peak memory over baseline ({mib(size)} image)",
            mib(memory.extra),
            f"< {mib(MEMORY_TARGET)}",
            memory.extra < MEMORY_TARGET,
        ),
    ]


def _plain_sha256(image: Path) -> str:
    """The baseline: the standard library's own streaming file hash."""
    with image.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _timed_add(repo: Path, image: Path, *, version: str, now: datetime) -> float:
    """The whole ``fwsign add`` (without keys): open, hash, edit, check, write."""
    start = time.perf_counter()
    add_firmware(
        OfflineRepository(repo, now=now),
        image=image,
        name=IMAGE_NAME,
        info=release_info(version),
    )
    return time.perf_counter() - start


def _check_recorded(repo: Path, *, version: str, expected: str, now: datetime) -> None:
    target = OfflineRepository(repo, now=now).targets(LINE).targets[release_path(version)]
    if target.hashes.get("sha256") != expected:
        raise RuntimeError("add recorded a digest that differs from hashlib's: benchmark invalid")


def _child_add(repo: Path, image: Path, *, version: str) -> ChildMemory:
    command = [sys.executable, "-m", "benchmarks._add_child", str(repo), str(image), version]
    with subprocess.Popen(command, cwd=_PROJECT, stdout=subprocess.PIPE) as child:
        output = child.stdout.read() if child.stdout else b""
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"the add child process failed with exit code {child.returncode}")
    report = json.loads(output)
    return ChildMemory(
        baseline=report["baseline_kib"] * 1024,
        peak=report["peak_kib"] * 1024,
        peak_reset=report["peak_reset"],
        import_peak=report["import_peak_kib"] * 1024,
        maxrss=usage.ru_maxrss * 1024,  # KiB on Linux
        seconds=report["seconds"],
    )


def _rate(size: int, seconds: float) -> str:
    return f"{size / MIB / seconds:.0f} MiB/s"


def _runs(times: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)
