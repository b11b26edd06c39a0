"""One voice for the messages of every tool (fwsign, fwhsm, fwserver, fwclient).

On stderr, one line each, named by the tool so that a log of several tools
reads clearly::

    fwsign: error: <what was wrong>           exit status 1 (usage mistakes: 2)
    fwsign: hint: <what to do>                after an error that carries a hint
    fwsign: warning: <what may go wrong>      the command goes on
    fwsign: interrupted: nothing was changed  Ctrl-C, exit status 130

A tool may keep documented exit statuses of its own (fwhsm: 3 to 6), and
fwclient names a refusal by the event it logs instead of ``error``
(``fwclient: freeze_attack: ...``): the device's own vocabulary.

``ToolGroup`` is the click group every tool's root command uses. It turns the
tool's expected errors into that line (never a traceback); Ctrl-C into the
interrupted line; a prompt that standard input cannot answer (no terminal)
into an error that names what to set; a closed stdout (``fwclient status |
head``) into a quiet exit. It adds ``--version`` and shows in ``--help`` the
environment variable of each option that has one.
"""

from __future__ import annotations

import getpass
import os
import select
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import click

from fwcommon.entry import INTERRUPTED_STATUS, NOTHING_CHANGED

DISTRIBUTION = "fwupdate"
_INTERRUPTED_KEY = "fwcommon.interrupted"


@dataclass(frozen=True)
class Failure:
    """How one error is reported: its line, an optional hint and the exit status."""

    text: str
    hint: str | None = None
    status: int = 1
    kind: str = "error"


class ToolError(Exception):
    """An error the command line itself finds, with what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class NoTerminalError(ToolError):
    """A prompt had no one to answer it: standard input ended (no terminal)."""


def tool_name() -> str:
    """The running tool's name (the root command's), or the program's."""
    context = click.get_current_context(silent=True)
    if context is None:
        return Path(sys.argv[0]).name or "fw"
    root = context.find_root()
    return root.command.tool if isinstance(root.command, ToolGroup) else str(root.info_name)


def say(kind: str, text: str) -> None:
    """Print ``<tool>: <kind>: <text>`` on stderr."""
    click.echo(f"{tool_name()}: {kind}: {text}", err=True)


def warn(text: str) -> None:
    """Print ``<tool>: warning: <text>`` on stderr; the command goes on."""
    say("warning", text)


def on_interrupt(text: str) -> None:
    """What Ctrl-C during the running command says (default: nothing was changed)."""
    click.get_current_context().meta[_INTERRUPTED_KEY] = text


def ask(prompt: str, *, envvar: str, hide_input: bool = True, confirm: bool = False) -> str:
    """The value of ``envvar`` if set, else the answer to ``prompt`` on the terminal.

    With no terminal to answer (standard input ends), a ``NoTerminalError``
    naming ``envvar``, never click's bare "Aborted!".
    """
    value = os.environ.get(envvar)
    if value is not None:
        return value
    try:
        with warnings.catch_warnings():
            # With no terminal, getpass reads the pipe; its warning reads like a crash.
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            answer = click.prompt(
                prompt, hide_input=hide_input, confirmation_prompt=confirm, err=True
            )
    except click.Abort as exc:
        if isinstance(exc.__context__, EOFError):
            raise NoTerminalError(
                f"no terminal to ask for the {prompt[:1].lower()}{prompt[1:]}",
                hint=f"set {envvar}, or run the command in a terminal",
            ) from None
        raise
    return str(answer)


def show_envvars(command: click.Command) -> None:
    """Make ``--help`` show the environment variable of every option that has one."""
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            show_envvars(sub)


def package_version() -> str:
    """The installed version of the product, or a marker when it is not installed."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"{tool_name()} {package_version()}")
    ctx.exit()


def _version_option() -> click.Option:
    return click.Option(
        ["--version"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_version,
        help="Show the version and exit.",
    )


class ToolGroup(click.Group):
    """The root group of a tool: its errors become one line in the house style.

    ``tool`` names the tool in every line; ``errors`` are the exception types
    its commands raise for a person to read (anything else is a bug and keeps
    its traceback). Tools override ``failure`` for their own exit statuses or
    wording. Use it as ``@click.group(cls=ToolGroup, tool=..., errors=...)``.
    """

    def __init__(
        self,
        *args: Any,
        tool: str,
        errors: Sequence[type[Exception]] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tool = tool
        self.expected_errors: tuple[type[Exception], ...] = (ToolError, *errors)
        self.params.append(_version_option())

    def failure(self, exc: Exception) -> Failure:
        """How an expected error is reported; the hint comes from its ``hint``, if any."""
        hint = getattr(exc, "hint", None)
        return Failure(describe(exc), hint=hint if isinstance(hint, str) else None)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        *more: Any,
        **extra: Any,
    ) -> Any:
        """Run the tool; usage lines and hints name it however it was started."""
        show_envvars(self)  # every command is registered by the time the tool runs
        return super().main(args, self.tool, *more, **extra)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            self._click_error(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:
            self._click_error(exc)
        except KeyboardInterrupt:
            self._interrupted(ctx)
        except click.Abort as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):
                self._interrupted(ctx)
            if isinstance(exc.__context__, EOFError):
                self._report(ctx, self.failure(_no_terminal()))
            raise
        except Exception as exc:
            if isinstance(exc, BrokenPipeError) and _stdout_closed():
                _quiet_exit()
            if not isinstance(exc, self.expected_errors):
                raise
            self._report(ctx, self.failure(exc))

    def _report(self, ctx: click.Context, failure: Failure) -> NoReturn:
        click.echo(f"{self.tool}: {failure.kind}: {failure.text}", err=True)
        if failure.hint:
            click.echo(f"{self.tool}: hint: {failure.hint}", err=True)
        ctx.exit(failure.status)

    def _click_error(self, exc: click.ClickException) -> NoReturn:
        """Click's own errors (usage, bad values) in the house style, with click's status."""
        click.echo(f"{self.tool}: error: {exc.format_message()}", err=True)
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and isinstance(ctx, click.Context):
            click.echo(f"{self.tool}: hint: see '{ctx.command_path} --help'", err=True)
        raise click.exceptions.Exit(exc.exit_code)

    def _interrupted(self, ctx: click.Context) -> NoReturn:
        if sys.stderr.isatty():
            click.echo(err=True)  # ends the line the terminal's ^C is on
        text = ctx.meta.get(_INTERRUPTED_KEY, NOTHING_CHANGED)
        click.echo(f"{self.tool}: interrupted: {text}", err=True)
        ctx.exit(INTERRUPTED_STATUS)


def describe(exc: BaseException) -> str:
    """An error's text for a person: a file error as 'path: reason', not errno's repr."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def _no_terminal() -> NoTerminalError:
    return NoTerminalError(
        "standard input ended before a question was answered (no terminal)",
        hint="run the command in a terminal, or set the environment variable"
        " its --help names for that answer",
    )


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (POLLERR)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _fd, events in poller.poll(0))


def _quiet_exit() -> NoReturn:
    """Exit 1 without a word: the reader of stdout (``| head``) has what it wanted.

    stdout is pointed at /dev/null first, so that the interpreter's last flush
    at exit has nowhere to fail (Python's documented recipe for SIGPIPE).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)
