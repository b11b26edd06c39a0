"""First login from the command line, against the real server over HTTPS (R47, R9).

A new person holds only a one-time initial password; ``fwsign account setup``
enrols TOTP, confirms it with a code and replaces the password. Afterwards
the initial password is dead and login needs the new password and a code.
"""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from signer.account import first_login
from signer.errors import SignerError
from signer.publish import Credentials, ServerSession
from tests.e2e.conftest import RunningServer
from update_server import cli
from update_server.mfa.totp import INTERVAL, code_at

NEW_PASSWORD = "correct horse battery staple 1962"


def _add_user(server: RunningServer, name: str) -> str:
    result = CliRunner().invoke(
        cli.main,
        ["user", "add", "--data-dir", str(server.data_dir), "--role", "release_engineer", name],
    )
    assert result.exit_code == 0, result.output
    return result.output.strip().split()[-1]


def test_account_setup_enrols_totp_and_replaces_the_initial_password(
    server: RunningServer,
) -> None:
    initial = _add_user(server, "dana")
    secrets: list[str] = []

    def authenticator(uri: str, secret: str) -> str:
        assert uri.startswith("otpauth://totp/") and "issuer=fwupdate" in uri
        secrets.append(secret)
        return code_at(secret, int(time.time()) // INTERVAL - 1)

    session = ServerSession(server.url, ca=server.ca)
    first_login(
        session,
        user="dana",
        initial_password=initial,
        new_password=NEW_PASSWORD,
        code_for=authenticator,
    )

    with pytest.raises(SignerError):
        ServerSession(server.url, ca=server.ca).login(
            Credentials("dana", initial, code_at(secrets[0], int(time.time()) // INTERVAL))
        )
    fresh = ServerSession(server.url, ca=server.ca)
    login = fresh.login(
        Credentials("dana", NEW_PASSWORD, code_at(secrets[0], int(time.time()) // INTERVAL + 1))
    )
    assert login.failed_attempts == 1  # R11: the refused attempt with the old password
    fresh.logout()
