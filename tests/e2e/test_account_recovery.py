"""A lost phone, on the real server over HTTPS (R9, R47): reset, then first login in one step.

``fwserver user reset`` runs on the running server's data directory, as an
administrator would on its host; the person then finishes first login with
the one-step confirmation (code, current and new password together), whose
refusal of a weak password changes nothing. ``fwserver user remove`` ends a
person for good.
"""

from __future__ import annotations

from click.testing import Result

from tests.e2e.conftest import RunningServer
from tests.e2e.people import LOGIN, call, enrolled, step_now
from tests.unprivileged import invoke_fwserver
from update_server.mfa.totp import code_at

NEW_PASSWORD = "a different long passphrase 77"


def fwserver_user(server: RunningServer, *args: str) -> Result:
    return invoke_fwserver(["user", *args, "--data-dir", str(server.data_dir)])


def test_r47_a_reset_person_finishes_first_login_again_in_one_step(server: RunningServer) -> None:
    erin = enrolled(server, "erin")
    reset = fwserver_user(server, "reset", "erin")
    assert reset.exit_code == 0, reset.output
    initial = reset.output.strip().split()[-1]
    assert call(server, "GET", "/api/v1/auth/me", headers=erin.headers)[0] == 401

    status, body, _ = call(server, "POST", LOGIN, {"username": "erin", "password": initial})
    assert (status, body["totp_enrolled"]) == (200, False)
    first = {"Authorization": f"Bearer {body['token']}"}
    status, enrol, _ = call(server, "POST", "/api/v1/auth/totp/enroll", None, first)
    assert status == 200
    assert enrol["secret"] != erin.secret
    step = step_now()
    weak = {"otp": code_at(enrol["secret"], step - 1), "current_password": initial}
    status, refused, _ = call(
        server, "POST", "/api/v1/auth/totp/confirm", {**weak, "new_password": "erin"}, first
    )
    assert (status, refused["field"]) == (422, "new_password")
    done = {**weak, "new_password": NEW_PASSWORD}
    status, answer, _ = call(server, "POST", "/api/v1/auth/totp/confirm", done, first)
    assert (status, answer.get("password_changed")) == (200, True), answer

    login = {"username": "erin", "password": NEW_PASSWORD, "otp": code_at(enrol["secret"], step)}
    status, body, _ = call(server, "POST", LOGIN, login)
    assert (status, body["must_change_password"], body["totp_enrolled"]) == (200, False, True)


def test_r47_a_removed_person_is_gone_for_good(server: RunningServer) -> None:
    fay = enrolled(server, "fay")
    removed = fwserver_user(server, "remove", "--yes", "fay")
    assert removed.exit_code == 0, removed.output
    assert call(server, "GET", "/api/v1/auth/me", headers=fay.headers)[0] == 401
    assert call(server, "POST", LOGIN, fay.login_body())[0] == 401
    again = fwserver_user(server, "add", "--role", "auditor", "fay")
    assert again.exit_code == 1
    assert "never reused" in again.output
