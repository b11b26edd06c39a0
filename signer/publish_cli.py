"""``fwsign publish``: the command (attached to ``fwsign`` by ``signer.cli``).

The repository is checked locally before anything is asked. The password
and both one-time codes are prompted without echo, or read from
``FWSIGN_PASSWORD``, ``FWSIGN_OTP`` and ``FWSIGN_PUBLISH_OTP`` for
automation. The code that confirms the publication is asked for after the
uploads, and must be a new one: the server refuses the login's code; a
refused one is asked again before the upload is cancelled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from tqdm import tqdm

from fwcommon.cli import ToolError, ask, say
from fwcommon.entry import INTERRUPTED_STATUS
from signer.publish import (
    Credentials,
    Login,
    PublishError,
    PublishResult,
    ServerSession,
    check_ready,
    local_roles,
    publish_repository,
)

PASSWORD_ENV = "FWSIGN_PASSWORD"  # noqa: S105 - a variable name, not a password
OTP_ENV = "FWSIGN_OTP"
PUBLISH_OTP_ENV = "FWSIGN_PUBLISH_OTP"


def read_secret(env: str, prompt: str, *, confirm: bool = False) -> str:
    """A secret from ``env`` (automation) or a hidden prompt; never echoed or logged.

    With no terminal to answer, a ``NoTerminalError`` naming ``env``; an
    empty ``env`` is refused (it would be sent as the secret).
    """
    if os.environ.get(env) == "":
        raise ToolError(
            f"{env} is set but empty", hint=f"set {env} to the value, or unset it to be asked"
        )
    answer = ask(prompt, envvar=env, confirm=confirm)
    return answer if env in os.environ else answer.strip()  # as typed: no stray newline


F = TypeVar("F", bound=Callable[..., Any])


def server_options(command: F) -> F:
    """--server, --ca and --user: how fwsign reaches the update server, and as whom."""
    command = click.option(
        "--user",
        required=True,
        envvar="FWSIGN_USER",
        show_envvar=True,
        help="Your server user name.",
    )(command)
    command = click.option(
        "--ca",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        envvar="FWSIGN_CA",
        show_envvar=True,
        help="CA certificate that the server's TLS certificate must chain to.",
    )(command)
    return click.option(
        "--server",
        required=True,
        envvar="FWSIGN_SERVER",
        show_envvar=True,
        help="https://host:port",
    )(command)


@contextmanager
def _progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    with tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    ) as bar:
        yield bar.update


def _say(line: str) -> None:
    click.echo(line, err=True)


def _show_login(login: Login) -> None:
    """R11: the previous login and the failed attempts since, at every login."""
    last = login.last_login
    where = f"{last.get('at')} from {last.get('source')}" if last else "never"
    _say(f"last login: {where}; failed attempts since: {login.failed_attempts}")


def _show(result: PublishResult) -> None:
    if result.published is None and not result.completed_files:
        click.echo("nothing to publish: the server has every role at this repository's version")
        return
    if result.published is not None:
        published = result.published
        roles = ", ".join(f"{name} v{version}" for name, version in sorted(published.roles.items()))
        click.echo(f"published: {roles}")
        click.echo(f"snapshot v{published.snapshot}, timestamp v{published.timestamp}")
        if result.sent_files:
            click.echo(f"firmware: {', '.join(result.sent_files)}")
    if result.completed_files:
        click.echo(f"firmware of releases published before: {', '.join(result.completed_files)}")


def login_credentials(user: str) -> Credentials:
    """``user``'s password and login code, from the environment or hidden prompts."""
    return Credentials(
        user=user,
        password=read_secret(PASSWORD_ENV, f"Password for {user}"),
        otp=read_secret(OTP_ENV, "One-time code"),
    )


def confirmation_code(env: str, attempt: int, *, prompt: str, refused: str) -> str:
    """A NEW one-time code confirming an action, from ``env`` or a hidden prompt.

    A code from ``env`` that the server refused is not sent again: the
    ``attempt`` after it ends the command, saying ``refused`` (what was not done).
    """
    if attempt > 1 and os.environ.get(env):
        raise PublishError(f"the code in {env} was refused; {refused}")
    return read_secret(env, prompt)


def _publish_code(attempt: int) -> str:
    return confirmation_code(
        PUBLISH_OTP_ENV,
        attempt,
        prompt="New one-time code to publish (not the login's)",
        refused="nothing was published (the upload was cancelled)",
    )


@click.command("publish")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    help="Repository directory.",
)
@server_options
@click.option(
    "--targets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Where the firmware files are: DIR/<target path>, else DIR/<its file name>"
        " (as 'fwsign add --targets-dir' puts them)."
    ),
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="NAME",
    help="Send only these roles (repeatable) [every role newer than the server's].",
)
def publish_command(  # noqa: PLR0917 - click passes the options as keywords
    repo: Path,
    server: str,
    ca: Path,
    user: str,
    targets_dir: Path | None,
    roles: tuple[str, ...],
) -> None:
    """Upload newer signed roles and their firmware to the update server, then publish.

    First checks the repository locally (every role to send fully signed, not
    expired, not rewound), then asks for your password (env FWSIGN_PASSWORD)
    and a one-time code (env FWSIGN_OTP) to log in, and after the uploads for
    a NEW one-time code to confirm the publication (env FWSIGN_PUBLISH_OTP);
    a refused code is asked again, up to 3 times. With --targets-dir it also
    sends the files of releases published earlier without them (an import).
    Ctrl-C cancels the upload: nothing is published.
    """
    now = datetime.now(UTC)
    local = local_roles(repo)
    check_ready(repo, [name for name in local if not roles or name in roles], now=now)
    session = ServerSession(server, ca=ca)
    stage = _Stage()
    try:
        credentials = login_credentials(user)
        result = publish_repository(
            repo,
            session,
            credentials,
            now=now,
            publish_otp=stage.confirming(_publish_code),
            targets_dir=targets_dir,
            only=roles,
            progress=_progress_bar,
            say=_say,
            on_login=_show_login,
        )
    except (KeyboardInterrupt, click.Abort):
        say("interrupted", stage.interrupted())
        sys.exit(INTERRUPTED_STATUS)
    _show(result)


class _Stage:
    """Where the round is, to say truthfully what a Ctrl-C left on the server."""

    def __init__(self) -> None:
        self.sent_code = False

    def confirming(self, ask: Callable[[int], str]) -> Callable[[int], str]:
        def code(attempt: int) -> str:
            # The server refused the code before this one (401): nothing was published.
            self.sent_code = False
            answer = ask(attempt)
            self.sent_code = True
            return answer

        return code

    def interrupted(self) -> str:
        if self.sent_code:
            return (
                "the server may have published (a confirmation code was on its way);"
                " 'fwsign publish' again says 'nothing to publish' if it did"
            )
        return "nothing was published (the upload, if any, was cancelled)"
