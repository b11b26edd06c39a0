"""The coverage gate of the security cores (``tools/coverage_gate.py`` CG1-CG5, R36).

R36 asks for structural coverage measured: the build fails when a security
core's branch coverage is under the threshold or a line the tests do not run
has no written reason. The gate is tested on a small package measured here
by ``coverage run`` in a subprocess (its own data file, apart from the
suite's own measurement); the repository's own registry is checked against
the real sources.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import coverage_gate as gate

ROOT = Path(__file__).resolve().parent.parent

CORE = '''\
"""A small core."""


def pick(x):
    if x > 0:
        return "up"
    return "down"


def guard(x):
    if x is None:
        raise ValueError("never")
    return x
'''

DRIVER = """\
from pkg import core
core.pick(1)
core.pick(-1)
core.guard(2)
"""

RAISE = 'raise ValueError("never")'
IF_NONE = "if x is None:"


def _registry(
    *,
    threshold: float = 60,
    reasons: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    cores: str = '"pkg/core.py" = "the small core"',
    pending: str = "",
) -> str:
    text = f"threshold = {threshold}\n\n[cores]\n{cores}\n"
    if pending:
        text += f"\n[pending]\n{pending}\n"
    for file, function, line in reasons:
        text += (
            f"\n[[reason]]\nfile = {json.dumps(file)}\nfunction = {json.dumps(function)}\n"
            f'line = {json.dumps(line)}\nwhy = "defensive: callers never pass None"\n'
        )
    return text


def _measure(root: Path, core: str = CORE, driver: str = DRIVER) -> Path:
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "core.py").write_text(core)
    (root / "drive.py").write_text(driver)
    data = root / ".coverage"
    subprocess.run(
        [sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}", "drive.py"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    return data


def _gate(root: Path, registry: str, *extra: str) -> int:
    (root / "tools").mkdir(exist_ok=True)
    (root / gate.REGISTRY).write_text(registry)
    return gate.main([str(root / ".coverage"), "--root", str(root), *extra])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _measure(tmp_path)
    return tmp_path


def test_r36_an_uncovered_line_and_branch_with_no_written_reason_fail_naming_them(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG3: each gap is named with its file, line, function and text."""
    assert _gate(tree, _registry()) == 1
    err = capsys.readouterr().err
    assert f"pkg/core.py:12: line 12 not run in guard with no written reason: {RAISE}" in err
    branch = f"pkg/core.py:11: branch 11->12 not taken in guard with no written reason: {IF_NONE}"
    assert branch in err
    assert "pick" not in err


def test_r36_a_reason_anchored_by_function_and_text_explains_the_line_and_its_branch(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG3: one reason per line text; a branch is anchored at the line it leaves."""
    reasons = [("pkg/core.py", "guard", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    assert _gate(tree, _registry(reasons=reasons), "--out", str(tree / "out")) == 0
    out = capsys.readouterr().out
    assert "pkg/core.py: 83.3% (lines 7/8, branches 3/4)" in out
    page = (tree / "out" / "coverage-cores.md").read_text()
    assert "defensive: callers never pass None" in page
    report = json.loads((tree / "out" / "coverage-cores.json").read_text())
    assert report["problems"] == []
    assert report["cores"]["pkg/core.py"]["lines"] == {
        "run": 7,
        "statements": 8,
        "percent": 87.5,
    }


def test_r36_a_reason_survives_an_edit_elsewhere_in_the_file(tmp_path: Path) -> None:
    """CG3: the anchor is text and function, not a line number."""
    _measure(tmp_path, core='"""Moved down."""\n\nimport os\n\nHOME = os.sep\n' + CORE)
    reasons = [("pkg/core.py", "guard", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    assert _gate(tmp_path, _registry(reasons=reasons)) == 0


def test_r36_a_reason_whose_line_changed_fails_as_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG4: the code a reason explained changed: someone must read it again."""
    _measure(tmp_path, core=CORE.replace('"never"', '"no x"'))
    reasons = [("pkg/core.py", "guard", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    assert _gate(tmp_path, _registry(reasons=reasons)) == 1
    err = capsys.readouterr().err
    assert "names a line that is no longer there" in err
    assert 'raise ValueError("no x")' in err  # and the new line has no reason


def test_r36_a_reason_in_another_function_does_not_explain_the_line(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG3: the function is part of the anchor (the same text elsewhere is another line)."""
    reasons = [("pkg/core.py", "pick", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    assert _gate(tree, _registry(reasons=reasons)) == 1
    assert "line 12 not run in guard with no written reason" in capsys.readouterr().err


def test_r36_a_core_under_the_threshold_fails_even_with_every_gap_explained(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG2: reasons explain gaps, they never count as covered."""
    reasons = [("pkg/core.py", "guard", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    assert _gate(tree, _registry(threshold=95, reasons=reasons)) == 1
    err = capsys.readouterr().err
    assert "pkg/core.py: branch coverage 83.3% is below 95%" in err
    assert "lines 87.5%, branches 75.0%" in err


def test_r36_a_core_the_tests_never_import_fails(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG2: a core no test imports counts 0, whatever its reasons."""
    (tree / "pkg" / "other.py").write_text("def f():\n    return 1\n")
    cores = '"pkg/core.py" = "the small core"\n"pkg/other.py" = "never imported"'
    reasons = [("pkg/core.py", "guard", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    assert _gate(tree, _registry(reasons=reasons, cores=cores)) == 1
    assert "pkg/other.py: branch coverage 0.0% is below 60%" in capsys.readouterr().err


def test_r36_a_pending_core_is_reported_but_not_gated(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG1: a core whose tests are still to be written is visible, not hidden."""
    (tree / "pkg" / "other.py").write_text("def f():\n    return 1\n")
    cores = '"pkg/other.py" = "a core still to test"'
    reasons = [("pkg/core.py", "guard", RAISE), ("pkg/core.py", "guard", IF_NONE)]
    registry = _registry(reasons=reasons, pending=cores)
    assert _gate(tree, registry, "--out", str(tree / "out")) == 0
    out = capsys.readouterr().out
    assert "pkg/other.py (pending): 0.0%" in out
    assert "findings in the pending cores (pkg/other.py), not gated" in out
    page = (tree / "out" / "coverage-cores.md").read_text()
    assert "## Pending: cores whose tests are still to be written" in page
    assert "pkg/other.py: branch coverage 0.0% is below 60%" in page


def test_r36_a_bare_pragma_fails_and_one_that_says_why_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG5: an exclusion is a gap the report does not show, so it must say why."""
    bare = CORE.replace(IF_NONE, IF_NONE + "  # pragma: no cover")
    _measure(tmp_path, core=bare)
    assert _gate(tmp_path, _registry()) == 1
    assert "pkg/core.py:11: `pragma: no cover` with no reason" in capsys.readouterr().err
    explained = [("pkg/core.py", "guard", IF_NONE + "  # pragma: no cover")]
    assert _gate(tmp_path, _registry(reasons=explained)) == 0
    said = CORE.replace(IF_NONE, IF_NONE + "  # pragma: no cover - callers never pass None")
    _measure(tmp_path, core=said)
    assert _gate(tmp_path, _registry(), "--out", str(tmp_path / "out")) == 0
    report = json.loads((tmp_path / "out" / "coverage-cores.json").read_text())
    assert report["cores"]["pkg/core.py"]["excluded_lines"] == 2


def test_r36_a_reason_for_a_line_the_run_covered_is_a_note_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG4: a line some runs reach (a race's loser) must not make the gate flaky."""
    _measure(tmp_path, driver=DRIVER + "try:\n    core.guard(None)\nexcept ValueError:\n    pass\n")
    assert _gate(tmp_path, _registry(reasons=[("pkg/core.py", "guard", RAISE)])) == 0
    assert "note: this run covered pkg/core.py guard" in capsys.readouterr().out


def test_r36_a_listed_core_that_does_not_exist_fails(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CG1: a renamed core is renamed in the registry, never dropped silently."""
    assert _gate(tree, _registry(cores='"pkg/gone.py" = "renamed"')) == 1
    assert "core pkg/gone.py listed in" in capsys.readouterr().err


def test_r36_a_narrowed_run_reports_without_failing(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--no-gate``: a run narrowed by PYTEST_ARGS measures a part and proves nothing."""
    assert _gate(tree, _registry(threshold=95), "--no-gate") == 0
    assert "a partial run, not checked (3 findings)" in capsys.readouterr().out


def test_r36_no_coverage_data_or_a_malformed_registry_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "core.py").write_text(CORE)
    assert _gate(tmp_path, _registry()) == 2
    assert "no coverage data at" in capsys.readouterr().err
    _measure(tmp_path)
    assert _gate(tmp_path, _registry() + '\n[[reason]]\nfile = "pkg/core.py"\n') == 2
    assert "reason 1 needs exactly file, function, line and why" in capsys.readouterr().err
    assert _gate(tmp_path, "threshold = 0\n[cores]\n") == 2
    assert "threshold must be above 0" in capsys.readouterr().err
    both = _registry(pending='"pkg/core.py" = "x"')
    assert _gate(tmp_path, both) == 2
    assert "in both [cores] and [pending]: pkg/core.py" in capsys.readouterr().err


def test_r36_the_repository_registry_names_real_cores_and_every_reason_still_matches() -> None:
    """CG1, CG4 on the real tree: no coverage run needed to find a stale reason."""
    registry = gate.load_registry((ROOT / gate.REGISTRY).read_text(encoding="utf-8"))
    assert registry.threshold == 95
    for core in registry.measured:
        assert (ROOT / core).is_file(), core
    for reason in registry.reasons:
        source = gate.read_source(ROOT / reason.file)
        anchors = {source.anchor(n) for n in range(1, len(source.lines) + 1)}
        assert (reason.function, reason.line) in anchors, reason
