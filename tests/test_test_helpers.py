"""The test helpers exist once each (issue 9): checked on the source, with ``ast``.

One test clock (``tests/clocks.py``), one cheap-hashing fixture (the server
tests' conftest), no autouse fixture copied between modules, and the client's
repository builders independent of the code they test: they build with
python-tuf's Metadata API, never with the signer or ``repo_metadata``, so a
bug the signer and the client share cannot pass the client's tests; and they
are one builder (``tests/client/tuf_repo.py``): no other client test module
makes a role of its own.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
#: The client's one repository builder.
BUILDER = "client/tuf_repo.py"
#: The client's repositories: the builder and the modules that build through it.
CLIENT_BUILDERS = (
    BUILDER,
    "client/sim.py",
    "client/helpers_state.py",
    "client/test_conformance.py",
)
#: What a repository is made of in python-tuf: a module that makes these builds a repository.
ROLE_CLASSES = frozenset(
    ("Root", "Targets", "Snapshot", "Timestamp", "Delegations", "DelegatedRole", "SuccinctRoles")
)


@functools.cache
def _modules() -> dict[str, ast.Module]:
    """Every test module's syntax tree, parsed once per run (each check reads them all)."""
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


def _builds_roles(tree: ast.AST) -> list[str]:
    """Where ``tree`` makes a role or a delegation (``Targets(...)``, ``Root.from_dict(...)``).

    Editing, re-signing or re-wrapping a role that was read or served (what
    an attack does: ``Metadata.from_bytes``, ``Metadata(signed)``, ``.sign``)
    makes none.
    """
    made = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        from_dict = isinstance(func, ast.Attribute) and func.attr == "from_dict"
        if isinstance(func, ast.Attribute) and from_dict:
            func = func.value
        if isinstance(func, ast.Subscript):  # Metadata[Root].from_dict, Metadata[Root](...)
            func = func.value
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in ROLE_CLASSES or (name == "Metadata" and from_dict):
            made.append(f"{name} (line {node.lineno})")
    return made


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
    assert callers == ["conftest.py"], (
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
    modules = _modules()
    assert "tuf.api.metadata" in _imported(modules[BUILDER])
    assert _builds_roles(modules[BUILDER]) != []
    for module in CLIENT_BUILDERS[1:]:
        assert "tests.client.tuf_repo" in _imported(modules[module]), module


def test_no_client_test_module_builds_a_repository_of_its_own() -> None:
    """Issue 9: one signed-repository builder for the client's tests, ``tests/client/tuf_repo.py``.

    A module under ``tests/client`` that makes a role or a delegation builds
    a repository beside it: extend ``TufRepo`` instead. Forging a served
    role (edit, re-sign) is an attack's business and stays in its test.
    """
    private = {
        module: made
        for module, tree in _modules().items()
        if module.startswith("client/") and module != BUILDER
        if (made := _builds_roles(tree))
    }
    assert private == {}, "build through tests/client/tuf_repo.py (extend TufRepo)"


@pytest.mark.parametrize(
    ("source", "made"),
    [
        ("md = Metadata(Targets(expires=now))", ["Targets (line 1)"]),
        ("root = tuf.api.metadata.Root(); root.add_key(k, 'root')", ["Root (line 1)"]),
        ("md = Metadata[Snapshot].from_dict(doc)", ["Metadata (line 1)"]),
        ("t = Timestamp.from_dict(doc)", ["Timestamp (line 1)"]),
        (
            "d = Delegations({}, roles={'a': DelegatedRole('a', [], 1, True, ['a/*'])})",
            ["Delegations (line 1)", "DelegatedRole (line 1)"],
        ),
        ("md = Metadata.from_bytes(data); md.signed.version += 1; md.sign(key)", []),
        ("data = Metadata(signed).to_bytes()", []),
    ],
)
def test_the_builder_check_tells_making_a_role_from_forging_one(
    source: str, made: list[str]
) -> None:
    assert _builds_roles(ast.parse(source)) == made
