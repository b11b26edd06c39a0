"""``fwsign bundle``: the command (attached by ``signer.cli``; its rules: ``bundle_fetch``).

The password and both one-time codes are prompted without echo, or read
from ``FWSIGN_PASSWORD``, ``FWSIGN_OTP`` and ``FWSIGN_BUNDLE_OTP`` for
automation, as ``fwsign publish`` reads them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fwcommon.entry import INTERRUPTED_STATUS
from signer.bundle_fetch import Fetched, fetch_bundle, refuse_existing
from signer.publish import ServerSession
from signer.publish_cli import _show_login, confirmation_code, login_credentials, server_options

BUNDLE_OTP_ENV = "FWSIGN_BUNDLE_OTP"


def _confirm_code(attempt: int) -> str:
    return confirmation_code(
        BUNDLE_OTP_ENV,
        attempt,
        prompt="New one-time code to make the bundle (not the login's)",
        refused="no bundle was made, nothing was written",
    )


def _show(fetched: Fetched) -> None:
    click.echo(f"bundle: {fetched.path} ({fetched.size} bytes) for device {fetched.device}")
    click.echo(f"release: {fetched.release or 'none'}")
    if fetched.authorization_expires is None:
        click.echo("authorization: none (the release needs none)")
    else:
        expires = fetched.authorization_expires.isoformat()
        click.echo(f"authorization: included, expires {expires}")
    click.echo(f"sha256: {fetched.sha256}")


@click.command("bundle")
@click.option("--device", "device_id", required=True, help="The device's id (one of your sites).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The bundle file to write (must not exist).",
)
@click.option(
    "--from-root",
    type=click.IntRange(min=1),
    help="The root version the device trusts: the chain starts after it [1: the whole chain].",
)
@server_options
def bundle_command(  # noqa: PLR0917 - click passes the options as keywords
    device_id: str,
    output: Path,
    from_root: int | None,
    server: str,
    ca: Path,
    user: str,
) -> None:
    """Download the offline bundle for one device of your sites (technicians).

    Logs in with your password (env FWSIGN_PASSWORD) and a one-time code
    (env FWSIGN_OTP), then asks for a NEW one-time code to confirm (env
    FWSIGN_BUNDLE_OTP). The server makes the bundle the device's web page
    makes, with the authorization its release requires, issued for this
    device. FILE is written whole or not at all, never over an existing
    file. Prints the release, the authorization's expiry and the SHA-256.
    """
    refuse_existing(output)
    session = ServerSession(server, ca=ca)
    try:
        fetched = fetch_bundle(
            session,
            login_credentials(user),
            device_id=device_id,
            output=output,
            confirm_otp=_confirm_code,
            from_root=from_root,
            say=lambda line: click.echo(line, err=True),
            on_login=_show_login,
        )
    except (KeyboardInterrupt, click.Abort):
        click.echo(f"interrupted: {output} was not written", err=True)
        sys.exit(INTERRUPTED_STATUS)
    _show(fetched)
