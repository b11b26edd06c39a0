"""First login from the command line, against the real server over HTTPS (R47, R9).

A new person holds only a one-time initial password; ``fwsign account setup``
enrols TOTP, confirms it with a code and replaces the password. Afterwards
the initial password is dead and login needs the new password and a code.
A wrong code is asked again with the same secret, and a setup that an
earlier client left half done resumes.
"""

from __future__ import annotations

import time

import pytest

from signer.account import first_login
from signer.errors import SignerError
from signer.publish import Credentials, ServerSession
from tests.e2e.conftest import RunningServer
from tests.e2e.people import call
from tests.unprivileged import invoke_fwserver
from update_server.mfa.totp import INTERVAL, code_at

NEW_PASSWORD = "correct horse battery staple 1962"


def _add_user(server: RunningServer, name: str) -> str:
    result = invoke_fwserver(
        ["user", "add", "--data-dir", str(server.data_dir), "--role", "release_engineer", name]
    )
    assert result.exit_code == 0, result.output
    return result.output.strip().split()[-1]


def _step() -> int:
    return int(time.time()) // INTERVAL


def test_account_setup_enrols_totp_and_replaces_the_initial_password(
    server: RunningServer,
) -> None:
    initial = _add_user(server, "dana")
    secrets: list[str] = []

    def authenticator(uri: str, secret: str) -> str:
        assert uri.startswith("otpauth://totp/") and "issuer=fwupdate" in uri
        secrets.append(secret)
        return code_at(secret, _step() - 1)

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
            Credentials("dana", initial, code_at(secrets[0], _step()))
        )
    fresh = ServerSession(server.url, ca=server.ca)
    login = fresh.login(Credentials("dana", NEW_PASSWORD, code_at(secrets[0], _step() + 1)))
    assert login.failed_attempts == 1  # R11: the refused attempt with the old password
    fresh.logout()


def test_a_wrong_first_code_is_asked_again_with_the_same_secret_r9(
    server: RunningServer,
) -> None:
    """The authenticator's entry stays good: the second try confirms the secret shown first."""
    initial = _add_user(server, "erin")
    shown: list[tuple[str, int]] = []

    def authenticator(_uri: str, secret: str) -> str:
        attempt = len(shown) + 1
        shown.append((secret, attempt))
        good = code_at(secret, _step() - 1)
        return good if attempt == 2 else f"{(int(good) + 1) % 1_000_000:06d}"

    first_login(
        ServerSession(server.url, ca=server.ca),
        user="erin",
        initial_password=initial,
        new_password=NEW_PASSWORD,
        code_for=authenticator,
    )
    assert [attempt for _secret, attempt in shown] == [1, 2]
    assert shown[0][0] == shown[1][0]
    fresh = ServerSession(server.url, ca=server.ca)
    fresh.login(Credentials("erin", NEW_PASSWORD, code_at(shown[0][0], _step() + 1)))
    fresh.logout()


def test_a_password_the_policy_refuses_is_refused_before_enrolment_r47(
    server: RunningServer,
) -> None:
    """Nothing is sent: the account stays as it was, and setup then succeeds."""
    initial = _add_user(server, "frank")

    def never(_uri: str, _secret: str) -> str:
        raise AssertionError("no enrolment for a refused password")

    with pytest.raises(SignerError, match="do not put your user name in your password"):
        first_login(
            ServerSession(server.url, ca=server.ca),
            user="frank",
            initial_password=initial,
            new_password="frank-frank-frank-123",
            code_for=never,
        )
    secrets: list[str] = []

    def authenticator(_uri: str, secret: str) -> str:
        secrets.append(secret)
        return code_at(secret, _step() - 1)

    first_login(
        ServerSession(server.url, ca=server.ca),
        user="frank",
        initial_password=initial,
        new_password=NEW_PASSWORD,
        code_for=authenticator,
    )
    assert len(secrets) == 1


def test_a_setup_left_enrolled_with_its_initial_password_resumes_with_a_code(
    server: RunningServer,
) -> None:
    """An earlier client confirmed TOTP, then its password change failed: a rerun resumes.

    The password alone is refused (401, as for anyone enrolled); the rerun logs in
    with a code and only replaces the password.
    """
    initial = _add_user(server, "gina")
    status, answer, _ = call(
        server, "POST", "/api/v1/auth/login", {"username": "gina", "password": initial}
    )
    assert status == 200, answer
    headers = {"Authorization": f"Bearer {answer['token']}"}
    status, enrolment, _ = call(server, "POST", "/api/v1/auth/totp/enroll", None, headers)
    assert status == 200, enrolment
    secret = enrolment["secret"]
    confirm = {"otp": code_at(secret, _step() - 1)}
    status, answer, _ = call(server, "POST", "/api/v1/auth/totp/confirm", confirm, headers)
    assert status == 200, answer

    def never(_uri: str, _secret: str) -> str:
        raise AssertionError("enrolled already: no second enrolment")

    first_login(
        ServerSession(server.url, ca=server.ca),
        user="gina",
        initial_password=initial,
        new_password=NEW_PASSWORD,
        code_for=never,
        resume_code=lambda: code_at(secret, _step()),
    )
    fresh = ServerSession(server.url, ca=server.ca)
    fresh.login(Credentials("gina", NEW_PASSWORD, code_at(secret, _step() + 1)))
    fresh.logout()
