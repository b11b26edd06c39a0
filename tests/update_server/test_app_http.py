"""HTTP hygiene at the app's boundary: methods, hosts, redirects, body sizes."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from update_server.app import create_app
from update_server.config import ServerConfig

EVIL = "evil.example"


def test_a_405_names_the_allowed_methods(client: FlaskClient) -> None:
    response = client.delete("/api/v1/health")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_an_untrusted_host_is_refused_never_reflected_host_header_injection(
    client: FlaskClient,
) -> None:
    for path in ("/targets//x", "/api/v1//health", "/api/v1/health"):
        response = client.get(path, headers={"Host": EVIL})
        assert response.status_code == 400, path
        assert "Location" not in response.headers
        assert EVIL not in response.get_data(as_text=True)


def test_a_double_slash_is_not_found_never_redirected_open_redirect(client: FlaskClient) -> None:
    response = client.get("/targets//x", headers={"Host": "127.0.0.1:8443"})
    assert response.status_code == 404
    assert "Location" not in response.headers


def test_the_trusted_hosts_are_the_served_names_or_the_configured_ones(
    config: ServerConfig,
) -> None:
    served = _app(config.with_changes(host="fw.hospital.example")).test_client()
    assert served.get("/api/v1/health", headers={"Host": "fw.hospital.example"}).status_code == 200
    assert served.get("/api/v1/health", headers={"Host": "localhost:8443"}).status_code == 200
    assert served.get("/api/v1/health", headers={"Host": EVIL}).status_code == 400
    configured = _app(config.with_changes(trusted_hosts="updates.example, cdn.example"))
    client = configured.test_client()
    assert client.get("/api/v1/health", headers={"Host": "cdn.example"}).status_code == 200
    assert client.get("/api/v1/health", headers={"Host": "localhost"}).status_code == 400


def _app(config: ServerConfig) -> Flask:
    application = create_app(config)
    application.extensions["fw"].engine.dispose()
    return application
