"""Semantic versions (semver.org 2.0.0): parsing and precedence.

Firmware selection and ``min_installed_version`` compare versions, so the
ordering must be the spec's exactly: numeric core first, a pre-release sorts
before its release, build metadata never counts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z",
    re.ASCII,  # without it \d takes "\u0661" (Arabic-Indic one); "$" takes a final "\n"
)
_MAX_LENGTH = 128


@functools.total_ordering
@dataclass(frozen=True)
class SemVer:
    """A parsed semantic version; compares by semver precedence."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """Parse ``text``; raise ``ValueError`` naming the expected form."""
        if not isinstance(text, str) or len(text) > _MAX_LENGTH:
            raise ValueError(f"not a semantic version: {text!r}")
        match = _SEMVER.match(text)
        if match is None:
            raise ValueError(f"not a semantic version (expected MAJOR.MINOR.PATCH): {text!r}")
        major, minor, patch, pre, build = match.groups()
        return cls(
            int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or ""
        )

    @classmethod
    def reported(cls, text: str | None) -> SemVer | None:
        """A version a device reported, or None when it reported none or no semantic
        version: such a version counts as unknown, never as an error."""
        if text is None:
            return None
        try:
            return cls.parse(text)
        except ValueError:
            return None

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def _key(self) -> tuple[object, ...]:
        # A release outranks any of its pre-releases; numeric identifiers sort
        # numerically and below alphanumeric ones (semver.org, item 11).
        pre: tuple[tuple[int, int, str], ...] = tuple(
            (0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease
        )
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: SemVer) -> bool:
        return self._key() < other._key()
