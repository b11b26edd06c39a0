"""``fwsign publish``: the command (attached to ``fwsign`` by ``signer.cli``).

The password and both one-time codes are prompted without echo, or read
from ``FWSIGN_PASSWORD``, ``FWSIGN_OTP`` and ``FWSIGN_PUBLISH_OTP`` for
automation. The code that confirms the publication is asked for after the
uploads, and must be a new one: the server refuses the login's code.
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

from signer.publish import (
    Credentials,
    Login,
    PublishResult,
    ServerSession,
    publish_repository,
)

PASSWORD_ENV = "FWSIGN_PASSWORD"  # noqa: S105 - a variable name, not a password
OTP_ENV = "FWSIGN_OTP"
PUBLISH_OTP_ENV = "FWSIGN_PUBLISH_OTP"


def read_secret(env: str, prompt: str, *, confirm: bool = False) -> str:
    """A secret from ``env`` (automation) or a hidden prompt; never echoed or logged."""
    value = os.environ.get(env)
    if value:
        return value
    answer = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    return str(answer).strip()


F = TypeVar("F", bound=Callable[..., Any])


def server_options(command: F) -> F:
    """--server, --ca and --user: how fwsign reaches the update server, and as whom."""
    command = click.option(
        "--user", required=True, envvar="FWSIGN_USER", help="Your server user name."
    )(command)
    command = click.option(
        "--ca",
        type=click.Path(dir_okay=False, path_type=Path),
        required=True,
        envvar="FWSIGN_CA",
        help="CA certificate that the server's TLS certificate must chain to.",
    )(command)
    return click.option(
        "--server", required=True, envvar="FWSIGN_SERVER", help="https://host:port"
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
    if result.published is None:
        click.echo("nothing to publish: the server has every role at this repository's version")
        return
    published = result.published
    roles = ", ".join(f"{name} v{version}" for name, version in sorted(published.roles.items()))
    click.echo(f"published: {roles}")
    click.echo(f"snapshot v{published.snapshot}, timestamp v{published.timestamp}")
    if result.sent_files:
        click.echo(f"firmware: {', '.join(result.sent_files)}")


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
    help="Where the firmware files are, at their target paths.",
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

    Asks for your password and a one-time code to log in, and after the
    uploads for a NEW one-time code to confirm the publication.
    """
    session = ServerSession(server, ca=ca)
    credentials = Credentials(
        user=user,
        password=read_secret(PASSWORD_ENV, f"Password for {user}"),
        otp=read_secret(OTP_ENV, "One-time code"),
    )
    result = publish_repository(
        repo,
        session,
        credentials,
        now=datetime.now(UTC),
        publish_otp=lambda: read_secret(
            PUBLISH_OTP_ENV, "To publish, a NEW one-time code (not the login's)"
        ),
        targets_dir=targets_dir,
        only=roles,
        progress=_progress_bar,
        say=_say,
        on_login=_show_login,
    )
    _show(result)
