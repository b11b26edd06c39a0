"""Printing figures and collecting the verdict on each target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Check:
    """One target: what was measured, what was wanted, and whether it was met."""

    name: str
    measured: str
    target: str
    met: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.met else "MISS"


def heading(title: str) -> None:
    print(f"\n== {title} ==")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``header``, columns right-aligned to their widest cell."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))


def summary(checks: Sequence[Check]) -> None:
    heading("targets")
    for check in checks:
        print(f"{check.verdict}  {check.name}: {check.measured} (target {check.target})")
    missed = sum(not check.met for check in checks)
    print(f"\n{len(checks) - missed} of {len(checks)} targets met")


def mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"


def millis(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
