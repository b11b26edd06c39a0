"""Which releases' components do advisories name? (R41, R56; pure)

Rules:

- M1 A component is the advisory's package when both have a package URL
  type that is not ``generic``: the same type and the same full name
  (namespace and name, joined as the ecosystem writes its names: ``group:
  artifact`` for Maven, a path for Go, npm, Packagist). The advisory's type
  is its ``purl``'s, or its OSV ecosystem's (``ECOSYSTEM_TYPES``; a suffix
  such as ``Debian:12`` is dropped).
- M2 Otherwise, a component without a typed package URL (a C library in
  firmware, say) is the advisory's package when their names are the same,
  and so is any component for an advisory whose ecosystem has no package
  URL type here. Names compare without case; PyPI names as PEP 503
  normalizes them. A name may thus match a package of another ecosystem:
  the finding says it matched by name, for a person to judge.
- M3 Each (advisory, component) pair is judged once per advisory with
  ``versions.verdict``; of several affected entries for the same package,
  the strongest answer counts (affected, then unknown). Not affected pairs
  are not reported.
- M4 A finding lists every release whose SBOM holds that component at that
  version; findings come affected first, then unknown, by advisory id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from update_server.sbom.advisories import Advisory, Package
from update_server.sbom.documents import Component, PackageUrl
from update_server.sbom.versions import Verdict, verdict

#: OSV ecosystems and their package URL types (https://ossf.github.io/osv-schema/).
ECOSYSTEM_TYPES = {
    "Alpine": "apk",
    "crates.io": "cargo",
    "Debian": "deb",
    "Go": "golang",
    "Hackage": "hackage",
    "Hex": "hex",
    "Maven": "maven",
    "npm": "npm",
    "NuGet": "nuget",
    "Packagist": "composer",
    "Pub": "pub",
    "PyPI": "pypi",
    "RubyGems": "gem",
    "SwiftURL": "swift",
    "Ubuntu": "deb",
    "ConanCenter": "conan",
}
#: How an ecosystem joins a package URL's namespace to its name (others: the name alone).
_JOINS = {"maven": ":", "golang": "/", "npm": "/", "composer": "/", "swift": "/"}
_STRENGTH = {Verdict.AFFECTED: 2, Verdict.UNKNOWN: 1, Verdict.NOT_AFFECTED: 0}


@dataclass(frozen=True)
class Finding:
    advisory: Advisory
    component: Component
    verdict: Verdict
    #: "purl" (M1) or "name" (M2).
    matched_by: str
    releases: tuple[str, ...]


def match(
    releases: Mapping[str, Iterable[Component]], advisories: Iterable[Advisory]
) -> tuple[Finding, ...]:
    """M1-M4 over ``releases`` (release target path to its SBOM's components)."""
    holders: dict[Component, list[str]] = {}
    for path, components in releases.items():
        for component in components:
            holders.setdefault(component, []).append(path)
    found = [
        Finding(advisory, component, answer, how, tuple(sorted(paths)))
        for advisory in advisories
        for component, paths in holders.items()
        for answer, how in [judge(component, advisory)]
        if answer is not Verdict.NOT_AFFECTED
    ]
    return tuple(
        sorted(found, key=lambda f: (-_STRENGTH[f.verdict], f.advisory.id, str(f.component)))
    )


def judge(component: Component, advisory: Advisory) -> tuple[Verdict, str]:
    """M3: the strongest verdict of ``advisory``'s entries for ``component``, and how it matched."""
    best, how = Verdict.NOT_AFFECTED, ""
    for affected in advisory.affected:
        by = same_package(component, affected.package)
        if by is None:
            continue
        answer = verdict(component.version, affected)
        if _STRENGTH[answer] > _STRENGTH[best]:
            best, how = answer, by
    return best, how


def same_package(component: Component, package: Package) -> str | None:
    """M1, M2: "purl" or "name" when ``component`` is ``package``, else None."""
    wanted = _identity(package)
    mine = (
        component.purl if component.purl is not None and component.purl.type != "generic" else None
    )
    if wanted is not None and mine is not None:
        same = wanted[0] == mine.type and _norm(mine.type, wanted[1]) == _norm(
            mine.type, _full_name(mine)
        )
        return "purl" if same else None
    name = component.purl.name if component.purl is not None else component.name
    names = {_norm("", name), _norm("", component.name)}
    return "name" if _norm("", package.name) in names else None


def _identity(package: Package) -> tuple[str, str] | None:
    if package.purl is not None:
        return package.purl.type, _full_name(package.purl)
    kind = ECOSYSTEM_TYPES.get(package.ecosystem.split(":", 1)[0])
    return None if kind is None else (kind, package.name)


def _full_name(purl: PackageUrl) -> str:
    join = _JOINS.get(purl.type)
    return f"{purl.namespace}{join}{purl.name}" if join and purl.namespace else purl.name


def _norm(kind: str, name: str) -> str:
    if kind == "pypi":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name.casefold()
