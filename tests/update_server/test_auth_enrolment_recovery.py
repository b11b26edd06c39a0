"""First login that goes wrong half way can be finished (R47, R9).

- The new password can go with the confirmation code, in one request that is
  refused as a whole when the policy refuses the password: enrolment is not
  confirmed, the code not spent, the secret still pending (C2).
- A person whose enrolment was confirmed but whose password was not replaced
  (the old three-request flow, cut between confirm and password) finishes by
  logging in with the initial password and a code, then setting the password.
- A wrong enrolment code keeps the same pending secret; wrong codes count like
  failed logins, and at the lockout the pending secret is discarded (C1).
"""

from __future__ import annotations

import json
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from tests.clocks import FakeClock
from tests.update_server.people import (
    bearer,
    create_user,
    login,
    new_password,
    otp_at,
)
from update_server.config import ServerConfig
from update_server.models import AuditEntry, Role, User

ME, ENROLL, CONFIRM, PASSWORD = (
    "/api/v1/auth/me",
    "/api/v1/auth/totp/enroll",
    "/api/v1/auth/totp/confirm",
    "/api/v1/auth/password",
)


pytestmark = pytest.mark.usefixtures("fast_hashing")


def started(app: Flask, client: FlaskClient, clock: FakeClock, name: str) -> tuple[str, str, str]:
    """``name`` created, logged in with the initial password, a secret issued."""
    initial = create_user(app, clock, name, Role.RELEASE_ENGINEER)
    token = login(client, name, initial).get_json()["token"]
    secret = client.post(ENROLL, headers=bearer(token)).get_json()["secret"]
    return initial, token, secret


def confirm(client: FlaskClient, token: str, code: str, **passwords: str) -> TestResponse:
    return client.post(CONFIRM, json={"otp": code, **passwords}, headers=bearer(token))


def stored(app: Flask, name: str) -> User:
    with app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == name)).one()
        db.expunge(user)
    return user


def enrolment_audit(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    with app.extensions["fw"].sessions() as db:
        rows = db.execute(
            select(AuditEntry.outcome, AuditEntry.detail)
            .where(AuditEntry.action == "totp.enrol")
            .order_by(AuditEntry.seq)
        ).all()
    return [(outcome, json.loads(detail)) for outcome, detail in rows]


def wrong_code(secret: str, clock: FakeClock) -> str:
    right = otp_at(pyotp.TOTP(secret), clock)
    return "000000" if right != "000000" else "111111"


def test_r47_first_login_in_one_step_enrols_and_replaces_the_password(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    initial, token, secret = started(app, client, clock, "dana")
    code = otp_at(pyotp.TOTP(secret), clock)
    answer = confirm(
        client, token, code, current_password=initial, new_password=new_password("dana")
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["password_changed"] is True
    # Every session ended; the initial password is dead; the new one and a later code work.
    assert client.get(ME, headers=bearer(token)).status_code == 401
    clock.advance(seconds=30)
    body = login(client, "dana", new_password("dana"), otp_at(pyotp.TOTP(secret), clock)).json
    assert body is not None
    assert (body["must_change_password"], body["totp_enrolled"]) == (False, True)
    clock.advance(seconds=30)
    assert login(client, "dana", initial, otp_at(pyotp.TOTP(secret), clock)).status_code == 401


@pytest.mark.parametrize("refused", ["short-one", "Password1234!", "my-name-is-dana-ok"])
def test_r47_a_refused_new_password_refuses_the_enrolment_too(
    app: Flask, client: FlaskClient, clock: FakeClock, refused: str
) -> None:
    """The stuck account of issue 9: nothing is confirmed unless the password is accepted."""
    initial, token, secret = started(app, client, clock, "dana")
    code = otp_at(pyotp.TOTP(secret), clock)
    answer = confirm(client, token, code, current_password=initial, new_password=refused)
    assert answer.status_code == 422
    problem = answer.get_json()
    assert problem["field"] == "new_password"
    assert problem["problems"]
    person = stored(app, "dana")
    assert (person.totp_enrolled, person.must_change_password) == (False, True)
    # Same session, same secret, even the same code: the second try finishes.
    assert client.post(ENROLL, headers=bearer(token)).get_json()["secret"] == secret
    again = confirm(
        client, token, code, current_password=initial, new_password=new_password("dana")
    )
    assert again.status_code == 200, again.get_json()


def test_one_step_first_login_needs_the_current_password(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    _, token, secret = started(app, client, clock, "dana")
    code = otp_at(pyotp.TOTP(secret), clock)
    wrong = confirm(
        client, token, code, current_password="not-the-one", new_password=new_password("dana")
    )
    assert wrong.status_code == 401
    assert stored(app, "dana").totp_enrolled is False
    alone = confirm(client, token, code, new_password=new_password("dana"))
    assert alone.status_code == 400
    assert "together" in alone.get_json()["detail"]


def test_r47_confirmed_enrolment_without_a_new_password_can_still_be_finished(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """Enrolment confirmed, password refused (old flow): initial password + code, then set it."""
    initial, token, secret = started(app, client, clock, "dana")
    code_source = pyotp.TOTP(secret)
    assert confirm(client, token, otp_at(code_source, clock)).status_code == 200
    change = {"current_password": initial, "new_password": "short-one"}
    assert client.post(PASSWORD, json=change, headers=bearer(token)).status_code == 422
    client.post("/api/v1/auth/logout", headers=bearer(token))
    # The rerun: the initial password alone no longer logs in; with a code it does.
    assert login(client, "dana", initial).status_code == 401
    clock.advance(seconds=30)
    resumed = login(client, "dana", initial, otp_at(code_source, clock))
    assert resumed.status_code == 200
    body = resumed.get_json()
    assert (body["must_change_password"], body["totp_enrolled"]) == (True, True)
    assert client.get("/api/v1/repository", headers=bearer(body["token"])).status_code == 403
    change["new_password"] = new_password("dana")
    answer = client.post(PASSWORD, json=change, headers=bearer(body["token"]))
    assert answer.status_code == 200
    clock.advance(seconds=30)
    assert (
        login(client, "dana", new_password("dana"), otp_at(code_source, clock)).status_code == 200
    )


def test_a_wrong_enrolment_code_keeps_the_same_secret(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    _, token, secret = started(app, client, clock, "dana")
    answer = confirm(client, token, wrong_code(secret, clock))
    assert answer.status_code == 422
    assert answer.get_json()["field"] == "otp"
    assert "keep the entry" in answer.get_json()["detail"]
    assert client.post(ENROLL, headers=bearer(token)).get_json()["secret"] == secret
    assert confirm(client, token, otp_at(pyotp.TOTP(secret), clock)).status_code == 200
    assert [detail["stage"] for _, detail in enrolment_audit(app)] == [
        "secret issued",
        "confirm",
        "secret shown again",
        "confirmed",
    ]


def test_r9_wrong_enrolment_codes_are_bounded_then_the_pending_secret_is_discarded(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    initial, token, secret = started(app, client, clock, "dana")
    for _ in range(config.max_failed_logins - 1):
        assert confirm(client, token, wrong_code(secret, clock)).status_code == 422
    assert stored(app, "dana").totp_secret is not None
    last = confirm(client, token, wrong_code(secret, clock))
    assert last.status_code == 422
    assert "discarded" in last.get_json()["detail"]
    person = stored(app, "dana")
    assert (person.totp_secret, person.totp_enrolled) == (None, False)
    outcomes = enrolment_audit(app)
    assert outcomes[-1] == ("failure", {"stage": "discarded"})
    assert [o for o, d in outcomes if d["stage"] == "confirm"] == [
        "failure"
    ] * config.max_failed_logins
    # The session ended and the name is locked, as after failed logins.
    assert client.get(ME, headers=bearer(token)).status_code == 401
    assert login(client, "dana", initial).status_code == 401
    clock.advance(seconds=config.lockout.total_seconds())
    token = login(client, "dana", initial).get_json()["token"]
    fresh = client.post(ENROLL, headers=bearer(token)).get_json()["secret"]
    assert fresh != secret
    assert confirm(client, token, otp_at(pyotp.TOTP(fresh), clock)).status_code == 200


def test_no_password_nor_code_reaches_the_audit_log(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    initial, token, secret = started(app, client, clock, "dana")
    code = otp_at(pyotp.TOTP(secret), clock)
    confirm(client, token, code, current_password=initial, new_password="short-one")
    confirm(client, token, code, current_password=initial, new_password=new_password("dana"))
    with app.extensions["fw"].sessions() as db:
        text = " ".join(db.scalars(select(AuditEntry.detail)))
    for secret_text in (initial, "short-one", new_password("dana"), code, secret):
        assert secret_text not in text
