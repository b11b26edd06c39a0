"""The evidence pack: traceability (``tools/traceability.py`` TR1-TR7), threat model, flows.

R36 asks for requirement-based tests: the page ``docs/traceability.md`` is
generated from what the tests and the code name, and a run whose tests do
not prove an addressed recommendation fails. The tool is tested on small
trees written here; the repository's own threat model and network flows are
checked against the real tests and the real app (each test names its own
recommendation).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.clocks import RUN_START, FakeClock
from tests.update_server.conftest import FAST_KDF
from tools import traceability as tr
from update_server.access import access_of
from update_server.app import create_app
from update_server.config import ServerConfig
from update_server.keys import signer_loader
from update_server.setup import init_data_dir

ROOT = Path(__file__).resolve().parent.parent


# --- small trees ----------------------------------------------------------------------


def _registry(addressed: dict[int, str] | None = None, extra: str = "") -> str:
    """A registry with every R1-R64: those in ``addressed`` addressed, the rest out of scope."""
    addressed = addressed or {}
    tables = []
    for n in range(1, 65):
        if n in addressed:
            tables.append(f'[R{n}]\ntitle = "{addressed[n]}"\nstatus = "addressed"\n')
        else:
            tables.append(f'[R{n}]\ntitle = "t{n}"\nstatus = "out of scope"\nreason = "why {n}"\n')
    return "\n".join(tables) + extra


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


TEST_FILE = '''"""Checks of the freeze (R24)."""


def test_refused_when_frozen_r33():
    # the code is spent all the same (R25)
    assert True


class TestLift:
    """Lifting needs two officers (R9)."""

    def test_one_officer_twice_is_refused(self):
        assert True

    def helper_r40(self):
        """Not a test (R40)."""


def _helper():
    """R59 in a helper names nothing."""
'''

CODE_FILE = '''"""The failsafe freeze (R24, R33)."""


def refuse_if_frozen():
    """R24: refused while frozen."""


# R27: every refusal audited
LIMIT = 3
'''


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return _tree(
        tmp_path,
        {
            "tools/traceability.toml": _registry({24: "Isolate", 33: "Failsafe", 9: "Roles"}),
            "tests/update_server/test_freeze.py": TEST_FILE,
            "update_server/freeze.py": CODE_FILE,
            "docs/threat-model.md": "| threat | test |\n|---|---|\n"
            "| x | `tests/update_server/test_freeze.py::test_refused_when_frozen_r33` |\n",
            "docs/operations.md": "The freeze (R24, R34).\n",
        },
    )


# --- TR1 ------------------------------------------------------------------------------


def test_an_r_number_is_read_from_text_ranges_and_identifiers_r36() -> None:
    """TR1: words R1-R64, short ranges, ``_rN`` in names; curve names and R65 are not."""
    assert tr.named_in_text("four eyes (R9), R13/R49; see R37-R39") == {9, 13, 49, 37, 38, 39}
    assert tr.named_in_text("ec.SECP256R1(), R65, R0, RR5") == set()
    assert tr.named_in_text("every recommendation R1-R64") == {1}
    assert tr.named_in_identifier("test_replay_is_refused_r25") == {25}
    assert tr.named_in_identifier("test_r47_no_default_password_r9_") == {47, 9}
    assert tr.named_in_identifier("test_r2d2_is_no_recommendation") == set()


# --- TR2, TR3 -------------------------------------------------------------------------


def test_a_test_answers_what_it_its_class_and_its_module_name_and_helpers_are_no_tests_r36(
    tree: Path,
) -> None:
    """TR2: name, comments, class docstring directly; the module docstring apart."""
    registry = tr.load_registry((tree / "tools/traceability.toml").read_text())
    evidence = tr.scan(tree, registry)
    tests = {t.qualname: t for t in evidence.tests}
    assert sorted(tests) == [
        "TestLift.test_one_officer_twice_is_refused",
        "test_refused_when_frozen_r33",
    ]
    assert tests["test_refused_when_frozen_r33"].direct == {33, 25}
    assert tests["test_refused_when_frozen_r33"].by_module == {24}
    assert tests["TestLift.test_one_officer_twice_is_refused"].direct == {9}
    assert tests["TestLift.test_one_officer_twice_is_refused"].id == (
        "tests/update_server/test_freeze.py::TestLift::test_one_officer_twice_is_refused"
    )
    assert tests["TestLift.test_one_officer_twice_is_refused"].junit_key == (
        "tests.update_server.test_freeze.TestLift",
        "test_one_officer_twice_is_refused",
    )
    # TR3: the code's mentions belong to the scope around them, module-level to the module.
    assert evidence.code[24] == {"update_server/freeze.py": ("", "refuse_if_frozen")}
    assert evidence.code[27] == {"update_server/freeze.py": ("",)}
    assert evidence.documents[34] == ("docs/operations.md",)


def test_a_number_the_registry_says_is_a_modules_own_rule_id_is_left_out_r36(
    tmp_path: Path,
) -> None:
    """TR1: ``not_ansm`` removes a module's own R1 (the retry policy's rule)."""
    extra = '\n[not_ansm]\n"update_server/retry.py" = { numbers = [1], why = "own rule R1" }\n'
    root = _tree(
        tmp_path,
        {
            "tools/traceability.toml": _registry({1: "Risk"}, extra),
            "update_server/retry.py": '"""R1 The n-th attempt waits (R31)."""\n',
        },
    )
    evidence = tr.scan(root, tr.load_registry((root / "tools/traceability.toml").read_text()))
    assert 1 not in evidence.code
    assert evidence.code[31] == {"update_server/retry.py": ("",)}


def test_a_registry_missing_a_recommendation_or_a_reason_is_refused_r36() -> None:
    """TR4: every R1-R64, each left out with its reason."""
    whole = _registry()
    with pytest.raises(tr.TraceabilityError, match="R64 needs"):
        tr.load_registry(whole.split("[R64]")[0])
    with pytest.raises(tr.TraceabilityError, match="R3 is out of scope: say why"):
        tr.load_registry(whole.replace('reason = "why 3"\n', ""))
    with pytest.raises(tr.TraceabilityError, match="R5's status"):
        tr.load_registry(
            whole.replace('title = "t5"\nstatus = "out of scope"', 'title = "t5"\nstatus = "maybe"')
        )


# --- TR5 ------------------------------------------------------------------------------


def test_the_page_is_the_same_bytes_every_run_and_check_names_the_command_when_stale_r36(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TR5: generate twice, same bytes; a new mention makes ``check`` fail, naming the command."""
    assert tr.generate(tree) == 0
    first = (tree / "docs/traceability.md").read_bytes()
    assert tr.generate(tree) == 0
    assert (tree / "docs/traceability.md").read_bytes() == first
    page = first.decode()
    assert "`tests/update_server/test_freeze.py::test_refused_when_frozen_r33`" in page
    assert "- `update_server/freeze.py`: module, `refuse_if_frozen`" in page
    assert "| R7 | t7 | why 7 |" in page
    assert tr.check(tree) == 0

    test_file = tree / "tests/update_server/test_freeze.py"
    test_file.write_text(TEST_FILE.replace("Lifting needs two officers (R9)", "(R9, R24)"))
    assert tr.check(tree) == 1
    err = capsys.readouterr().err
    assert "docs/traceability.md is stale" in err
    assert "run `make traceability`" in err


def test_check_fails_when_an_addressed_recommendation_has_no_test_r36(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TR6: an addressed recommendation that no test names fails ``check`` before any run."""
    registry = _registry({24: "Isolate", 33: "Failsafe", 9: "Roles", 62: "Erase"})
    (tree / "tools/traceability.toml").write_text(registry)
    tr.generate(tree)
    assert tr.check(tree) == 1
    assert (
        "R62 is addressed in tools/traceability.toml but no test names it"
        in capsys.readouterr().err
    )


def test_a_registry_may_declare_other_tests_that_answer_a_recommendation_r36(tree: Path) -> None:
    """TR4: ``answered_by`` and ``test_modules``, shown on the page as declared."""
    registry = _registry(
        {24: "Isolate", 33: "Failsafe", 9: "Roles", 49: "Integrity", 42: "Attacks"}
    )
    registry = registry.replace(
        'title = "Integrity"\nstatus = "addressed"\n',
        'title = "Integrity"\nstatus = "addressed"\nanswered_by = ["R33"]\n',
    ).replace(
        'title = "Attacks"\nstatus = "addressed"\n',
        'title = "Attacks"\nstatus = "addressed"\n'
        'test_modules = ["tests/update_server/test_freeze.py"]\n',
    )
    (tree / "tools/traceability.toml").write_text(registry)
    loaded = tr.load_registry(registry)
    evidence = tr.scan(tree, loaded)
    by_number = {r.number: r for r in loaded.addressed}
    assert [t.qualname for t in evidence.tests_for(by_number[49])] == [
        "test_refused_when_frozen_r33"
    ]
    assert len(evidence.tests_for(by_number[42])) == 2
    page = tr.render(loaded, evidence)
    assert "Also answered by the tests of R33 (1), as `tools/traceability.toml` declares." in page
    assert "- `tests/update_server/test_freeze.py` (2)" in page


# --- TR6 ------------------------------------------------------------------------------


def _junit(cases: dict[tuple[str, str], str]) -> bytes:
    body = {"passed": "", "failed": "<failure message='x'/>", "skipped": "<skipped/>"}
    rows = "".join(
        f'<testcase classname="{c}" name="{n}">{body[o]}</testcase>' for (c, n), o in cases.items()
    )
    return f'<testsuites><testsuite name="pytest">{rows}</testsuite></testsuites>'.encode()


MODULE = "tests.update_server.test_freeze"
FROZEN = (MODULE, "test_refused_when_frozen_r33")
LIFT = (f"{MODULE}.TestLift", "test_one_officer_twice_is_refused[olga-paul]")


def test_results_are_tallied_per_recommendation_and_written_to_the_report_r36(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TR6: a parametrized case maps to its test; the report has a row per addressed R."""
    junit = tmp_path / "junit.xml"
    junit.write_bytes(_junit({FROZEN: "passed", LIFT: "failed"}))
    out = tmp_path / "report"
    assert tr.results(tree, junit, out, gate=True) == 1  # R9's one test failed
    report = (out / "traceability-results.md").read_text()
    assert "| R9 | Roles | 0 | 1 | 0 | 0 |" in report
    assert "| R33 | Failsafe | 1 | 0 | 0 | 0 |" in report
    assert "| R24 | Isolate | 1 | 1 | 0 | 0 |" in report
    assert (
        "- R9: `tests/update_server/test_freeze.py::TestLift::test_one_officer_twice_is_refused`"
        in report
    )
    assert '"R33"' in (out / "traceability-results.json").read_text()
    assert "R9:0" in capsys.readouterr().out


@pytest.mark.parametrize("outcome", ["failed", "skipped"])
def test_an_addressed_recommendation_with_no_passing_test_fails_the_build_r36(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], outcome: str
) -> None:
    """TR6: R9's one test failed or skipped: exit 1, R9 named; ``--no-gate`` only reports."""
    junit = tmp_path / "junit.xml"
    junit.write_bytes(_junit({FROZEN: "passed", LIFT: outcome}))
    assert tr.results(tree, junit, tmp_path / "report", gate=True) == 1
    assert "R9 (Roles) is addressed but no test answering it passed" in capsys.readouterr().err
    assert tr.results(tree, junit, tmp_path / "report", gate=False) == 0


def test_a_missing_or_unreadable_junit_report_is_a_clear_error_r36(
    tree: Path, tmp_path: Path
) -> None:
    """TR6: no report, or a broken one, is said so (exit 2), never a pass."""
    assert (
        tr.main(
            ["--root", str(tree), "results", str(tmp_path / "none.xml"), "--out", str(tmp_path)]
        )
        == 2
    )
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites>")
    with pytest.raises(tr.TraceabilityError, match="cannot be read"):
        tr.results(tree, broken, tmp_path, gate=True)


# --- TR7 and the repository's threat model (R1) ---------------------------------------


def test_an_unknown_test_named_in_the_threat_model_is_reported_r1(tree: Path) -> None:
    """TR7: ids, bare names, patterns and ``_suffix`` abbreviations resolved; the rest named."""
    registry = tr.load_registry((tree / "tools/traceability.toml").read_text())
    tests = tr.scan(tree, registry).tests
    files = ["tests/update_server/test_freeze.py"]
    text = (
        "| a | `test_freeze.py::test_refused_when_frozen_r33`, `_when_frozen_r33`, `an_event` |\n"
        "| b | `tests/update_server/test_freeze.py::TestLift::test_one_*` `tests/update_server/`|\n"
        "| c | `test_refused_when_frozen_r33`, `tests/update_server/test_f*.py` |\n"
        "| d | `test_gone`, `test_freeze.py::test_gone_too`, `tests/web/test_x.py`, `_nowhere` |\n"
    )
    unknown = tr.unknown_test_references(text, tests, files)
    assert unknown == [
        "test_gone",
        "test_freeze.py::test_gone_too",
        "tests/web/test_x.py",
        "_nowhere",
    ]


@pytest.fixture(scope="module")
def repository() -> tuple[tr.Registry, tr.Evidence]:
    registry = tr.load_registry((ROOT / tr.REGISTRY).read_text(encoding="utf-8"))
    return registry, tr.scan(ROOT, registry)


def test_every_test_the_threat_model_names_exists_r1(
    repository: tuple[tr.Registry, tr.Evidence],
) -> None:
    """R1: the threat model names, for each threat, a test that is really there."""
    _, evidence = repository
    text = (ROOT / tr.THREAT_MODEL).read_text(encoding="utf-8")
    files = tr._test_files(ROOT)
    assert tr.unknown_test_references(text, evidence.tests, files) == []


def _tables(text: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Each markdown table of ``text``: its header cells and its rows' cells."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            if i > 0 and lines[i - 1].startswith("|"):
                continue
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split(" | ")])
            yield [c.strip() for c in line.strip().strip("|").split("|")], rows


def test_every_threat_in_the_threat_model_names_its_test_r1() -> None:
    """R1: a row of a table with a test column names at least one test in it."""
    text = (ROOT / tr.THREAT_MODEL).read_text(encoding="utf-8")
    checked = 0
    for header, rows in _tables(text):
        if "test" not in header and "tests" not in header:
            continue
        column = header.index("test") if "test" in header else header.index("tests")
        for row in rows:
            assert len(row) == len(header), f"a row of the {header} table is cut: {row}"
            spans = re.findall(r"`([^`]+)`", row[column])
            assert any(tr._looks_like_test_reference(s) for s in spans), f"no test named: {row[0]}"
            checked += 1
    assert checked > 50


# --- the network flows (R21, R22) -----------------------------------------------------

FLOWS = ROOT / "docs/network-flows.md"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    config = init_data_dir(tmp_path_factory.mktemp("flows") / "data", kdf=FAST_KDF).config
    application = create_app(
        config, clock=FakeClock(RUN_START), signer_loader=signer_loader(config)
    )
    yield application
    application.extensions["fw"].engine.dispose()


def test_every_route_open_without_a_session_is_a_documented_flow_r21_r22(app: Flask) -> None:
    """R21, R22: what a filter must let through without a person's session is listed by path."""
    text = FLOWS.read_text(encoding="utf-8")
    rules = list(app.url_map.iter_rules())
    open_routes = set()
    for rule in rules:
        access = access_of(app.view_functions[rule.endpoint])
        assert access is not None
        if access.public or access.device:
            open_routes.add(rule.rule)
    assert "/api/v1/device/poll" in open_routes
    assert "/metadata/<path:path>" in open_routes
    assert [r for r in sorted(open_routes) if f"`{r}`" not in text] == []
    # Every other route is reached through a path its first segment documents.
    firsts = {"/" + r.rule.split("/")[1] for r in rules}
    assert [f for f in sorted(firsts) if f"`{f}" not in text] == []


def test_every_flow_names_its_ends_port_protocol_authentication_and_what_it_carries_r21() -> None:
    """R21: the matrix is complete; the server's default port is the one the code binds."""
    text = FLOWS.read_text(encoding="utf-8")
    matrices = [rows for header, rows in _tables(text) if header[:3] == ["#", "from", "to"]]
    assert len(matrices) == 1
    rows = matrices[0]
    assert len(rows) >= 15
    for row in rows:
        assert len(row) == 7 and all(row), f"flow {row[0]} leaves a column empty"
    port = ServerConfig(data_dir=Path("/nonexistent")).port
    assert f"{port} / TCP" in text
    for flow in ("webhook", "syslog", "PostgreSQL", "nginx", "Prometheus", "NTP", "technician"):
        assert flow in text


# --- R2, R4/R45: nothing secret in the code; components locked with their hashes ------


def test_no_private_key_ships_in_the_product_every_key_is_made_at_installation_r2() -> None:
    """R2: security rests on keys made per installation, never on a secret in the code or data."""
    found = [
        path.relative_to(ROOT).as_posix()
        for package in tr.CODE_PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and b"PRIVATE KEY-----" in path.read_bytes()
    ]
    assert found == []


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_every_locked_component_is_pinned_to_one_version_with_its_hashes_r4_r45(lock: str) -> None:
    """R4, R45: a third-party component enters only at the version accepted, by its hash."""
    text = (ROOT / lock).read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[^\s#])", text)
    requirements = [e for e in entries if e.strip() and not e.startswith("#")]
    assert len(requirements) > 10
    for entry in requirements:
        name = entry.split()[0]
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", name), f"{lock}: {name} is not pinned"
        assert "--hash=sha256:" in entry, f"{lock}: {name} has no hash"


def test_the_strings_of_a_data_file_name_nothing_but_its_docstrings_do_r36(tmp_path: Path) -> None:
    """TR4: ``strings_are_data``: this module's own test data names no recommendation."""
    extra = '\n[strings_are_data]\nfiles = ["tests/test_data.py"]\n'
    source = 'def test_x_r36():\n    """Answers R1."""\n    assert "R9" != "R24"\n'
    root = _tree(
        tmp_path,
        {
            "tools/traceability.toml": _registry({1: "Risk"}, extra),
            "tests/test_data.py": source,
            "tests/test_other.py": source,
        },
    )
    evidence = tr.scan(root, tr.load_registry((root / "tools/traceability.toml").read_text()))
    named = {t.path: t.direct for t in evidence.tests}
    assert named == {"tests/test_data.py": {36, 1}, "tests/test_other.py": {36, 1, 9, 24}}
