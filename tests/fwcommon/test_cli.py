"""One message style for every tool: errors, hints, interrupts, closed pipes, --version, --help."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points, version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from client.cli import main as fwclient
from fwcommon import entry
from fwcommon.cli import ToolError, ToolGroup, ask, on_interrupt, warn
from hsm_mock.cli import main as fwhsm
from signer.cli import main as fwsign
from update_server.cli import main as fwserver

TOOLS = {"fwsign": fwsign, "fwhsm": fwhsm, "fwserver": fwserver, "fwclient": fwclient}
REPO_ROOT = Path(__file__).resolve().parents[2]


class ToyError(Exception):
    """The toy tool's expected error."""


@click.group(cls=ToolGroup, tool="toy", errors=(ToyError, OSError))
def toy() -> None:
    """A tool made only for these tests."""


@toy.command()
@click.option("--hint", is_flag=True)
def expected(hint: bool) -> None:
    if hint:
        raise ToolError("the widget is missing", hint="run 'toy make-widget' first")
    raise ToyError("the widget is missing")


@toy.command()
def unexpected() -> None:
    raise RuntimeError("a bug")


@toy.command()
def missing_file() -> None:
    Path("/nonexistent/fwcommon-test").read_bytes()


@toy.command()
@click.option("--says", help="What Ctrl-C says.")
def interrupted(says: str | None) -> None:
    if says:
        on_interrupt(says)
    raise KeyboardInterrupt


@toy.command()
def pin() -> None:
    click.echo(f"got {len(ask('New PIN', envvar='TOY_PIN'))} characters")


@toy.command()
def bare_prompt() -> None:
    click.prompt("Anything")


@toy.command()
def caution() -> None:
    warn("the widget is old")


@toy.command()
@click.option("--colour", envvar="TOY_COLOUR", help="A colour.")
def paint(colour: str | None) -> None:
    click.echo(colour)


def run_toy(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(toy, list(args), input=stdin, env=env)


def test_an_expected_error_is_one_line_naming_the_tool_and_exit_1() -> None:
    result = run_toy("expected")
    assert (result.exit_code, result.stderr) == (1, "toy: error: the widget is missing\n")


def test_an_error_with_a_hint_says_what_to_do_on_a_second_line() -> None:
    result = run_toy("expected", "--hint")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "toy: error: the widget is missing",
        "toy: hint: run 'toy make-widget' first",
    ]


def test_an_unexpected_error_is_not_hidden_as_a_message() -> None:
    result = run_toy("unexpected")
    assert isinstance(result.exception, RuntimeError)
    assert "toy: error" not in result.stderr


def test_a_file_error_names_the_file_and_the_reason_not_errno() -> None:
    result = run_toy("missing-file")
    assert result.exit_code == 1
    assert result.stderr == "toy: error: /nonexistent/fwcommon-test: No such file or directory\n"


def test_a_usage_mistake_is_in_the_same_style_with_a_hint_and_exit_2() -> None:
    result = run_toy("expected", "--bogus")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "toy: error: No such option '--bogus'.",
        "toy: hint: see 'toy expected --help'",
    ]


def test_ctrl_c_says_nothing_was_changed_and_exits_130() -> None:
    result = run_toy("interrupted")
    assert (result.exit_code, result.stderr) == (130, "toy: interrupted: nothing was changed\n")


def test_a_command_says_what_its_interrupt_leaves() -> None:
    result = run_toy("interrupted", "--says", "nothing was published")
    assert (result.exit_code, result.stderr) == (130, "toy: interrupted: nothing was published\n")


def test_a_prompt_with_no_terminal_names_the_variable_to_set() -> None:
    result = run_toy("pin", stdin="")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2:] == [
        "toy: error: no terminal to ask for the new PIN",
        "toy: hint: set TOY_PIN, or run the command in a terminal",
    ]
    assert "Aborted" not in result.output


def test_the_variable_answers_the_prompt() -> None:
    result = run_toy("pin", env={"TOY_PIN": "1234"})
    assert (result.exit_code, result.stdout) == (0, "got 4 characters\n")


def test_any_other_prompt_with_no_terminal_is_a_clear_error_not_aborted() -> None:
    result = run_toy("bare-prompt", stdin="")
    assert result.exit_code == 1
    assert "toy: error: standard input ended before a question was answered" in result.stderr
    assert "toy: hint: run the command in a terminal" in result.stderr
    assert "Aborted" not in result.output


def test_a_warning_names_the_tool() -> None:
    result = run_toy("caution")
    assert (result.exit_code, result.stderr) == (0, "toy: warning: the widget is old\n")


def test_a_closed_stdout_ends_quietly_without_a_traceback(tmp_path: Path) -> None:
    """``fwclient status | head``: the reader has gone; no broken-pipe traceback or error."""
    script = tmp_path / "chatty.py"
    script.write_text(
        textwrap.dedent(
            """
            import click
            from fwcommon.cli import ToolGroup

            @click.group(cls=ToolGroup, tool="chatty", errors=(OSError,))
            def chatty() -> None: ...

            @chatty.command()
            def talk() -> None:
                for n in range(1_000_000):
                    click.echo(f"line {n}")

            chatty()
            """
        )
    )
    with subprocess.Popen(
        [sys.executable, str(script), "talk"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"line 0\n"
        process.stdout.close()
        stderr = process.stderr.read()
        status = process.wait(timeout=60)
    assert (status, stderr) == (1, b"")


def test_a_broken_pipe_that_is_not_stdout_is_reported_as_an_error() -> None:
    @click.group(cls=ToolGroup, tool="net", errors=(OSError,))
    def net() -> None: ...

    @net.command()
    def send() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    result = CliRunner().invoke(net, ["send"])
    assert (result.exit_code, result.stderr) == (1, "net: error: [Errno 32] Broken pipe\n")


def test_help_shows_an_options_environment_variable() -> None:
    result = run_toy("paint", "--help")
    assert "env var: TOY_COLOUR" in result.stdout


# -- the four tools --------------------------------------------------------------------------


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tool_answers_version(tool: str) -> None:
    result = CliRunner().invoke(TOOLS[tool], ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"{tool} {version('fwupdate')}\n")


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += _commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tools_help_shows_the_environment_variable_of_each_option(tool: str) -> None:
    group = TOOLS[tool]
    checked = 0
    for path, command in _commands(group):
        result = CliRunner().invoke(group, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        shown = " ".join(result.stdout.split())
        for param in command.params:
            names = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
            for name in filter(None, names):
                assert f"env var: {name}" in shown, (path, param.name)
                checked += 1
    if tool == "fwserver":
        assert checked >= 1  # FWSERVER_DATA_DIR at least: the walk found the options


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_every_tools_errors_are_in_the_house_style(tool: str) -> None:
    result = CliRunner().invoke(TOOLS[tool], ["no-such-command"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{tool}: error: No such command 'no-such-command'")
    assert f"{tool}: hint: see '{tool} --help'" in result.stderr


# -- entry points ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_the_console_scripts_start_through_the_guarded_entry(
    tool: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == tool]
    assert script.value == f"fwcommon.entry:{tool}"
    monkeypatch.setattr(sys, "argv", [tool, "--version"])
    with pytest.raises(SystemExit) as stopped:
        script.load()()
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"{tool} {version('fwupdate')}\n"


def test_ctrl_c_while_a_tool_is_still_importing_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted_import(name: str) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted_import)
    with pytest.raises(SystemExit) as stopped:
        entry.fwsign()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "fwsign: interrupted: nothing was changed\n"
