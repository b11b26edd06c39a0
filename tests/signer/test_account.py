"""``fwsign account setup`` against a scripted server (R47, R9).

The server side is a stand-in that records what the command asked for, so
each rule of ``signer.account`` (A1 to A3) is shown on its own; the same
flows run against the real server in ``tests/e2e/test_account_setup.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from signer import account
from signer.cli import main
from signer.publish import FirstLogin, ServerRefusedError

INITIAL = "initial-Pw-0815-xyz"
NEW = "correct horse battery staple 1962"
URI = "otpauth://totp/fwupdate:dana?secret=JBSWY3DPEHPK3PXP&issuer=fwupdate"
SECRET = "JBSWY3DPEHPK3PXP"

Run = Callable[..., Result]


class ScriptedServer:
    """Accepts ``good_code`` only; ``enrolled``: an earlier client confirmed TOTP already."""

    def __init__(self, *, good_code: str = "123456", enrolled: bool = False) -> None:
        self.good_code = good_code
        self.enrolled = enrolled
        self.calls: list[str] = []
        self.codes: list[str] = []

    def __call__(self, _url: str, *, ca: Path) -> ScriptedServer:
        return self

    def first_login(self, user: str, password: str, *, otp: str | None = None) -> FirstLogin:
        self.calls.append("login" if otp is None else "login with code")
        if self.enrolled and otp != self.good_code:
            raise ServerRefusedError(401, "login failed")
        return FirstLogin(must_change_password=True, totp_enrolled=self.enrolled)

    def enroll_totp(self) -> tuple[str, str]:
        self.calls.append("enroll")
        return URI, SECRET

    def confirm_totp(self, otp: str, *, password_change: tuple[str, str] | None = None) -> bool:
        self.calls.append("confirm")
        self.codes.append(otp)
        if otp != self.good_code:
            raise ServerRefusedError(422, "that code does not match")
        return password_change == (INITIAL, NEW)

    def change_password(self, current: str, new: str) -> None:
        self.calls.append("password")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    ca = tmp_path / "ca.crt"
    ca.write_text("a CA")

    def invoke(server: ScriptedServer, answers: str, **env: str) -> Result:
        monkeypatch.setattr(account, "ServerSession", server)
        args = ["account", "setup", "--server", "https://fw.example:8443", "--ca", str(ca)]
        return CliRunner().invoke(main, [*args, "--user", "dana"], input=answers, env=env)

    return invoke


def test_setup_shows_a_qr_code_and_the_uri_and_never_the_password_or_code(run: Run) -> None:
    server = ScriptedServer()
    result = run(server, f"{INITIAL}\n{NEW}\n{NEW}\n123456\n")
    assert result.exit_code == 0, result.output
    assert "▀" in result.output or "▄" in result.output  # the QR code, in block characters
    assert URI in result.output
    assert INITIAL not in result.output and NEW not in result.output
    assert "123456" not in result.output
    assert server.calls == ["login", "enroll", "confirm", "close"]


def test_a_wrong_first_code_asks_again_with_the_same_enrolment_up_to_three_times(
    run: Run,
) -> None:
    """R9: the authenticator entry stays good; the QR code is shown once."""
    server = ScriptedServer()
    result = run(server, f"{INITIAL}\n{NEW}\n{NEW}\n000000\n111111\n123456\n")
    assert result.exit_code == 0, result.output
    assert server.calls.count("enroll") == 1
    assert server.codes == ["000000", "111111", "123456"]
    assert "try 2 of 3" in result.output and "try 3 of 3" in result.output
    assert result.output.count(URI) == 1

    refused = ScriptedServer()
    result = run(refused, f"{INITIAL}\n{NEW}\n{NEW}\n000000\n111111\n222222\n")
    assert result.exit_code == 1
    assert "that code does not match" in result.output
    assert refused.codes == ["000000", "111111", "222222"]


def test_a_password_the_policy_refuses_is_asked_again_before_anything_is_sent_r47(
    run: Run,
) -> None:
    """A1: a common password never reaches enrolment; the next one is taken."""
    server = ScriptedServer()
    answers = f"{INITIAL}\npassword1\npassword1\n{NEW}\n{NEW}\n123456\n"
    result = run(server, answers)
    assert result.exit_code == 0, result.output
    assert "one of the most common passwords" in result.output
    assert server.calls == ["login", "enroll", "confirm", "close"]


def test_a_refused_password_from_the_environment_fails_with_nothing_sent(run: Run) -> None:
    server = ScriptedServer()
    result = run(server, "", FWSIGN_PASSWORD=INITIAL, FWSIGN_NEW_PASSWORD="dana-dana-dana")
    assert result.exit_code == 1
    assert "do not put your user name in your password" in result.output
    assert server.calls == []


def test_a_setup_left_enrolled_resumes_with_a_code_and_only_replaces_the_password(
    run: Run,
) -> None:
    """A3: the password alone is refused (401); a code from the app resumes."""
    server = ScriptedServer(enrolled=True)
    result = run(server, f"{INITIAL}\n{NEW}\n{NEW}\n123456\n")
    assert result.exit_code == 0, result.output
    assert "to resume" in result.output
    assert server.calls == ["login", "login with code", "password", "close"]


def test_help_names_the_environment_variables() -> None:
    result = CliRunner().invoke(main, ["account", "setup", "--help"])
    for name in ("FWSIGN_PASSWORD", "FWSIGN_NEW_PASSWORD", "FWSIGN_OTP", "FWSIGN_SERVER"):
        assert name in result.output


@pytest.mark.parametrize(
    ("given", "missing", "what"),
    [
        ({}, "FWSIGN_PASSWORD", "initial password"),
        ({"FWSIGN_PASSWORD": INITIAL}, "FWSIGN_NEW_PASSWORD", "new password"),
        (
            {"FWSIGN_PASSWORD": INITIAL, "FWSIGN_NEW_PASSWORD": NEW},
            "FWSIGN_OTP",
            "code shown by the app",
        ),
    ],
)
def test_with_no_terminal_the_missing_secret_is_named_and_nothing_is_confirmed(
    run: Run, monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: str, what: str
) -> None:
    """Automation without a terminal is told which variable to set, not "Aborted!"."""
    for name in ("FWSIGN_PASSWORD", "FWSIGN_NEW_PASSWORD", "FWSIGN_OTP"):
        monkeypatch.delenv(name, raising=False)
    server = ScriptedServer()
    result = run(server, "", **given)
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"fwsign: error: no terminal to ask for the {what}\n"
        f"fwsign: hint: set {missing}, or run the command in a terminal\n"
    )
    assert "Aborted" not in result.output
    assert "confirm" not in server.calls and "password" not in server.calls
    assert INITIAL not in result.output and NEW not in result.output
