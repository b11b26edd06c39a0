"""Advisories: the subset of OSV (https://ossf.github.io/osv-schema/) the matcher reads.

Pure: bytes in, ``Advisory`` values out, or ``AdvisoryError`` naming the
record and the field. Rules:

- A1 The file is UTF-8 JSON: one OSV record, a list of them, or an object
  ``{"vulns": [...]}`` (the answer of osv.dev's query API).
- A2 A record has an ``id`` (a non-empty string) and an ``affected`` list
  (absent: it affects nothing here). A record with ``withdrawn`` set no
  longer applies and is skipped.
- A3 Each ``affected`` entry names its package: ``ecosystem`` and ``name``
  (strings), optionally ``purl`` (a package URL: it then identifies the
  package, ``documents.PackageUrl``). An entry without a package (a
  repository-only advisory) is refused: no SBOM component could be held
  against it.
- A4 ``ranges`` of type ``SEMVER`` or ``ECOSYSTEM``: ``events``, each with
  exactly one of ``introduced``, ``fixed``, ``last_affected``, ``limit``
  (a string), at least one ``introduced``; a ``SEMVER`` range's versions are
  semantic versions (``introduced: "0"``: from the first version).
  ``GIT`` ranges name commits no SBOM lists: skipped when the entry also has
  ``versions`` or another range (OSV's own converters list a git range's
  released versions there), refused when they are all it has. Any other
  type is refused.
- A5 ``versions`` is a list of strings, each an affected version as the
  ecosystem writes it (matched exactly).
- A6 Everything else (severity, references, database fields) is ignored.

A refusal stops the whole run (``fwserver sbom match`` exit status 2): a
matcher that skipped what it cannot read would report "nothing found" for
an advisory it never looked at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from repo_metadata.semver import SemVer
from update_server.sbom.documents import PackageUrl, parse_purl
from update_server.sbom.errors import AdvisoryError


class RangeType(StrEnum):
    SEMVER = "SEMVER"
    ECOSYSTEM = "ECOSYSTEM"


class EventKind(StrEnum):
    INTRODUCED = "introduced"
    FIXED = "fixed"
    LAST_AFFECTED = "last_affected"
    LIMIT = "limit"


@dataclass(frozen=True)
class RangeEvent:
    kind: EventKind
    version: str


@dataclass(frozen=True)
class Range:
    type: RangeType
    events: tuple[RangeEvent, ...]


@dataclass(frozen=True)
class Package:
    """An advisory's package: OSV ecosystem and name, or its package URL (A3)."""

    ecosystem: str
    name: str
    purl: PackageUrl | None = None


@dataclass(frozen=True)
class Affected:
    package: Package
    ranges: tuple[Range, ...]
    versions: frozenset[str]


@dataclass(frozen=True)
class Advisory:
    id: str
    summary: str
    aliases: tuple[str, ...]
    affected: tuple[Affected, ...]


def load_advisories(data: bytes) -> tuple[Advisory, ...]:
    """A1-A6: the advisories of an OSV file; ``AdvisoryError`` for anything else."""
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise AdvisoryError(f"the advisories file is not UTF-8: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise AdvisoryError(
            f"the advisories file is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    return tuple(
        advisory
        for index, record in enumerate(_records(document))
        if (advisory := _advisory(record, index)) is not None
    )


def _records(document: object) -> list[object]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and "id" in document:
        return [document]
    if isinstance(document, dict) and isinstance(document.get("vulns"), list):
        records: list[object] = document["vulns"]
        return records
    raise AdvisoryError(
        'the advisories file must hold an OSV record, a list of them, or {"vulns": [...]}'
    )


def _advisory(record: object, index: int) -> Advisory | None:
    if not isinstance(record, dict):
        raise AdvisoryError(f"record {index} is not a JSON object")
    ident = record.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise AdvisoryError(f"record {index} has no id (a non-empty string)")
    if record.get("withdrawn"):
        return None
    affected = record.get("affected", [])
    if not isinstance(affected, list):
        raise AdvisoryError(f"{ident}: affected must be a list")
    aliases = record.get("aliases", [])
    summary = record.get("summary", "")
    return Advisory(
        id=ident,
        summary=summary if isinstance(summary, str) else "",
        aliases=tuple(a for a in aliases if isinstance(a, str))
        if isinstance(aliases, list)
        else (),
        affected=tuple(
            _affected(entry, f"{ident}: affected[{n}]") for n, entry in enumerate(affected)
        ),
    )


def _affected(entry: object, where: str) -> Affected:
    if not isinstance(entry, dict):
        raise AdvisoryError(f"{where} is not a JSON object")
    versions = entry.get("versions", [])
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise AdvisoryError(f"{where}.versions must be a list of strings")
    ranges = entry.get("ranges", [])
    if not isinstance(ranges, list):
        raise AdvisoryError(f"{where}.ranges must be a list")
    kept = tuple(_ranges(ranges, where))
    if ranges and not kept and not versions:
        raise AdvisoryError(
            f"{where} has only GIT ranges: commits are not in an SBOM; list the affected"
            " versions (versions) or give an ECOSYSTEM or SEMVER range"
        )
    return Affected(_package(entry.get("package"), where), kept, frozenset(versions))


def _package(package: object, where: str) -> Package:
    if not isinstance(package, dict):
        raise AdvisoryError(
            f"{where} names no package: only package advisories can be matched with an SBOM"
        )
    ecosystem, name, purl = (package.get(k) for k in ("ecosystem", "name", "purl"))
    if not isinstance(ecosystem, str) or not isinstance(name, str) or not name:
        raise AdvisoryError(f"{where}.package needs an ecosystem and a name (strings)")
    if purl is None:
        return Package(ecosystem, name)
    try:
        return Package(ecosystem, name, parse_purl(purl))
    except ValueError as exc:
        raise AdvisoryError(f"{where}.package.purl: {exc}") from None


def _ranges(ranges: Sequence[Any], where: str) -> Iterator[Range]:
    for n, item in enumerate(ranges):
        here = f"{where}.ranges[{n}]"
        if not isinstance(item, dict):
            raise AdvisoryError(f"{here} is not a JSON object")
        kind = item.get("type")
        if kind == "GIT":
            continue  # A4: commits; the versions or another range carry the match
        if not isinstance(kind, str) or kind not in RangeType.__members__:
            raise AdvisoryError(
                f"{here}: range type {kind!r} is not supported (SEMVER, ECOSYSTEM; GIT only"
                " beside versions or another range)"
            )
        yield Range(RangeType(kind), _events(item.get("events"), RangeType(kind), here))


def _events(events: object, kind: RangeType, where: str) -> tuple[RangeEvent, ...]:
    if not isinstance(events, list) or not events:
        raise AdvisoryError(f"{where}.events must be a non-empty list")
    parsed = tuple(_event(event, kind, f"{where}.events[{n}]") for n, event in enumerate(events))
    if not any(e.kind is EventKind.INTRODUCED for e in parsed):
        raise AdvisoryError(f"{where} has no introduced event")
    return parsed


def _event(event: object, kind: RangeType, where: str) -> RangeEvent:
    if not isinstance(event, Mapping) or len(event) != 1:
        raise AdvisoryError(f"{where} must hold exactly one of {', '.join(EventKind)}")
    ((name, version),) = event.items()
    if name not in EventKind._value2member_map_ or not isinstance(version, str) or not version:
        raise AdvisoryError(f"{where}: {name!r} is not an event with a version string")
    parsed = RangeEvent(EventKind(name), version)
    if kind is RangeType.SEMVER and not (parsed.kind is EventKind.INTRODUCED and version == "0"):
        try:
            SemVer.parse(version)
        except ValueError as exc:
            raise AdvisoryError(f"{where}: {exc}") from None
    return parsed
