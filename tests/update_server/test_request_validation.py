"""Requests are held to the OpenAPI document before a view reads them (request_validation).

Found by a fuzzer driven by our own OpenAPI document: bodies that the document
refuses reached the views, and empty strings passed. Each test sends what an
attacker or a tired person sends and expects a 400 problem+json that names what
was wrong, with nothing changed.
"""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from tests.clocks import FakeClock
from tests.update_server.openapi_contract import answer_problems
from tests.update_server.people import LoggedIn, enrolled_user, login
from update_server.models import Role
from update_server.request_validation import MAX_DEPTH, body_problems

PASSWORD = "/api/v1/auth/password"
AUDIT = "/api/v1/audit"


def _post(client: FlaskClient, path: str, body: str, user: LoggedIn) -> tuple[int, dict[str, str]]:
    answer = client.post(path, data=body, content_type="application/json", headers=user.headers)
    assert answer.mimetype == "application/problem+json"
    problem: dict[str, str] = answer.get_json()
    return answer.status_code, problem


def _password_unchanged(client: FlaskClient, clock: FakeClock, user: LoggedIn) -> None:
    again = login(client, user.name, user.password, user.next_otp(clock))
    assert again.status_code == 200, again.get_json()


def test_fuzzing_a_body_of_the_wrong_type_is_refused_before_the_view(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """V2: a number where the document asks for a password is 400 naming the field."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    body = json.dumps({"current_password": alice.password, "new_password": 12345678901234567})
    status, problem = _post(client, PASSWORD, body, alice)
    assert status == 400
    assert "new_password" in problem["detail"]
    assert "string" in problem["detail"]
    _password_unchanged(client, clock, alice)


def test_a_refused_body_never_echoes_its_values(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """A 400 names the field and the rule, never the value: it may be a password."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    secret = "correct-horse-battery-" + "x" * 2000
    body = json.dumps({"current_password": alice.password, "new_password": secret})
    status, problem = _post(client, PASSWORD, body, alice)
    assert status == 400
    assert "new_password" in problem["detail"]
    assert "at most 1024" in problem["detail"]
    assert "correct-horse" not in json.dumps(problem)
    assert alice.password not in json.dumps(problem)


def test_fuzzing_an_empty_string_is_refused_by_the_document_not_by_a_view(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """V2: the document's own minLength refuses an empty password (it passed before)."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    body = json.dumps({"current_password": "", "new_password": "a-new-long-passphrase-42"})
    status, problem = _post(client, PASSWORD, body, alice)
    assert status == 400
    assert "current_password" in problem["detail"]
    assert body_problems("POST", PASSWORD, {"current_password": "", "new_password": "x"})


def test_fuzzing_a_lone_surrogate_is_400_not_500(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """V1: ``\\ud800`` cannot be hashed or stored: refused as not text, never a 500."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    body = '{"current_password": "x", "new_password": "abc\\ud800def-long-enough"}'
    status, problem = _post(client, PASSWORD, body, alice)
    assert status == 400
    assert "new_password" in problem["detail"]
    assert "surrogate" in problem["detail"]
    _password_unchanged(client, clock, alice)


def test_fuzzing_a_deeply_nested_body_is_400_not_500(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """V1: nesting past MAX_DEPTH, or past what the JSON parser takes, is 400."""
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    for depth in (MAX_DEPTH + 1, 20_000):  # 40 KB, within the 64 KiB body limit
        body = '{"new_password": ' + "[" * depth + "]" * depth + "}"
        status, problem = _post(client, PASSWORD, body, alice)
        assert status == 400, (depth, problem)
        assert "nest" in problem["detail"]


def test_fuzzing_a_body_that_is_not_json_is_400(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    alice = enrolled_user(app, client, clock, "alice", Role.AUDITOR)
    status, problem = _post(client, PASSWORD, '{"current_password": ', alice)
    assert status == 400
    assert "JSON" in problem["detail"]


def test_fuzzing_an_audit_query_outside_its_documented_range_is_400(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """V3: the audit route's ``after`` and ``limit`` are held to their schemas."""
    auditor = enrolled_user(app, client, clock, "audrey", Role.AUDITOR)
    for query in ("limit=0", "limit=abc", "limit=1e3", "after=-1", "limit=100000"):
        answer = client.get(f"{AUDIT}?{query}", headers=auditor.headers)
        assert answer.status_code == 400, query
        assert query.split("=")[0] in answer.get_json()["detail"]
    assert client.get(f"{AUDIT}?after=0&limit=5", headers=auditor.headers).status_code == 200


def test_the_contract_check_names_an_undocumented_status_and_a_body_off_its_schema() -> None:
    """The check every server test runs on the app's answers can fail."""
    undocumented = answer_problems("POST", "/api/v1/auth/logout", 418, "application/json", {})
    assert undocumented == [
        "POST /api/v1/auth/logout -> 418: status not documented"
        " (documented: 204, 401, 413, 503, 507)"
    ]
    off_schema = answer_problems(
        "POST", "/api/v1/auth/login", 401, "application/problem+json", {"status": 401}
    )
    assert off_schema
    assert "title" in off_schema[0]
