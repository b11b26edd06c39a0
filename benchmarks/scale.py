"""Target 2: adding one release costs no more as a product line grows.

With hashed bins (``bins_for(N)`` bits), an add rewrites and re-signs one
small bin, so its time and the bytes it re-signs must grow no faster than
log N: each size's figure, divided by the smallest size's, must stay at or
under log2(N) / log2(N_smallest). A flat role (one file listing every
release) is measured beside it for comparison, up to ``--flat-max``.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from benchmarks.fixtures import (
    IMAGE_NAME,
    People,
    fill_product_line,
    make_repository,
    release_info,
    write_image,
)
from benchmarks.report import Check, heading, millis, table
from signer import layout
from signer.authoring import add_firmware, bins_for
from signer.inspect import verify_repository
from signer.repository import OfflineRepository

SMALL_IMAGE = 64 * 1024
_FileState = tuple[int, int, int]  # inode, mtime in ns, size


@dataclass(frozen=True)
class AddCost:
    """Median cost of one add to a product line of ``releases`` releases."""

    releases: int
    bin_bits: int | None
    setup_seconds: float
    times: tuple[float, ...]
    sizes: tuple[int, ...]
    files: tuple[int, ...]

    @property
    def layout(self) -> str:
        return "flat" if self.bin_bits is None else f"{2**self.bin_bits} bins"

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def resigned(self) -> float:
        return statistics.median(self.sizes)


def run(
    *,
    sizes: Sequence[int],
    flat_max: int,
    adds: int,
    verify: bool,
    workdir: Path,
    people: People,
    now: datetime,
) -> list[Check]:
    heading(f"one add to a product line of N releases (median of {adds} successive adds)")
    image = workdir / "small.bin"
    write_image(image, size=SMALL_IMAGE)
    measure = _Measure(workdir, people, now, image, adds=adds, verify=verify)
    binned = [measure(n, bins_for(n)) for n in sizes]
    flat = [measure(n, None) for n in sizes if n <= flat_max]
    base = binned[0]
    rows, checks = [], []
    for cost in binned:
        allowed = math.log2(cost.releases) / math.log2(base.releases)
        time_ratio, size_ratio = cost.seconds / base.seconds, cost.resigned / base.resigned
        rows.append(_row(cost, time_ratio, size_ratio, f"{allowed:.2f}"))
        if cost is base:
            continue
        for what, ratio in (("time", time_ratio), ("bytes re-signed", size_ratio)):
            checks.append(
                Check(
                    f"add {what} with bins, N={cost.releases:,} vs N={base.releases:,}",
                    f"x{ratio:.2f}",
                    f"<= x{allowed:.2f} (log2 N / log2 {base.releases:,})",
                    ratio <= allowed,
                )
            )
    for cost in flat:
        rows.append(_row(cost, cost.seconds / base.seconds, cost.resigned / base.resigned, "-"))
    table(
        (
            "releases",
            "layout",
            "setup",
            "add (median)",
            "x time",
            "bytes re-signed",
            "x bytes",
            "log ratio",
            "files",
        ),
        rows,
    )
    print("x time, x bytes: against the smallest product line with bins;")
    print("files: role files the add rewrote (from inode, mtime and size before and after);")
    print("  each is also kept as N.<role>.json, a copy of the same bytes, not counted.")
    _compare(binned, flat)
    return checks


def _row(cost: AddCost, time_ratio: float, size_ratio: float, allowed: str) -> tuple[str, ...]:
    return (
        f"{cost.releases:,}",
        cost.layout,
        f"{cost.setup_seconds:.1f} s",
        millis(cost.seconds),
        f"{time_ratio:.2f}",
        f"{cost.resigned:,.0f}",
        f"{size_ratio:.2f}",
        allowed,
        "/".join(sorted({str(f) for f in cost.files})),
    )


def _compare(binned: Sequence[AddCost], flat: Sequence[AddCost]) -> None:
    by_size = {cost.releases: cost for cost in binned}
    for cost in flat:
        bins = by_size[cost.releases]
        print(
            f"N={cost.releases:,}: flat costs x{cost.seconds / bins.seconds:.1f} the time"
            f" and x{cost.resigned / bins.resigned:.1f} the bytes of bins"
        )


class _Measure:
    """Builds a product line of a given size and times successive adds to it."""

    def __init__(
        self,
        workdir: Path,
        people: People,
        now: datetime,
        image: Path,
        *,
        adds: int,
        verify: bool,
    ) -> None:
        self.workdir, self.people, self.now, self.image = workdir, people, now, image
        self.adds, self.verify = adds, verify

    def __call__(self, releases: int, bin_bits: int | None) -> AddCost:
        repo = self.workdir / f"repo-{releases}-{'flat' if bin_bits is None else 'bins'}"
        start = time.perf_counter()
        make_repository(repo, self.people, now=self.now, bin_bits=bin_bits)
        fill_product_line(repo, self.people, now=self.now, releases=releases)
        setup = time.perf_counter() - start
        if self.verify:
            self._verify(repo, releases)
        self._add(repo, version="2.0.0")  # warm-up, untimed: first-touch costs are not the add's
        times, sizes, files = [], [], []
        for index in range(1, self.adds + 1):
            seconds, resigned, rewritten = self._add(repo, version=f"2.0.{index}")
            times.append(seconds)
            sizes.append(resigned)
            files.append(rewritten)
        shutil.rmtree(repo)
        cost = AddCost(releases, bin_bits, setup, tuple(times), tuple(sizes), tuple(files))
        print(f"  N={releases:,} {cost.layout}: setup {setup:.1f} s, add {millis(cost.seconds)}")
        return cost

    def _add(self, repo: Path, *, version: str) -> tuple[float, int, int]:
        """One ``fwsign add --key alice``: open, hash, edit, sign, check, write."""
        before = _file_states(repo)
        start = time.perf_counter()
        written = add_firmware(
            OfflineRepository(repo, now=self.now, signers=[self.people["alice"]]),
            image=self.image,
            name=IMAGE_NAME,
            info=release_info(version),
        )
        seconds = time.perf_counter() - start
        after = _file_states(repo)
        touched = {name for name, state in after.items() if before.get(name) != state}
        # Each signed role is also kept as N.<role>.json (fwsign sign checks a
        # later role against it): a copy of the bytes re-signed, not counted.
        changed = {name for name in touched if not layout.is_versioned_file(name)}
        claimed = {layout.role_file(repo, role).name for role in written}
        kept = {name.split(".", 1)[1] for name in touched - changed}
        if changed != claimed or not kept <= claimed:
            raise RuntimeError(f"add reported {sorted(claimed)} but rewrote {sorted(touched)}")
        return seconds, sum(after[name][2] for name in changed), len(changed)

    def _verify(self, repo: Path, releases: int) -> None:
        report = verify_repository(repo, now=self.now)
        if not report.ok or report.targets != releases:
            raise RuntimeError(f"built repository does not verify: {report.failures[:3]}")


def _file_states(repo: Path) -> dict[str, _FileState]:
    states = {}
    with os.scandir(layout.metadata_dir(repo)) as entries:
        for entry in entries:
            info = entry.stat()
            states[entry.name] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return states
