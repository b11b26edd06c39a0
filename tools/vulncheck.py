"""Check the shipped locks' pins against PyPI's vulnerability data (R42, R45).

Rules:

- V1 The data is PyPI's own (the Python Packaging Advisory Database and
  GitHub's advisories, as PyPI's JSON API lists them for a release): asked
  first for the pinned release (``/pypi/<name>/<version>/json``, what
  pip-audit asks); where that answer is unavailable (the index this
  project's machines reach serves only ``/pypi/<name>/json``, so pip-audit
  finds nothing there and audits nothing), the project's answer, whose list
  is the latest release's: it is the pin's only when the pin is that
  release.
- V2 A pin whose data is not reached is *unchecked* and named, with what to
  do (move the pin: requirements.in, ``make lock``); never counted as
  clean. A run where no pin was checked fails: a check that reaches no data
  checks nothing.
- V3 A known vulnerability fails the run unless ``tools/vulncheck.toml``
  records a decision about it: its id (or one of its aliases), the package,
  and a reason that is not empty. A decision that matches no vulnerability
  any more is reported, so the file does not keep stale excuses.
- V4 Bounded: one request at a time with a timeout, no retries beyond two.

Usage: ``python tools/vulncheck.py [LOCK ...]`` (default: requirements.lock
and requirements-device.lock); exit 0 when every known vulnerability has a
decision, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

ROOT = Path(__file__).resolve().parent.parent
LOCKS = (ROOT / "requirements.lock", ROOT / "requirements-device.lock")
DECISIONS = ROOT / "tools" / "vulncheck.toml"
INDEX = "https://pypi.org/pypi"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")

#: One JSON answer of the index for a path below INDEX, or None (no such page).
Fetch = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Pin:
    name: str
    version: str


@dataclass(frozen=True)
class Vulnerability:
    pin: Pin
    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]

    def names(self) -> set[str]:
        return {self.id, *self.aliases}


@dataclass(frozen=True)
class Decision:
    package: str
    id: str
    reason: str


@dataclass(frozen=True)
class Report:
    checked: tuple[Pin, ...]
    unchecked: tuple[tuple[Pin, str], ...]
    found: tuple[Vulnerability, ...]
    accepted: tuple[tuple[Vulnerability, Decision], ...]
    stale: tuple[Decision, ...]

    @property
    def failed(self) -> bool:
        return not self.checked or bool(self.found)


def pins(lock_text: str) -> list[Pin]:
    """The ``name==version`` pins of a pip-compile lock, names normalised (PEP 503)."""
    found = []
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            found.append(Pin(name, match[2]))
    return found


def decisions(text: str) -> list[Decision]:
    """The recorded decisions; one without a package, id or reason is refused (V3)."""
    made = []
    for number, entry in enumerate(tomllib.loads(text).get("accepted", []), start=1):
        fields = {key: str(entry.get(key, "")).strip() for key in ("package", "id", "reason")}
        missing = [key for key, value in fields.items() if not value]
        if missing:
            raise ValueError(f"vulncheck.toml: accepted #{number} has no {', '.join(missing)}")
        made.append(Decision(**fields))
    return made


def lookup(pin: Pin, fetch: Fetch) -> tuple[list[Vulnerability] | None, str]:
    """The pin's known vulnerabilities (V1), or None and why they are not known (V2)."""
    answer = fetch(f"{pin.name}/{pin.version}/json")
    if answer is None:
        answer = fetch(f"{pin.name}/json")
        if answer is None:
            return None, "the index does not know this package"
        latest = str(answer.get("info", {}).get("version", ""))
        if latest != pin.version:
            return None, f"the index gives data for its latest release only ({latest})"
    listed = answer.get("vulnerabilities")
    if not isinstance(listed, list):
        return None, "the index's answer has no vulnerability list"
    return [
        Vulnerability(
            pin,
            str(entry["id"]),
            tuple(map(str, entry.get("aliases") or ())),
            tuple(map(str, entry.get("fixed_in") or ())),
        )
        for entry in listed
    ], ""


def audit(all_pins: Iterable[Pin], fetch: Fetch, recorded: list[Decision]) -> Report:
    checked, unchecked, found, accepted = [], [], [], []
    used: set[Decision] = set()
    for pin in dict.fromkeys(all_pins):
        vulnerabilities, why = lookup(pin, fetch)
        if vulnerabilities is None:
            unchecked.append((pin, why))
            continue
        checked.append(pin)
        for vulnerability in vulnerabilities:
            decision = next(
                (d for d in recorded if d.package == pin.name and d.id in vulnerability.names()),
                None,
            )
            if decision is None:
                found.append(vulnerability)
            else:
                used.add(decision)
                accepted.append((vulnerability, decision))
    stale = tuple(d for d in recorded if d not in used)
    return Report(tuple(checked), tuple(unchecked), tuple(found), tuple(accepted), stale)


def index_fetch(pool: urllib3.PoolManager) -> Fetch:
    """Fetch from PyPI's JSON API over verified TLS (V4); 404 is None, else an error."""

    def fetch(path: str) -> Mapping[str, Any] | None:
        answer = pool.request("GET", f"{INDEX}/{path}", headers={"Accept": "application/json"})
        if answer.status == 404:
            return None
        if answer.status != 200:
            raise OSError(f"{INDEX}/{path} answered {answer.status}")
        loaded: Mapping[str, Any] = json.loads(answer.data)
        return loaded

    return fetch


def describe(report: Report) -> list[str]:
    lines = [
        f"vulncheck: {len(report.checked)} pins checked against PyPI's vulnerability data,"
        f" {len(report.found)} known vulnerabilities without a decision,"
        f" {len(report.accepted)} accepted, {len(report.unchecked)} unchecked"
    ]
    lines += [
        f"  VULNERABLE {v.pin.name}=={v.pin.version}: {v.id}"
        f" ({', '.join(v.aliases) or 'no alias'}; fixed in {', '.join(v.fixed_in) or 'no release'})"
        f": upgrade it in requirements.in and run make lock, or record a decision in"
        f" tools/vulncheck.toml"
        for v in report.found
    ]
    lines += [
        f"  accepted {v.pin.name}=={v.pin.version}: {v.id}: {d.reason}" for v, d in report.accepted
    ]
    lines += [
        f"  unchecked {pin.name}=={pin.version}: {why}; move the pin (requirements.in, make lock)"
        for pin, why in report.unchecked
    ]
    lines += [
        f"  stale decision {d.package} {d.id}: no such vulnerability now" for d in report.stale
    ]
    if not report.checked:
        lines.append("  no pin was checked: the vulnerability data was not reached")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locks", nargs="*", type=Path, default=list(LOCKS))
    args = parser.parse_args(argv)
    all_pins = [pin for lock in args.locks for pin in pins(lock.read_text())]
    recorded = decisions(DECISIONS.read_text())
    pool = urllib3.PoolManager(
        cert_reqs="CERT_REQUIRED",
        retries=urllib3.Retry(total=2, backoff_factor=0.5),
        timeout=urllib3.Timeout(total=15),
    )
    with pool:
        report = audit(all_pins, index_fetch(pool), recorded)
    print("\n".join(describe(report)))  # noqa: T201 - a command-line report
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
