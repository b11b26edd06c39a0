"""What ``fwserver sbom match`` says: findings, releases, devices, and its exit status (pure).

- R1 Each finding names the advisory (id, aliases), the component and its
  version, the verdict (``affected``, or ``unknown``: a person must look,
  ``versions`` V4), how the component matched (``matching`` M1, M2), and
  each release that holds it with the devices that run it and their count.
- R2 Each release not checked is listed with its reason (``inventory`` I3).
- R3 Exit status: 3 when there is a finding; else 4 when a release was not
  checked (nothing found in what could be read, which is not "clean");
  else 0. Usage errors and a refused advisories file exit 2, other errors 1.
- R4 The text lists at most ``SHOWN_DEVICES`` device ids per release, then
  how many more; ``--json`` lists them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from update_server.sbom.inventory import PublishedRelease
from update_server.sbom.matching import Finding

SHOWN_DEVICES = 20


class Status(IntEnum):
    CLEAN = 0
    FOUND = 3
    UNCHECKED = 4


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    releases: tuple[PublishedRelease, ...]
    #: Release path to the ids of the devices that run it (``inventory`` I4).
    devices: Mapping[str, tuple[str, ...]]
    advisories: int

    @property
    def unchecked(self) -> tuple[PublishedRelease, ...]:
        return tuple(r for r in self.releases if r.components is None)

    @property
    def status(self) -> Status:
        """R3."""
        if self.findings:
            return Status.FOUND
        return Status.UNCHECKED if self.unchecked else Status.CLEAN

    def exposed_devices(self) -> tuple[str, ...]:
        """Every device that runs a release some finding names, once."""
        paths = {path for finding in self.findings for path in finding.releases}
        return tuple(sorted({d for path in paths for d in self.devices.get(path, ())}))

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.name.lower(),
            "advisories": self.advisories,
            "releases_checked": len(self.releases) - len(self.unchecked),
            "findings": [self._finding_json(f) for f in self.findings],
            "not_checked": [
                {"path": r.path, "version": r.info.version, "reason": r.problem}
                for r in self.unchecked
            ],
            "devices_exposed": len(self.exposed_devices()),
        }

    def lines(self) -> Iterator[str]:
        """R1, R2, R4 as text, one finding and its releases per block, then a summary."""
        for finding in self.findings:
            advisory = finding.advisory
            aliases = f" ({', '.join(advisory.aliases)})" if advisory.aliases else ""
            what = "affected" if finding.verdict == "affected" else "cannot tell, check by hand"
            yield (
                f"{advisory.id}{aliases}: {finding.component} {what}"
                f" (matched by {finding.matched_by})"
                + (f": {advisory.summary}" if advisory.summary else "")
            )
            for path in finding.releases:
                yield f"  {path} ({self._version(path)}): {self._devices_text(path)}"
        for release in self.unchecked:
            yield f"not checked: {release.path} ({release.info.version}): {release.problem}"
        yield (
            f"{self.advisories} advisories, {len(self.releases) - len(self.unchecked)} of"
            f" {len(self.releases)} release(s) checked: {len(self.findings)} finding(s),"
            f" {len(self.exposed_devices())} device(s) run an affected or unclear release"
        )

    def _finding_json(self, finding: Finding) -> dict[str, Any]:
        component = finding.component
        return {
            "advisory": finding.advisory.id,
            "aliases": list(finding.advisory.aliases),
            "summary": finding.advisory.summary,
            "verdict": finding.verdict.value,
            "matched_by": finding.matched_by,
            "component": {
                "name": component.name,
                "version": component.version,
                "purl": None if component.purl is None else str(component.purl),
            },
            "releases": [
                {
                    "path": path,
                    "version": self._version(path),
                    "devices": list(self.devices.get(path, ())),
                    "device_count": len(self.devices.get(path, ())),
                }
                for path in finding.releases
            ],
        }

    def _version(self, path: str) -> str:
        return next((r.info.version for r in self.releases if r.path == path), "?")

    def _devices_text(self, path: str) -> str:
        ids = self.devices.get(path, ())
        if not ids:
            return "no device runs it"
        shown = ", ".join(ids[:SHOWN_DEVICES])
        more = f" and {len(ids) - SHOWN_DEVICES} more" if len(ids) > SHOWN_DEVICES else ""
        return f"{len(ids)} device(s): {shown}{more}"
