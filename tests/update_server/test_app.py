"""The app's contract: default deny, problem+json errors, security headers."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from update_server.access import declared
from update_server.app import SECURITY_HEADERS


def test_health_is_public_and_carries_security_headers(client: FlaskClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_every_route_declares_who_may_call_it_default_deny_r6(app: Flask) -> None:
    """R6 least privilege: no endpoint is reachable without an explicit rule."""
    views = [app.view_functions[rule.endpoint] for rule in app.url_map.iter_rules()]
    assert views
    assert declared(views) == []


def test_unknown_path_is_a_problem_json_404(client: FlaskClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


def test_an_unexpected_error_never_shows_a_traceback(app: Flask, client: FlaskClient) -> None:
    from update_server.access import public  # noqa: PLC0415

    @public
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    app.add_url_rule("/boom", "boom", boom)
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret internal detail" not in body
    assert "Traceback" not in body
    assert response.mimetype == "application/problem+json"
