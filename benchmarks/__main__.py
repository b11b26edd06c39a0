"""``python -m benchmarks``: run every benchmark, print figures and targets.

Exits 0 whatever the figures (benchmarks inform, they do not gate), unless
``--strict`` is given, then 1 if any target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import large_image, scale
from benchmarks.fixtures import People
from benchmarks.report import MIB, Check, summary

DEFAULT_SIZES = (10, 1_000, 10_000, 100_000)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--size-mib", type=int, default=1024, help="size of the large image (default 1024)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="large image: best of this many runs (default 3)"
    )
    parser.add_argument(
        "--releases",
        type=_sizes,
        default=DEFAULT_SIZES,
        help="product line sizes, comma-separated, smallest first is the base"
        " (default 10,1000,10000,100000)",
    )
    parser.add_argument(
        "--flat-max",
        type=int,
        default=10_000,
        help="largest product line also measured without bins (default 10000)",
    )
    parser.add_argument(
        "--adds", type=int, default=5, help="scaling: median of this many adds (default 5)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="run 'fwsign verify' on every product line built (slow at 100,000)",
    )
    parser.add_argument(
        "--only", choices=("large-image", "scale"), help="run only one of the benchmarks"
    )
    parser.add_argument("--tmp-dir", type=Path, help="where to build files (default: system temp)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any target is missed")
    return parser.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not sizes or sizes[0] < 2:
        raise argparse.ArgumentTypeError("product line sizes must be at least 2")
    return sizes


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, {_cpus()} CPUs")
    people, now = People.generate(), datetime.now(UTC)
    checks: list[Check] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fwsign-bench-", dir=args.tmp_dir) as tmp:
        workdir = Path(tmp)
        if args.only in (None, "large-image"):
            checks += large_image.run(
                size=args.size_mib * MIB,
                rounds=args.rounds,
                workdir=workdir,
                people=people,
                now=now,
            )
        if args.only in (None, "scale"):
            checks += scale.run(
                sizes=args.releases,
                flat_max=args.flat_max,
                adds=args.adds,
                verify=args.verify,
                workdir=workdir,
                people=people,
                now=now,
            )
    summary(checks)
    print(f"benchmarks ran in {time.perf_counter() - start:.0f} s")
    missed = any(not check.met for check in checks)
    return 1 if args.strict and missed else 0


def _cpus() -> str:
    return str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
