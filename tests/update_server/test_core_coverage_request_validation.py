"""API requests held to the OpenAPI document at the edges of V1-V4 (R42, issue 12).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): what the document does not describe is left to Flask and the view, and
a refusal names the rule and the fields, never a value.
"""

from __future__ import annotations

from flask import Flask

from update_server.request_validation import body_problems, check_request

LOGIN = "/api/v1/auth/login"
MEMBERS = "/api/v1/groups/<name>/members"


def test_v1_an_operation_without_a_json_body_has_no_body_rules() -> None:
    assert body_problems("GET", "/api/v1/health", {"anything": 1}) == []
    assert body_problems("POST", "/api/v1/not-documented", {"anything": 1}) == []


def test_v4_a_request_no_route_matches_is_left_to_flask_a_404_not_a_400() -> None:
    app = Flask(__name__)
    with app.test_request_context("/api/v1/no-such-route", method="POST", data=b"{"):
        check_request()  # nothing raised: the body of an unknown route is never read


def test_v2_missing_and_unexpected_fields_are_named_never_their_values() -> None:
    assert body_problems("POST", LOGIN, {}) == [
        "'username' is a required property",
        "'password' is a required property",
    ]
    extra = body_problems("POST", LOGIN, {"username": "a", "password": "s3cret", "x": 1})
    assert extra == ["Additional properties are not allowed ('x' was unexpected)"]
    assert "s3cret" not in " ".join(extra)


def test_v2_a_rule_without_its_own_sentence_is_named_by_its_keyword() -> None:
    assert body_problems("POST", MEMBERS, {"device_ids": []}) == [
        "device_ids: breaks the document's 'minItems' rule"
    ]


def test_v1_a_key_holding_a_lone_surrogate_is_refused() -> None:
    """Such a key cannot be stored or logged as text: refused before any rule is read."""
    assert body_problems("POST", LOGIN, {"\ud800": 1}) == [
        "a key under the body (a lone UTF-16 surrogate) is not accepted"
    ]
