"""``fwserver serve`` on every interface says which Host names it answers (R26).

Unset, ``trusted_hosts`` is loopback and the names the served certificate is
valid for (``tls.certificate_names``): any other name a device uses gets a
400. Binding every interface with that default is warned about at start,
naming the names, so an operator learns it before devices are cut off.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from update_server.cli import main
from update_server.config import ServerConfig
from update_server.serve import prepare
from update_server.tls import CERT_FILE, KEY_FILE, generate_self_signed

WILDCARD = "0.0.0.0"  # noqa: S104 - the address under test


# R6: fwserver serve refuses root (test_serve_root); here its other rules are tested.
pytestmark = pytest.mark.usefixtures("unprivileged")


def _host_warnings(warnings: list[str] | tuple[str, ...]) -> list[str]:
    return [line for line in warnings if "trusted_hosts" in line]


def test_a_wildcard_bind_with_default_trusted_hosts_is_warned_about_at_start_r26(
    config: ServerConfig,
) -> None:
    """R26: devices reaching the server by another name would get 400 without a word."""
    arguments = ["serve", "--data-dir", str(config.data_dir), "--host", WILDCARD, "--check"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    [warning] = _host_warnings(result.stderr.splitlines())
    assert warning.startswith(
        "fwserver: warning: binding every interface (0.0.0.0) with trusted_hosts unset:"
        " only localhost, 127.0.0.1, ::1 (loopback and the certificate's names) are answered"
    )
    assert warning.endswith("set trusted_hosts to the names devices use")


def test_the_warning_names_the_configured_certificates_names_r26(
    config: ServerConfig, tmp_path: Path
) -> None:
    generate_self_signed(tmp_path / "pki", names=("fw.hospital.example",), now=datetime.now(UTC))
    served = config.with_changes(
        host=WILDCARD, tls_cert=tmp_path / "pki" / CERT_FILE, tls_key=tmp_path / "pki" / KEY_FILE
    )
    [warning] = _host_warnings(prepare(served, host_given=True).warnings)
    assert "only localhost, 127.0.0.1, ::1, fw.hospital.example (loopback" in warning


def test_configured_trusted_hosts_or_a_loopback_bind_are_not_warned_about(
    config: ServerConfig,
) -> None:
    named = config.with_changes(host=WILDCARD, trusted_hosts="fw.hospital.example")
    assert _host_warnings(prepare(named, host_given=True).warnings) == []
    assert _host_warnings(prepare(config, host_given=False).warnings) == []
