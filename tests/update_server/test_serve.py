"""``fwserver serve`` before gunicorn starts: binding rules, TLS settings, per-worker app.

The running server (gunicorn, TLS, signals) is tested end to end in
``tests/e2e/``.
"""

from __future__ import annotations

import ssl
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from flask import Flask

from update_server import cli, wsgi
from update_server.cli_common import CommandClock
from update_server.cli_serve import serve
from update_server.config import ConfigError, ServerConfig
from update_server.keys import SignerLoader
from update_server.mfa import passwords
from update_server.serve import (
    FirmwareServer,
    ServeError,
    ServePlan,
    bind_address,
    prepare,
    url_of,
)
from update_server.tls import MIN_TLS

WILDCARD = "0.0.0.0"  # noqa: S104 - the address under test


# R6: fwserver serve refuses root (test_serve_root); here its other rules are tested.
pytestmark = pytest.mark.usefixtures("unprivileged")


def test_serve_is_a_fwserver_command() -> None:
    assert cli.main.commands["serve"] is serve


def test_a_wildcard_bind_from_the_configuration_alone_is_refused(config: ServerConfig) -> None:
    """Exposure to the hospital network is a decision made on the command line."""
    with pytest.raises(ServeError, match="pass --host explicitly"):
        prepare(config.with_changes(host=WILDCARD), host_given=False)


def test_a_wildcard_bind_given_explicitly_is_allowed(config: ServerConfig) -> None:
    plan = prepare(config.with_changes(host=WILDCARD), host_given=True)
    assert plan.config.host == WILDCARD


def test_the_default_bind_is_loopback_with_a_certificate_of_the_servers_ca(
    config: ServerConfig,
) -> None:
    plan = prepare(config, host_given=False)
    assert plan.config.host == "127.0.0.1"
    assert plan.tls.ca == config.data_dir / "tls" / "ca.crt"
    assert plan.tls.cert == config.data_dir / "tls" / "server.crt"
    assert plan.tls.key.is_file()
    assert plan.warnings == ()


def test_a_directory_that_was_never_initialised_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="fwserver init"):
        prepare(ServerConfig(data_dir=tmp_path), host_given=False)


def test_an_unreachable_database_is_named_without_its_password(config: ServerConfig) -> None:
    url = "postgresql+psycopg://fw:hunter2-secret@127.0.0.1:1/fw?connect_timeout=2"
    with pytest.raises(ServeError, match="cannot reach the database") as caught:
        prepare(config.with_changes(database_url=url), host_given=False)
    assert "hunter2-secret" not in str(caught.value)


def test_a_damaged_password_corpus_stops_the_server_before_it_starts(
    config: ServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R9: fail closed at start, not a 500 at each first login."""

    def damaged() -> frozenset[str]:
        raise passwords.PasswordCorpusError("the breached-password corpus is damaged")

    monkeypatch.setattr(passwords, "common_passwords", damaged)
    with pytest.raises(ServeError, match="the breached-password corpus is damaged"):
        prepare(config, host_given=False)


def _plan(config: ServerConfig) -> ServePlan:
    return prepare(config.with_changes(workers=3, port=0), host_given=False)


def test_gunicorn_runs_tls_only_with_the_configured_workers(config: ServerConfig) -> None:
    plan = _plan(config)
    settings = FirmwareServer(plan, app_factory=wsgi.build_app).cfg
    assert settings.bind == ["127.0.0.1:0"]
    assert settings.workers == 3
    assert settings.certfile == str(plan.tls.cert)
    assert settings.keyfile == str(plan.tls.key)
    assert settings.is_ssl
    assert settings.preload_app is False
    assert settings.control_socket_disable is True


def test_tls_below_1_2_and_cbc_suites_are_not_offered(config: ServerConfig) -> None:
    settings = FirmwareServer(_plan(config), app_factory=wsgi.build_app).cfg
    context = settings.ssl_context(settings, lambda: ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == MIN_TLS == ssl.TLSVersion.TLSv1_2
    assert all(cipher["aead"] for cipher in context.get_ciphers())


def test_each_worker_builds_its_own_app_with_the_online_signers(
    monkeypatch: pytest.MonkeyPatch, config: ServerConfig
) -> None:
    application = FirmwareServer(_plan(config), app_factory=wsgi.build_app).load()
    try:
        services = application.extensions["fw"]
        assert isinstance(services.signer_loader, SignerLoader)
        assert services.config == config.with_changes(workers=3, port=0)
        assert application.test_client().get("/api/v1/health").status_code == 200
    finally:
        application.extensions[wsgi.RENEWAL_EXTENSION].stop()
        application.extensions[wsgi.ALERTS_EXTENSION].stop()
        application.extensions["fw"].engine.dispose()


def test_the_renewal_thread_is_started_in_each_worker(app: Flask) -> None:
    """Timestamp and snapshot are renewed without anyone acting (issue 3)."""
    thread = wsgi.start_renewal(app)
    try:
        assert isinstance(thread, threading.Thread)
        assert thread.is_alive()
        assert thread.daemon
    finally:
        thread.stop()  # type: ignore[union-attr]
    assert not thread.is_alive()  # type: ignore[union-attr]


def test_the_renewal_hook_is_called_with_the_workers_app(
    monkeypatch: pytest.MonkeyPatch, app: Flask
) -> None:
    started: list[Flask] = []
    monkeypatch.setattr(wsgi, "start_renewal_thread", started.append)
    wsgi.start_renewal(app)
    assert started == [app]


def test_the_wsgi_factory_reads_the_data_directory_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, config: ServerConfig
) -> None:
    monkeypatch.delenv(wsgi.DATA_DIR_ENV, raising=False)
    with pytest.raises(ConfigError, match=wsgi.DATA_DIR_ENV):
        wsgi.create()
    monkeypatch.setenv(wsgi.DATA_DIR_ENV, str(config.data_dir))
    application = wsgi.create()
    try:
        assert application.extensions["fw"].config.data_dir == config.data_dir
    finally:
        application.extensions[wsgi.RENEWAL_EXTENSION].stop()
        application.extensions[wsgi.ALERTS_EXTENSION].stop()
        application.extensions["fw"].engine.dispose()


@pytest.mark.parametrize(
    ("host", "url", "bind"),
    [
        ("127.0.0.1", "https://127.0.0.1:8443", "127.0.0.1:8443"),
        ("::1", "https://[::1]:8443", "[::1]:8443"),
        (WILDCARD, "https://127.0.0.1:8443", "0.0.0.0:8443"),
    ],
)
def test_urls_and_bind_addresses(host: str, url: str, bind: str) -> None:
    assert url_of(host, 8443) == url
    assert bind_address(host, 8443) == bind


def test_the_command_refuses_a_configured_wildcard_with_one_line(config: ServerConfig) -> None:
    result = CliRunner().invoke(
        serve, ["--data-dir", str(config.data_dir)], env={"FWSERVER_HOST": WILDCARD}
    )
    assert result.exit_code == 1
    assert "pass --host explicitly" in result.output
    assert "Traceback" not in result.output


def test_the_command_names_a_bad_setting(config: ServerConfig) -> None:
    result = CliRunner().invoke(serve, ["--data-dir", str(config.data_dir), "--workers", "0"])
    assert result.exit_code == 1
    assert "workers: must be an integer" in result.output


def test_the_command_starts_gunicorn_with_the_plan(
    monkeypatch: pytest.MonkeyPatch, config: ServerConfig
) -> None:
    plans: list[ServePlan] = []
    monkeypatch.setattr("update_server.cli_serve.run", plans.append)
    result = CliRunner().invoke(
        serve, ["--data-dir", str(config.data_dir), "--port", "0", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "issued a TLS certificate" not in result.output, "init issued it"
    assert "warning: TLS" not in result.output
    assert (plans[0].config.port, plans[0].config.workers) == (0, 1)


def test_expiring_ca_is_warned_about_by_serve_a_year_ahead_on_the_commands_clock(
    monkeypatch: pytest.MonkeyPatch, config: ServerConfig
) -> None:
    """R5, R38: at start the operator is told, months ahead, to give devices a new CA."""
    monkeypatch.setattr("update_server.cli_serve.run", lambda _plan: None)
    ca = x509.load_pem_x509_certificate((config.data_dir / "tls" / "ca.crt").read_bytes())
    late = ca.not_valid_after_utc - timedelta(days=300)
    result = CliRunner().invoke(
        cli.main, ["serve", "--data-dir", str(config.data_dir)], obj=CommandClock(lambda: late)
    )
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if "TLS CA certificate" in line]
    assert warning.startswith('fwserver: warning: TLS CA certificate "fwserver TLS CA ')
    assert warning.endswith(
        "(300 days): devices must be given a new CA before then:"
        " make one and provision every device with it"
    )


def test_serve_check_prints_what_devices_trust_and_until_when(config: ServerConfig) -> None:
    result = CliRunner().invoke(serve, ["--data-dir", str(config.data_dir), "--check"])
    assert result.exit_code == 0, result.output
    ca = config.data_dir / "tls" / "ca.crt"
    assert f"CA certificate for clients: {ca}" in result.output
    assert "TLS certificate valid until " in result.output
    assert "; CA valid until " in result.output


def test_serve_help_names_the_data_dirs_variable_once() -> None:
    result = CliRunner().invoke(cli.main, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.count("FWSERVER_DATA_DIR") == 1
