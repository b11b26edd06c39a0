"""The test helpers exist once each (issue 9): checked on the source, with ``ast``.

One test clock (``tests/clocks.py``), one cheap-hashing fixture (the server
tests' conftest), no autouse fixture copied between modules, and the client's
repository builders independent of the code they test: they build with
python-tuf's Metadata API, never with the signer or ``repo_metadata``, so a
bug the signer and the client share cannot pass the client's tests.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: The client's repository builders and the modules they are made of.
CLIENT_BUILDERS = ("client/sim.py", "client/tuf_repo.py", "client/helpers_state.py")


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(TESTS).as_posix(): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(TESTS.rglob("*.py"))
    }


def _imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def _is_autouse_fixture(node: ast.FunctionDef) -> bool:
    return any(
        isinstance(decorator, ast.Call)
        and any(
            kw.arg == "autouse" and isinstance(kw.value, ast.Constant) and kw.value.value is True
            for kw in decorator.keywords
        )
        for decorator in node.decorator_list
    )


def _calls(tree: ast.AST, name: str) -> bool:
    return any(
        isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
        for node in ast.walk(tree)
    )


def test_one_test_clock_class_under_tests() -> None:
    clocks = [
        f"{module}:{node.name}"
        for module, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and "clock" in node.name.lower()
    ]
    assert clocks == ["clocks.py:FakeClock"]


def test_no_autouse_fixture_is_copied_between_modules() -> None:
    """The same autouse fixture body in two modules belongs in a conftest.py, once."""
    where: dict[str, list[str]] = defaultdict(list)
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and _is_autouse_fixture(node):
                body = ast.dump(ast.Module(body=node.body, type_ignores=[]))
                where[body].append(f"{module}:{node.name}")
    copied = [places for places in where.values() if len(places) > 1]
    assert copied == [], "define the fixture once in the package's conftest.py"


def test_cheap_password_hashing_is_one_fixture_of_the_server_tests() -> None:
    callers = [
        module for module, tree in _modules().items() if _calls(tree, "fast_password_hashing")
    ]
    assert callers == ["update_server/conftest.py"], (
        'use the conftest fixture: pytestmark = pytest.mark.usefixtures("fast_hashing")'
    )


def test_the_clients_repository_builders_use_neither_the_signer_nor_repo_metadata() -> None:
    """A bug shared by fwsign and fwclient through repo_metadata must fail the client tests.

    The client's simulator and signed line build their roles with python-tuf
    and write the firmware fields literally; ``fwcommon`` (file writing) is
    allowed, as it has no TUF or firmware format in it.
    """
    modules = _modules()
    for builder in CLIENT_BUILDERS:
        imported = _imported(modules[builder])
        forbidden = sorted(
            name
            for name in imported
            if name.split(".")[0] in ("signer", "repo_metadata", "update_server", "hsm_mock")
        )
        assert forbidden == [], f"{builder} imports {forbidden}"


def test_the_client_builders_build_with_tufs_metadata_api() -> None:
    imported = _imported(_modules()["client/tuf_repo.py"])
    assert "tuf.api.metadata" in imported
    assert "tests.client.tuf_repo" in _imported(_modules()["client/sim.py"])
    assert "tests.client.tuf_repo" in _imported(_modules()["client/helpers_state.py"])
