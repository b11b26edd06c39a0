"""Package boundaries that the imports themselves must keep.

- The software token (``hsm_mock``) writes its files through
  ``fwcommon.files``, not through the TUF core (``repo_metadata``).
- Production key references do not live in the mock package.
- No module imports a private securesystemslib name (``securesystemslib._x``,
  ``signer._utils``, ``_internal``): those change without notice.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fwcommon", "repo_metadata", "hsm_mock", "signer", "update_server", "client")


def _imported_modules(path: Path) -> Iterator[tuple[str, str]]:
    """(module, name) for every import in ``path``; name is "" for ``import x``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from ((node.module, alias.name) for alias in node.names)


def _sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (ROOT / package).rglob("*.py"))


def _private(module: str, name: str) -> bool:
    parts = [*module.split("."), name] if name else module.split(".")
    return any(part.startswith("_") and part != "__future__" for part in parts[1:])


def test_hsm_mock_imports_nothing_from_repo_metadata() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _sources("hsm_mock")
        for module, _name in _imported_modules(path)
        if module == "repo_metadata" or module.startswith("repo_metadata.")
    ]
    assert found == []


def test_atomic_writes_come_from_fwcommon() -> None:
    assert not (ROOT / "repo_metadata" / "files.py").exists()
    users = {
        path.relative_to(ROOT).as_posix()
        for path in _sources(*PACKAGES)
        for module, name in _imported_modules(path)
        if name in {"atomic_write", "fsync_dir", "FileBatch"}
    }
    assert "hsm_mock/_store.py" in users
    assert all(
        module == "fwcommon.files"
        for path in _sources(*PACKAGES)
        for module, name in _imported_modules(path)
        if name in {"atomic_write", "fsync_dir", "FileBatch"}
    )


def test_key_references_are_not_in_the_mock_package() -> None:
    assert not (ROOT / "hsm_mock" / "keyref.py").exists()
    found = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _sources(*PACKAGES)
        for module, _name in _imported_modules(path)
        if module == "hsm_mock.keyref" or (module == "hsm_mock" and _name == "keyref")
    ]
    assert found == []


def test_no_module_imports_private_securesystemslib_names() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {module} {name}".rstrip()
        for path in _sources(*PACKAGES, "tests", "benchmarks")
        for module, name in _imported_modules(path)
        if module.split(".")[0] == "securesystemslib" and _private(module, name)
    ]
    assert found == []
