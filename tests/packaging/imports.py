"""What the product's packages import and what its two distributions declare.

Imports are read from the sources with ``ast``, never by importing them, so
an import inside a function (run only on some paths) counts as much as one
at the top. A third-party module is named by the distribution that
provides it in this environment (``importlib.metadata``), so ``pkcs11``
counts as ``python-pkcs11`` and ``argon2`` as ``argon2-cffi``.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fwcommon", "repo_metadata", "hsm_mock", "signer", "update_server", "client")
DEVICE_PACKAGES = ("client", "fwcommon", "repo_metadata")
SERVER_PROJECT = ROOT / "pyproject.toml"
DEVICE_PROJECT = ROOT / "packaging" / "device" / "pyproject.toml"


@dataclass(frozen=True)
class Import:
    """One import statement's module, as the importing module names it."""

    importer: str  # e.g. "client.cli"
    module: str  # absolute, e.g. "tuf.ngclient"
    #: Inside a function: imported only when that function runs.
    lazy: bool

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


class _Collector(ast.NodeVisitor):
    def __init__(self, importer: str, package: str) -> None:
        self.importer, self.package = importer, package
        self.found: list[Import] = []
        self.depth = 0

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function  # noqa: N815 - ast's names

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(self.importer, alias.name, lazy=self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:  # relative: inside the importer's own package
            base = self.package.rsplit(".", node.level - 1)[0] if node.level > 1 else self.package
            module = f"{base}.{node.module}" if node.module else base
        else:
            module = node.module or ""
        self.found.append(Import(self.importer, module, lazy=self.depth > 0))


def _module_name(path: Path) -> tuple[str, str]:
    """(module, its package) for a source file under ROOT."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        name = ".".join(parts[:-1])
        return name, name
    return ".".join(parts), ".".join(parts[:-1])


def imports(packages: Iterable[str]) -> Iterator[Import]:
    """Every import in every module of ``packages``."""
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            importer, parent = _module_name(path)
            collector = _Collector(importer, parent)
            collector.visit(ast.parse(path.read_text(), filename=str(path)))
            yield from collector.found


#: Not in ``sys.stdlib_module_names`` but no third party either: ``_typeshed`` is
#: the type checker's own stub module of the standard library, imported only
#: under ``TYPE_CHECKING`` (it does not exist at run time).
TYPING_ONLY = frozenset({"_typeshed"})


def is_third_party(top: str) -> bool:
    return (
        top not in sys.stdlib_module_names
        and top not in TYPING_ONLY
        and top not in PACKAGES
        and top != "__future__"
    )


@cache
def _providers() -> Mapping[str, list[str]]:
    return packages_distributions()


def distribution_of(top: str) -> NormalizedName | None:
    """The installed distribution providing top-level module ``top``, if any."""
    names = _providers().get(top, [])
    return canonicalize_name(names[0]) if len(names) == 1 else None


def declared(project: Path) -> dict[NormalizedName, Requirement]:
    """A pyproject's ``[project].dependencies`` by normalized name."""
    dependencies = tomllib.loads(project.read_text())["project"]["dependencies"]
    return {canonicalize_name(r.name): r for r in map(Requirement, dependencies)}


@dataclass(frozen=True)
class Locked:
    """One pinned package of a hash-locked requirements file."""

    name: NormalizedName
    version: str
    hashes: frozenset[str]  # hexadecimal SHA-256 digests


def read_lock(path: Path) -> dict[NormalizedName, Locked]:
    """The pins of a pip-compile lock file (``name==version`` and its ``--hash`` lines)."""
    entries: dict[NormalizedName, Locked] = {}
    logical = path.read_text().replace("\\\n", " ").splitlines()
    for line in logical:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        requirement, *options = text.split()
        name, _, version = requirement.partition("==")
        hashes = frozenset(
            option.removeprefix("--hash=sha256:")
            for option in options
            if option.startswith("--hash=sha256:")
        )
        entries[canonicalize_name(name)] = Locked(canonicalize_name(name), version, hashes)
    return entries
