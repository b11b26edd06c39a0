"""``fwsign account setup``: a person's first login on the update server.

The server hands out a one-time initial password (``fwserver user add``) and
lets its holder do nothing but finish first login (R47): enrol TOTP in an
authenticator app, confirm it with a code, and replace the initial password.
After that, every login needs the password and a code (R9).

The order keeps a mistake from leaving the account half set up:

A1 The new password is checked against the password policy's rules
   (``update_server.mfa.passwords``, the server's own) before anything is
   sent; the server's minimum length is its configuration, so the server
   checks again.
A2 The code that confirms enrolment is sent with the password change, as
   one request: the server checks the new password before the code and does
   both or neither. A wrong code asks again, with the same secret, up to
   ``CODE_TRIES`` times.
A3 A rerun resumes: the server shows a secret not yet confirmed again, and
   an account that an earlier client left enrolled with its initial password
   logs in with a code and only replaces the password.

Passwords and codes are never printed; the enrolment (the secret, as a URI
and a QR code) is shown once per run, as the person needs it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import click
import segno

from signer.errors import SignerError
from signer.publish import FirstLogin, ServerRefusedError, ServerSession
from signer.publish_cli import OTP_ENV, PASSWORD_ENV, read_secret, server_options
from update_server.mfa.passwords import PasswordPolicyError, check_policy

NEW_PASSWORD_ENV = "FWSIGN_NEW_PASSWORD"  # noqa: S105 - a variable name, not a password
#: Codes asked for one enrolment before giving up (the server counts each failure, R9).
CODE_TRIES = 3
#: The server's configured minimum length is checked there (A1); here, every other rule.
_LENGTH_CHECKED_BY_SERVER = 1
_UNAUTHORIZED = 401
_UNPROCESSABLE = 422

#: ``code_for(uri, secret)``: a code for the enrolment; called again after a refused code.
CodeFor = Callable[[str, str], str]


def check_new_password(password: str, *, user: str) -> None:
    """A1: refuse, before anything is sent, a password the server's policy refuses."""
    try:
        check_policy(password, name=user, min_length=_LENGTH_CHECKED_BY_SERVER)
    except PasswordPolicyError as exc:
        raise SignerError(f"new password refused: {'; '.join(exc.problems)}") from None


def first_login(
    session: ServerSession,
    *,
    user: str,
    initial_password: str,
    new_password: str,
    code_for: CodeFor,
    resume_code: Callable[[], str] | None = None,
) -> None:
    """Enrol TOTP and replace the initial password, resuming what an earlier run left."""
    check_new_password(new_password, user=user)
    state = _log_in(session, user, initial_password, resume_code)
    if state.totp_enrolled:  # A3: enrolled by an earlier client, password not yet replaced
        session.change_password(initial_password, new_password)
        return
    uri, secret = session.enroll_totp()
    change = (initial_password, new_password) if state.must_change_password else None
    for attempt in range(1, CODE_TRIES + 1):
        try:
            changed = session.confirm_totp(code_for(uri, secret), password_change=change)
        except ServerRefusedError as refused:
            if _password_refused(refused):
                raise _password_error(refused) from None
            if refused.status != _UNPROCESSABLE or attempt == CODE_TRIES:
                raise
            continue
        if change is not None and not changed:  # a server that confirms the code alone
            session.change_password(*change)
        return


def _log_in(
    session: ServerSession, user: str, password: str, resume_code: Callable[[], str] | None
) -> FirstLogin:
    try:
        return session.first_login(user, password)
    except ServerRefusedError as refused:
        if refused.status != _UNAUTHORIZED or resume_code is None:
            raise
    # A3: TOTP enrolled already; the password alone is refused, as for anyone enrolled.
    return session.first_login(user, password, otp=resume_code())


def _password_refused(refused: ServerRefusedError) -> bool:
    return refused.field == "new_password" or bool(refused.problems)


def _password_error(refused: ServerRefusedError) -> SignerError:
    problems = "; ".join(refused.problems) or refused.detail
    return SignerError(
        f"the server refused the new password: {problems}. Nothing was changed: run"
        " 'fwsign account setup' again with another one (your app's entry stays valid)"
    )


class CodeSource:
    """Shows the enrolment once, then asks for the code the app shows (again if refused)."""

    def __init__(self) -> None:
        self.asked = 0

    def __call__(self, uri: str, secret: str) -> str:
        self.asked += 1
        attempt = self.asked
        if attempt == 1:
            _show_enrolment(uri, secret)
        elif os.environ.get(OTP_ENV):
            raise SignerError(
                f"the code in {OTP_ENV} was refused: unset it and enter the code the app"
                " shows, or set a current one"
            )
        else:
            click.echo(
                f"that code was not accepted (try {attempt} of {CODE_TRIES}): check the device's"
                " clock and enter the code the app shows now; the entry you made stays valid",
                err=True,
            )
        return read_secret(OTP_ENV, "code shown by the app")


def _show_enrolment(uri: str, secret: str) -> None:
    click.echo("Add this account to your authenticator app (TOTP, 6 digits, 30 s):")
    qr = io.StringIO()
    segno.make(uri, error="m").terminal(out=qr, compact=True)
    try:
        click.echo(qr.getvalue())
    except UnicodeEncodeError:  # a terminal without block characters: the URI below
        click.echo("  (this terminal cannot show the QR code)")
    click.echo(f"  {uri}")
    click.echo(f"  or enter the key by hand: {secret}")


def _new_password(user: str) -> str:
    """The new password, asked again (up to 3 times) while the policy refuses it (A1)."""
    for attempt in range(1, CODE_TRIES + 1):
        new = read_secret(NEW_PASSWORD_ENV, "new password", confirm=True)
        try:
            check_new_password(new, user=user)
        except SignerError as refused:
            if os.environ.get(NEW_PASSWORD_ENV) or attempt == CODE_TRIES:
                raise
            click.echo(f"{refused}; choose another", err=True)
            continue
        return new
    raise SignerError("no new password chosen")  # not reached: the loop returns or raises


def _resume_code() -> str:
    click.echo(
        "The server refused the password alone. If an earlier 'fwsign account setup'"
        " already added this account to your authenticator app, enter its code to resume;"
        " otherwise press Ctrl-C and check the user name and password.",
        err=True,
    )
    return read_secret(OTP_ENV, "code shown by the app")


@click.group("account")
def account_group() -> None:
    """Your account on the update server."""


@account_group.command("setup")
@server_options
def setup(server: str, ca: Path, user: str) -> None:
    """Finish first login: choose a new password, enrol TOTP and confirm it with a code.

    Asks for the initial password (env FWSIGN_PASSWORD), the new password
    (env FWSIGN_NEW_PASSWORD), checked against the password policy before
    anything is sent, then shows the enrolment as a QR code and an
    otpauth:// URI and asks for the code the app shows (env FWSIGN_OTP); a
    refused code is asked again, up to 3 times. A rerun resumes a setup that
    stopped half way.
    """
    initial = read_secret(PASSWORD_ENV, "initial password")
    new = _new_password(user)
    session = ServerSession(server, ca=ca)
    try:
        first_login(
            session,
            user=user,
            initial_password=initial,
            new_password=new,
            code_for=CodeSource(),
            resume_code=_resume_code,
        )
    finally:
        session.close()
    click.echo("done: from now on, log in with your password and a code from the app")
