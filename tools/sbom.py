"""Write the product's SBOMs: CycloneDX JSON of each distribution's locked dependencies.

Rules (R4, R45: every component known, with its exact version and hashes):

- S1 Each SBOM is made by ``cyclonedx-py`` (CycloneDX's own Python tool,
  pinned in the development lock) from a hash-locked requirements file,
  never from what happens to be installed: ``fwupdate.cdx.json`` from
  ``requirements.lock``, ``fwupdate-device.cdx.json`` from
  ``requirements-device.lock``. Each component carries its version, its
  package URL and the lock's SHA-256 hashes of its distribution files; the
  root component is the distribution itself (name, version and licence from
  its ``pyproject.toml``).
- S2 The dependency graph is the lock's own: pip-compile writes, under each
  pin, what brought it in (``# via``): a package name is an edge from that
  package, ``-r <file>.in`` an edge from the root (a direct dependency);
  ``-c`` (a constraint) is no edge. ``cyclonedx-py`` cannot read those
  comments, so its document is completed here, then validated against the
  CycloneDX schema (once: the tool's own validation is turned off).
- S3 Reproducible: no timestamp or serial number, so the same locks give
  the same bytes.

Usage: ``python tools/sbom.py [OUTDIR]`` (default ``build/sbom``); prints the
path of each SBOM it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
SPEC = SchemaVersion.V1_6
ROOT_REF = "root-component"  # cyclonedx-py's bom-ref of the root component


@dataclass(frozen=True)
class Distribution:
    """One SBOM to write: a distribution and the lock of its dependencies."""

    name: str
    project: Path
    lock: Path


DISTRIBUTIONS = (
    Distribution("fwupdate", ROOT / "pyproject.toml", ROOT / "requirements.lock"),
    Distribution(
        "fwupdate-device",
        ROOT / "packaging" / "device" / "pyproject.toml",
        ROOT / "requirements-device.lock",
    ),
)

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
_VIA = re.compile(r"^\s+# via(?: (.+))?$")
_VIA_MORE = re.compile(r"^\s+#   (.+)$")


def lock_graph(lock: Path) -> dict[str, set[str]]:
    """Package -> what brought it in, from the lock's ``# via`` comments (S2).

    The root is named ``""`` (``-r <file>``); constraints (``-c``) are left out.
    """
    graph: dict[str, set[str]] = {}
    current: str | None = None
    in_via = False
    for line in lock.read_text().splitlines():
        if pin := _PIN.match(line):
            current, in_via = canonicalize_name(pin.group(1)), False
            graph[current] = set()
            continue
        via = _VIA.match(line)
        more = _VIA_MORE.match(line) if in_via else None
        if via:
            in_via = True
            sources = [via.group(1)] if via.group(1) else []
        elif more:
            sources = [more.group(1)]
        else:
            in_via = in_via and line.strip().startswith("#")
            continue
        for source in sources:
            if current is not None and not source.startswith("-c "):
                name = "" if source.startswith("-r ") else source.split("[")[0].strip()
                graph[current].add(canonicalize_name(name) if name else "")
    return graph


def with_lock_graph(bom: dict[str, Any], graph: dict[str, set[str]]) -> dict[str, Any]:
    """``bom`` with its ``dependencies`` set from the lock's graph (S2)."""
    refs: dict[str, str] = {canonicalize_name(c["name"]): c["bom-ref"] for c in bom["components"]}
    missing = set(graph) - set(refs)
    if missing:
        raise SystemExit(f"sbom: the lock pins {sorted(missing)} but the SBOM lists none of them")
    depends: dict[str, set[str]] = {ROOT_REF: set(), **{ref: set() for ref in refs.values()}}
    for package, sources in graph.items():
        for source in sources:
            depends[refs[source] if source else ROOT_REF].add(refs[package])
    bom["dependencies"] = [
        {"ref": ref, "dependsOn": sorted(targets)} for ref, targets in sorted(depends.items())
    ]
    return bom


def write_sbom(distribution: Distribution, out: Path) -> Path:
    """Run cyclonedx-py on the distribution's lock, complete and validate it (S1-S3)."""
    target = out / f"{distribution.name}.cdx.json"
    tool = Path(sys.executable).with_name("cyclonedx-py")
    options = ["--sv", SPEC.to_version(), "--of", "JSON", "--output-reproducible", "--no-validate"]
    source = ["--pyproject", str(distribution.project), str(distribution.lock)]
    made = subprocess.run(  # nosec B603 # the venv's cyclonedx-py, fixed argv, no shell
        [str(tool), "requirements", *options, "-o", str(target), *source],
        capture_output=True,
        text=True,
        check=False,
        # The tool warns that the root has no dependencies: with_lock_graph adds them.
        env={**os.environ, "PYTHONWARNINGS": "ignore::UserWarning"},
    )
    if made.returncode != 0:
        raise SystemExit(f"sbom: cyclonedx-py failed on {distribution.lock}:\n{made.stderr}")
    bom = with_lock_graph(json.loads(target.read_text()), lock_graph(distribution.lock))
    text = json.dumps(bom, indent=2, sort_keys=True) + "\n"
    error = JsonStrictValidator(SPEC).validate_str(text)
    if error is not None:
        raise SystemExit(f"sbom: {target}: not a valid CycloneDX {SPEC.to_version()}: {error}")
    target.write_text(text)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "build" / "sbom")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for distribution in DISTRIBUTIONS:
        print(write_sbom(distribution, args.out))  # noqa: T201 - the command's output


if __name__ == "__main__":
    main()
