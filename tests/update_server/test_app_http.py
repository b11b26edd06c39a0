"""HTTP hygiene at the app's boundary: methods, hosts, redirects, body sizes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from tests.update_server.people import LOGIN
from tests.update_server.repo_world import Body
from update_server.app import create_app
from update_server.bodies import DRAIN_BYTES
from update_server.config import ServerConfig
from update_server.keys import signer_loader
from update_server.tls import CERT_FILE, KEY_FILE, generate_self_signed

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


def test_a_device_using_the_certificates_name_is_answered_on_a_wildcard_bind_r26(
    config: ServerConfig, tmp_path: Path
) -> None:
    """R26: a device that reaches the server by a name its certificate is valid for is served.

    With every interface bound and a hospital's certificate configured, the
    default trusted hosts are the certificate's names and loopback
    (``tls.certificate_names``), never loopback alone: a device verifying
    ``fw.hospital.example`` must not be cut off with a 400.
    """
    names = ("fw.hospital.example", "*.fleet.example", "10.0.0.5")
    generate_self_signed(tmp_path / "pki", names=names, now=datetime.now(UTC))
    served = config.with_changes(
        host="0.0.0.0",  # noqa: S104 - a configuration value, nothing is bound
        tls_cert=tmp_path / "pki" / CERT_FILE,
        tls_key=tmp_path / "pki" / KEY_FILE,
    )
    client = _app(served).test_client()
    for host in ("fw.hospital.example:8443", "ward3.fleet.example", "10.0.0.5:8443", "localhost"):
        assert client.get("/api/v1/health", headers={"Host": host}).status_code == 200, host
    for host in (EVIL, "fw.hospital.example.evil.example", "10.0.0.6"):
        assert client.get("/api/v1/health", headers={"Host": host}).status_code == 400, host


def _app(config: ServerConfig) -> Flask:
    application = create_app(config, signer_loader=signer_loader(config))
    application.extensions["fw"].engine.dispose()
    return application


def test_an_oversized_login_body_is_refused_before_it_is_read_memory_exhaustion(
    client: FlaskClient, config: ServerConfig
) -> None:
    """An unauthenticated body past the small JSON limit is never read, let alone parsed."""
    body = Body(b"{", 1024**2)
    response = client.post(LOGIN, input_stream=body, content_type="application/json")
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["limit"] == config.max_request_bytes
    assert body.read_bytes == 0
    response.close()  # the answer is out: the rest is drained, within its bound
    assert body.read_bytes == 1024**2 <= DRAIN_BYTES


def test_an_endless_chunked_login_body_is_cut_at_the_limit(
    client: FlaskClient, config: ServerConfig
) -> None:
    body = Body(b"{", None)
    response = client.post(
        LOGIN,
        input_stream=body,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"
    assert body.read_bytes <= config.max_request_bytes + 1
    response.close()
    assert body.read_bytes <= config.max_request_bytes + 1 + DRAIN_BYTES


def test_every_view_but_firmware_uploads_takes_the_small_limit(app: Flask) -> None:
    """Only the views that take firmware bytes (a release's, a published target's) take more."""
    large = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if getattr(app.view_functions[rule.endpoint], "fw_body_limit", None) is not None
    }
    assert large == {
        "/api/v1/releases",
        "/api/v1/releases/<id>/targets/<path:path>",
        "/api/v1/targets/<path:path>",
    }
