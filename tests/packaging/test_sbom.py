"""The product's SBOMs list every locked package with its version and hashes (R4, R45).

``make sbom`` (tools/sbom.py) writes ``fwupdate.cdx.json`` from
requirements.lock and ``fwupdate-device.cdx.json`` from
requirements-device.lock. Checked here against the locks themselves, read
by the tests' own reader (S1), the lock's dependency graph (S2) and the
absence of anything that changes from run to run (S3).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections import defaultdict
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name

from tests.packaging.imports import DEVICE_PROJECT, ROOT, SERVER_PROJECT, declared, read_lock

CASES = {
    "fwupdate": (SERVER_PROJECT, ROOT / "requirements.lock"),
    "fwupdate-device": (DEVICE_PROJECT, ROOT / "requirements-device.lock"),
}


@pytest.fixture(scope="module")
def sboms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sbom")
    made = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "sbom.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.split() == [str(out / f"{name}.cdx.json") for name in CASES]
    return {name: json.loads((out / f"{name}.cdx.json").read_text()) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_the_sbom_lists_every_locked_package_with_its_version_and_hashes_s1(
    sboms: dict[str, dict[str, Any]], name: str
) -> None:
    project, lock = CASES[name]
    bom = sboms[name]
    assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom)) is None
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == (
        name,
        tomllib.loads(project.read_text())["project"]["version"],
    )
    pins = read_lock(lock)
    listed = {canonicalize_name(c["name"]): c for c in bom["components"]}
    assert set(listed) == set(pins)
    for package, pin in pins.items():
        component = listed[package]
        assert component["version"] == pin.version, package
        assert component["purl"] == f"pkg:pypi/{package}@{pin.version}", package
        references = [ref for ref in component["externalReferences"] if ref.get("hashes")]
        assert references, f"{package} has no hashes"
        for reference in references:
            hashes = {(h["alg"], h["content"]) for h in reference["hashes"]}
            assert hashes == {("SHA-256", digest) for digest in pin.hashes}, package


@pytest.mark.parametrize("name", list(CASES))
def test_the_sbom_graph_is_the_locks_with_the_direct_dependencies_at_the_root_s2(
    sboms: dict[str, dict[str, Any]], name: str
) -> None:
    project, _lock = CASES[name]
    bom = sboms[name]
    names = {c["bom-ref"]: canonicalize_name(c["name"]) for c in bom["components"]}
    names[bom["metadata"]["component"]["bom-ref"]] = canonicalize_name(name)
    edges: dict[str, set[str]] = defaultdict(set)
    for entry in bom["dependencies"]:
        edges[names[entry["ref"]]].update(names[ref] for ref in entry["dependsOn"])
    assert set(declared(project)) <= edges[canonicalize_name(name)]
    reached: set[str] = set()
    todo: list[str] = [canonicalize_name(name)]
    while todo:
        for child in edges[todo.pop()] - reached:
            reached.add(child)
            todo.append(child)
    assert reached == set(names.values()) - {canonicalize_name(name)}, "every package is reached"
    if name == "fwupdate":
        assert {"werkzeug", "jinja2"} <= edges["flask"]


@pytest.mark.parametrize("name", list(CASES))
def test_the_sbom_holds_nothing_that_changes_between_runs_s3(
    sboms: dict[str, dict[str, Any]], name: str
) -> None:
    bom = sboms[name]
    assert "serialNumber" not in bom
    assert "timestamp" not in bom["metadata"]
    urls = [ref["url"] for c in bom["components"] for ref in c["externalReferences"]]
    assert not [url for url in urls if url.startswith("file:")], "no directory of the machine"
