"""``fwsign account setup``: a person's first login on the update server.

The server hands out a one-time initial password (``fwserver user add``) and
lets its holder do nothing but finish first login (R47): enrol TOTP in an
authenticator app, confirm it with a code, and replace the initial password.
After that, every login needs the password and a code (R9).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from signer.publish import ServerSession
from signer.publish_cli import OTP_ENV, PASSWORD_ENV, read_secret, server_options

NEW_PASSWORD_ENV = "FWSIGN_NEW_PASSWORD"  # noqa: S105 - a variable name, not a password


def first_login(
    session: ServerSession,
    *,
    user: str,
    initial_password: str,
    new_password: str,
    code_for: Callable[[str, str], str],
) -> None:
    """Enrol TOTP and replace the initial password; ``code_for`` shows the URI, returns a code."""
    session.first_login(user, initial_password)
    uri, secret = session.enroll_totp()
    session.confirm_totp(code_for(uri, secret))
    session.change_password(initial_password, new_password)


class CodeSource:
    """Shows the enrolment to the person and asks for the first code."""

    def __call__(self, uri: str, secret: str) -> str:
        click.echo("Add this account to your authenticator app (TOTP, 6 digits, 30 s):")
        click.echo(f"  {uri}")
        click.echo(f"  or enter the key by hand: {secret}")
        return read_secret(OTP_ENV, "code shown by the app")


@click.group("account")
def account_group() -> None:
    """Your account on the update server."""


@account_group.command("setup")
@server_options
def setup(server: str, ca: Path, user: str) -> None:
    """Finish first login: enrol TOTP, then replace the initial password."""
    session = ServerSession(server, ca=ca)
    try:
        first_login(
            session,
            user=user,
            initial_password=read_secret(PASSWORD_ENV, "initial password"),
            new_password=read_secret(NEW_PASSWORD_ENV, "new password", confirm=True),
            code_for=CodeSource(),
        )
    finally:
        session.close()
    click.echo("done: from now on, log in with your password and a code from the app")
