"""The coverage gate of the security cores (R36: structural coverage measured).

``make unit`` measures coverage in its first pass (pytest-cov, ``branch =
true`` in ``pyproject.toml``) into ``.coverage``; this module reads that file
and fails the build when a security core is under-tested. The hand-kept part
is ``tools/coverage_gate.toml``: which modules are the cores, and the written
reason for each line or branch in them that the tests do not run.

CG1 The cores are the files in the registry's ``[cores]`` table, each with a
    one-line reason it is a core. A listed file that does not exist fails (a
    renamed core must be renamed here, not dropped silently). A core in
    ``[pending]`` (same form) is a core whose tests are still to be written:
    measured and reported under its own heading, not gated; a file in both
    tables fails.
CG2 Each core's branch coverage, as coverage.py computes it with branch
    measurement on (statements run plus branch destinations taken, over
    statements plus branch destinations: the figure ``coverage report
    --fail-under`` checks), must reach ``threshold`` (95), compared exactly,
    not rounded. Lines and branches are also reported apart. A core the run
    never imported counts 0. Written reasons do not count as covered: the
    figure is what the tests ran.
CG3 Each statement not run and each branch destination not taken in a core
    needs a ``[[reason]]``: its ``file``, its ``function`` (the qualified name
    of the innermost ``def`` or ``class`` around the line, ``<module>`` at
    top level), its ``line`` (the source text of the statement's first line,
    stripped) and ``why``. A branch is anchored at the line it leaves. The
    anchor survives edits elsewhere in the file; when the line itself or its
    function changes, the reason stops matching and must be written again.
    A reason covers every line of its function with that text.
CG4 A reason whose anchor matches no line of its file fails: the code it
    explained changed. A reason whose lines the run covered is listed as no
    longer needed but does not fail (a line that only some runs reach, a
    race's loser for instance, would otherwise make the gate flaky).
CG5 An inline ``# pragma: no cover`` in a core must say why, on the same line
    (``# pragma: no cover - <why>``) or in a ``[[reason]]`` anchored at it;
    the lines it excludes leave the figures, so the report counts them. A
    bare pragma with neither fails.

Usage (from the repository's root, after a run with ``--cov``)::

    python tools/coverage_gate.py .coverage --out build/report
    python tools/coverage_gate.py .coverage --no-gate   # a narrowed run: report only
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coverage

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = Path("tools/coverage_gate.toml")
MODULE = "<module>"
_PRAGMA = re.compile(r"#\s*pragma:\s*no\s*cover\b(?P<rest>.*)$", re.IGNORECASE)
_PRAGMA_REASON = re.compile(r"^\s*[-:(]\s*\w")


class GateError(Exception):
    """The registry or the coverage data cannot be read; the message says which."""


# --- the registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """CG3: why one line (or the branches leaving it) of a core is not run by the tests."""

    file: str
    function: str
    line: str
    why: str


@dataclass(frozen=True)
class Registry:
    threshold: float
    cores: Mapping[str, str]
    pending: Mapping[str, str]
    reasons: tuple[Reason, ...]

    @property
    def measured(self) -> dict[str, str]:
        return {**self.cores, **self.pending}


def load_registry(text: str) -> Registry:
    """Parse ``tools/coverage_gate.toml``; a malformed entry is a ``GateError`` naming it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise GateError(f"{REGISTRY} is not valid TOML: {error}") from error
    threshold = data.get("threshold")
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        raise GateError(f"{REGISTRY}: threshold must be a number (per cent)")
    if not 0 < threshold <= 100:
        raise GateError(f"{REGISTRY}: threshold must be above 0 and at most 100")
    cores = data.get("cores")
    if not isinstance(cores, dict) or not cores:
        raise GateError(f"{REGISTRY}: [cores] must list at least one file with its reason")
    pending = data.get("pending", {})
    if not isinstance(pending, dict):
        raise GateError(f"{REGISTRY}: [pending] is a table of files and reasons")
    for path, why in {**cores, **pending}.items():
        if not isinstance(why, str) or not why.strip():
            raise GateError(f"{REGISTRY}: core {path} needs a one-line reason it is a core")
    both = sorted(set(cores) & set(pending))
    if both:
        raise GateError(f"{REGISTRY}: in both [cores] and [pending]: {', '.join(both)}")
    reasons = []
    for n, entry in enumerate(data.get("reason", []), start=1):
        fields = {k: entry.get(k) for k in ("file", "function", "line", "why")}
        missing = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if missing or set(entry) - set(fields):
            raise GateError(
                f"{REGISTRY}: reason {n} needs exactly file, function, line and why "
                f"(missing or empty: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(sorted(set(entry) - set(fields))) or 'none'})"
            )
        if fields["file"] not in cores and fields["file"] not in pending:
            raise GateError(f"{REGISTRY}: reason {n} is for {fields['file']}, not a core")
        reasons.append(Reason(**{k: str(v).strip() for k, v in fields.items()}))
    return Registry(float(threshold), dict(cores), dict(pending), tuple(reasons))


# --- the source: which function holds a line, and its text ------------------------------


@dataclass(frozen=True)
class Source:
    lines: tuple[str, ...]
    owner: Mapping[int, str]

    def anchor(self, lineno: int) -> tuple[str, str]:
        """(qualified function, stripped text) of a 1-based line."""
        return self.owner.get(lineno, MODULE), self.lines[lineno - 1].strip()


def read_source(path: Path) -> Source:
    text = path.read_text(encoding="utf-8")
    owner: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                for n in range(child.lineno, end + 1):
                    owner[n] = name  # inner definitions are visited after, and win
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(text, filename=str(path)), "")
    return Source(tuple(text.splitlines()), owner)


# --- the measurement ----------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """A statement not run, or a branch destination not taken, in a core."""

    file: str
    lineno: int
    function: str
    text: str
    what: str  # "line 12 not run" or "branch 12->15 not taken"


@dataclass
class CoreResult:
    file: str
    statements: int = 0
    run: int = 0
    branches: int = 0
    taken: int = 0
    excluded: int = 0
    measured: bool = False
    gaps: list[Gap] = field(default_factory=list)

    @property
    def percent(self) -> float:
        """CG2: coverage.py's figure with branch measurement."""
        total = self.statements + self.branches
        return 100.0 * (self.run + self.taken) / total if total else 100.0

    @property
    def line_percent(self) -> float:
        return 100.0 * self.run / self.statements if self.statements else 100.0

    @property
    def branch_percent(self) -> float:
        return 100.0 * self.taken / self.branches if self.branches else 100.0


def measure(data_file: Path, root: Path, cores: Iterable[str]) -> dict[str, CoreResult]:
    """CG2: each core's figures and gaps, read from a coverage data file."""
    if not data_file.exists():
        raise GateError(f"no coverage data at {data_file}: run the tests with --cov first")
    config: str | bool = str(root / "pyproject.toml")
    if not (root / "pyproject.toml").exists():
        config = False
    cov = coverage.Coverage(data_file=str(data_file), config_file=config)
    cov.load()
    files = {core: (root / core).resolve() for core in cores}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        try:
            cov.json_report(
                morfs=[str(p) for p in files.values()], outfile=str(out), ignore_errors=True
            )
            report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        except coverage.exceptions.NoDataError:
            report = {"files": {}}
    by_path = {Path(name).resolve(): entry for name, entry in report["files"].items()}
    results = {}
    for core, path in files.items():
        result = CoreResult(core)
        results[core] = result
        source = read_source(path)
        entry = by_path.get(path)
        if entry is None or not entry["executed_lines"]:
            result.statements = _count_statements(cov, path)
            result.gaps.append(Gap(core, 1, MODULE, "", "never imported by the tests"))
            continue
        summary = entry["summary"]
        result.measured = True
        result.statements = summary["num_statements"]
        result.run = summary["covered_lines"]
        result.branches = summary.get("num_branches", 0)
        result.taken = summary.get("covered_branches", 0)
        result.excluded = len(entry.get("excluded_lines", []))
        for lineno in entry["missing_lines"]:
            function, text = source.anchor(lineno)
            result.gaps.append(Gap(core, lineno, function, text, f"line {lineno} not run"))
        for start, end in entry.get("missing_branches", []):
            function, text = source.anchor(start)
            target = "exit" if end < 0 else str(end)
            result.gaps.append(
                Gap(core, start, function, text, f"branch {start}->{target} not taken")
            )
    return results


def _count_statements(cov: coverage.Coverage, path: Path) -> int:
    try:
        _, statements, _, _, _ = cov.analysis2(str(path))
    except coverage.exceptions.CoverageException:
        return 0
    return len(statements)


# --- the verdict ----------------------------------------------------------------------------


@dataclass
class Verdict:
    results: dict[str, CoreResult]
    problems: list[str]
    pending: list[str]  # what would fail in the [pending] cores
    unneeded: list[Reason]
    explained: list[tuple[Gap, Reason]]


def _anchored(reasons: Iterable[Reason], file: str, function: str, text: str) -> Reason | None:
    return next(
        (r for r in reasons if (r.file, r.function, r.line) == (file, function, text)), None
    )


def judge(root: Path, registry: Registry, results: dict[str, CoreResult]) -> Verdict:
    """CG1-CG5 over measured results; ``problems`` empty means the gate passes."""
    findings: dict[str, list[str]] = {core: [] for core in results}
    explained, used = [], set()
    for core, result in sorted(results.items()):
        if not result.measured or result.percent < registry.threshold:
            findings[core].append(
                f"{core}: branch coverage {result.percent:.1f}% is below "
                f"{registry.threshold:g}% (lines {result.line_percent:.1f}%, "
                f"branches {result.branch_percent:.1f}%)"
                + ("" if result.measured else ": the tests never import it")
            )
        for gap in result.gaps:
            reason = _anchored(registry.reasons, gap.file, gap.function, gap.text)
            if reason is not None:
                explained.append((gap, reason))
                used.add(reason)
            elif result.measured:
                findings[core].append(
                    f"{gap.file}:{gap.lineno}: {gap.what} in {gap.function} "
                    f"with no written reason: {gap.text}"
                )
    sources = {core: read_source(root / core) for core in results}
    for reason in registry.reasons:
        source = sources[reason.file]
        anchors = {source.anchor(n) for n in range(1, len(source.lines) + 1)}
        if (reason.function, reason.line) not in anchors:
            findings[reason.file].append(
                f"{REGISTRY}: the reason for {reason.file} in {reason.function} names a line "
                f"that is no longer there ({reason.line!r}): the code changed, read it again"
            )
    for core, source in sources.items():
        for n, line in enumerate(source.lines, start=1):
            found = _PRAGMA.search(line)
            if not found or _PRAGMA_REASON.match(found["rest"]):
                continue
            reason = _anchored(registry.reasons, core, *source.anchor(n))
            if reason is None:
                findings[core].append(
                    f"{core}:{n}: `pragma: no cover` with no reason (write "
                    f"`# pragma: no cover - <why>` or a [[reason]] in {REGISTRY}, or cover it)"
                )
            else:
                used.add(reason)
    problems = [f for core in registry.cores if core in findings for f in findings[core]]
    pending = [f for core in registry.pending if core in findings for f in findings[core]]
    unneeded = [r for r in registry.reasons if r not in used]
    return Verdict(results, problems, pending, unneeded, explained)


# --- the report -----------------------------------------------------------------------------


def _row(registry: Registry, verdict: Verdict, core: str) -> str:
    r = verdict.results[core]
    reasoned = sum(1 for g, _ in verdict.explained if g.file == core)
    return (
        f"| `{core}` | {registry.measured[core]} | {r.percent:.1f}% | "
        f"{r.line_percent:.1f}% ({r.run}/{r.statements}) | "
        f"{r.branch_percent:.1f}% ({r.taken}/{r.branches}) | {reasoned} | {r.excluded} |"
    )


def render_markdown(registry: Registry, verdict: Verdict) -> str:
    header = [
        "| Core | Why it is a core | Branch coverage | Lines | Branches "
        "| Not run, with reason | Excluded |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [
        "# Coverage of the security cores (R36)",
        "",
        f"Written by `tools/coverage_gate.py` from pass 1 of `make unit`. Each core's "
        f"branch coverage (coverage.py's figure) must reach {registry.threshold:g}%, and "
        "every line or branch the tests do not run has a written reason "
        f"(`{REGISTRY}`).",
        "",
        *header,
        *(_row(registry, verdict, core) for core in sorted(registry.cores)),
    ]
    if registry.pending:
        rows += ["", "## Pending: cores whose tests are still to be written (not gated)", ""]
        rows += [*header, *(_row(registry, verdict, core) for core in sorted(registry.pending))]
    rows += ["", "## Not run, and why", ""]
    for gap, reason in sorted(verdict.explained, key=lambda e: (e[0].file, e[0].lineno)):
        rows.append(f"- `{gap.file}` {gap.what} (`{gap.function}`: `{gap.text}`): {reason.why}")
    rows += ["", "## Problems", ""]
    rows += [f"- {p}" for p in verdict.problems] or ["- none"]
    if registry.pending:
        rows += ["", "## In the pending cores", ""]
        rows += [f"- {p}" for p in verdict.pending] or ["- none"]
    return "\n".join(rows) + "\n"


def render_json(registry: Registry, verdict: Verdict) -> str:
    cores = {
        core: {
            "why": registry.measured[core],
            "gated": core in registry.cores,
            "percent": r.percent,
            "lines": {"run": r.run, "statements": r.statements, "percent": r.line_percent},
            "branches": {"taken": r.taken, "total": r.branches, "percent": r.branch_percent},
            "excluded_lines": r.excluded,
            "not_run_with_reason": [
                {"what": g.what, "function": g.function, "line": g.text, "why": why.why}
                for g, why in verdict.explained
                if g.file == core
            ],
        }
        for core, r in sorted(verdict.results.items())
    }
    body = {
        "threshold": registry.threshold,
        "cores": cores,
        "problems": verdict.problems,
        "pending": verdict.pending,
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def run(root: Path, data_file: Path, out: Path | None, *, gate: bool) -> int:
    registry = load_registry((root / REGISTRY).read_text(encoding="utf-8"))
    missing = [core for core in registry.measured if not (root / core).is_file()]
    for core in missing:
        print(  # noqa: T201
            f"coverage gate: core {core} listed in {REGISTRY} does not exist "
            "(renamed? rename it there)",
            file=sys.stderr,
        )
    if missing:
        return 1
    verdict = judge(root, registry, measure(data_file, root, registry.measured))
    for core, r in sorted(verdict.results.items()):
        print(  # noqa: T201
            f"coverage gate: {core}{'' if core in registry.cores else ' (pending)'}: "
            f"{r.percent:.1f}% (lines {r.run}/{r.statements}, branches {r.taken}/{r.branches})"
        )
    for reason in verdict.unneeded:
        print(  # noqa: T201
            f"coverage gate: note: this run covered {reason.file} {reason.function}: "
            f"{reason.line!r}; its reason in {REGISTRY} may go"
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "coverage-cores.md").write_text(render_markdown(registry, verdict), "utf-8")
        (out / "coverage-cores.json").write_text(render_json(registry, verdict), "utf-8")
        print(f"coverage gate: report in {out / 'coverage-cores.md'}")  # noqa: T201
    if verdict.pending:
        print(  # noqa: T201
            f"coverage gate: {len(verdict.pending)} findings in the pending cores "
            f"({', '.join(sorted(registry.pending))}), not gated"
        )
    if not gate:
        print(  # noqa: T201
            f"coverage gate: a partial run, not checked ({len(verdict.problems)} findings)"
        )
        return 0
    for problem in verdict.problems:
        print(f"coverage gate: {problem}", file=sys.stderr)  # noqa: T201
    return 1 if verdict.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the coverage data file (.coverage)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository's root")
    parser.add_argument("--out", type=Path, help="write coverage-cores.{md,json} there")
    parser.add_argument(
        "--no-gate", action="store_true", help="report only (a partial run proves nothing)"
    )
    args = parser.parse_args(argv)
    try:
        return run(args.root, args.data, args.out, gate=not args.no_gate)
    except GateError as error:
        print(f"coverage gate: {error}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
