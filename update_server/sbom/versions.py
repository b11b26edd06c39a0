"""Is a component's version one an advisory names? OSV's evaluation, conservatively (pure).

Rules:

- V1 A version in the advisory's ``versions`` list is affected (the same
  string; a leading ``v`` before a digit is not part of a version here).
- V2 A range holds a version as OSV evaluates it: its events ordered by
  version (``introduced: "0"`` first), a version is in when the last event
  that reaches it is an ``introduced`` one. ``introduced`` is inclusive,
  ``fixed`` exclusive, ``last_affected`` inclusive, and ``limit`` an
  exclusive upper bound of the whole range.
- V3 Versions are ordered by the range's type. ``SEMVER``: semantic
  version precedence (``repo_metadata.semver``, the order firmware versions
  already follow). ``ECOSYSTEM``: when the version and every version of the
  range are dotted numbers (``1.2.13``; ``1.2`` equals ``1.2.0``), by those
  numbers; else when they are all semantic versions, by precedence; else
  they cannot be ordered here (each ecosystem has its own order: Debian's
  epochs, OpenSSL's letters).
- V4 Affected when V1 or any range holds. Otherwise, when the version is
  missing or a range cannot order it, the answer is "unknown": a person
  must look, since a matcher that guessed "not affected" would hide the
  component. Otherwise not affected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from repo_metadata.semver import SemVer
from update_server.sbom.advisories import Affected, EventKind, Range, RangeEvent, RangeType

_DOTTED = re.compile(r"\d{1,9}(?:\.\d{1,9}){0,15}\Z", re.ASCII)
#: Events that share a version apply in this order (V2: introduced, then the ends).
_ORDER = {EventKind.INTRODUCED: 0, EventKind.LAST_AFFECTED: 1, EventKind.FIXED: 2}

#: A sort key: dotted numbers or a ``SemVer``, one kind per range.
Key = Callable[[str], Any]


class Verdict(StrEnum):
    AFFECTED = "affected"
    UNKNOWN = "unknown"
    NOT_AFFECTED = "not_affected"


def verdict(version: str, affected: Affected) -> Verdict:
    """V1-V4 for ``version`` against one affected package of an advisory."""
    version = _bare(version)
    if version and version in {_bare(v) for v in affected.versions}:
        return Verdict.AFFECTED
    held = [in_range(version, r) for r in affected.ranges] if version else [None]
    if True in held:
        return Verdict.AFFECTED
    return Verdict.UNKNOWN if None in held else Verdict.NOT_AFFECTED


def in_range(version: str, range_: Range) -> bool | None:
    """V2, V3: whether ``range_`` holds ``version``; None when they cannot be ordered."""
    version = _bare(version)
    key = ordering(range_.type, [version, *(_bare(e.version) for e in range_.events)])
    if key is None:
        return None
    at = key(version)
    events = sorted(
        (e for e in range_.events if e.kind is not EventKind.LIMIT), key=lambda e: _place(e, key)
    )
    held = False
    for event in events:
        held = _after(held, event, at, key)
    limits = [key(_bare(e.version)) for e in range_.events if e.kind is EventKind.LIMIT]
    return held and all(at < limit for limit in limits)


def _after(held: bool, event: RangeEvent, at: Any, key: Key) -> bool:
    """V2: whether the range holds ``at`` once ``event`` is passed."""
    if _zero(event):
        return True
    bound = key(_bare(event.version))
    if event.kind is EventKind.INTRODUCED:
        return held or at >= bound
    if event.kind is EventKind.FIXED:
        return held and at < bound
    return held and at <= bound  # last_affected


def ordering(kind: RangeType, versions: Sequence[str]) -> Key | None:
    """V3: the sort key that orders every one of ``versions`` (``"0"`` aside), or None."""
    named = [v for v in versions if v != "0"]
    if kind is RangeType.ECOSYSTEM and all(_DOTTED.match(v) for v in named):
        return _dotted
    if all(_is_semver(v) for v in named):
        return _semver
    return None


def _place(event: RangeEvent, key: Key) -> tuple[int, object, int]:
    if _zero(event):
        return (0, (), 0)
    return (1, key(_bare(event.version)), _ORDER[event.kind])


def _zero(event: RangeEvent) -> bool:
    return event.kind is EventKind.INTRODUCED and event.version == "0"


def _bare(version: str) -> str:
    return version[1:] if version[:1] in ("v", "V") and version[1:2].isdigit() else version


def _dotted(version: str) -> tuple[int, ...]:
    if version == "0":
        return ()
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _semver(version: str) -> SemVer:
    return SemVer.parse("0.0.0" if version == "0" else version)


def _is_semver(version: str) -> bool:
    try:
        SemVer.parse(version)
    except ValueError:
        return False
    return True
