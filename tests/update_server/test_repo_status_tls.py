"""``fwserver repo status`` shows the server's TLS: until when, and the warnings of serve.

The fixture's ``init`` made the CA on the wall clock; each test takes its
times from that CA's expiry and runs the commands on that clock
(``CommandClock``), so it passes on any date.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from tests.update_server.repo_world import World
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.tls import CA_CERT_FILE, LEAF_VALIDITY, RENEW_BEFORE, TLS_DIR, server_tls

# R6: fwserver serve refuses root (test_serve_root); here its other rules are tested.
pytestmark = pytest.mark.usefixtures("unprivileged")


def _ca_end(data_dir: Path) -> datetime:
    ca = x509.load_pem_x509_certificate((data_dir / TLS_DIR / CA_CERT_FILE).read_bytes())
    return ca.not_valid_after_utc


def _status(world: World, now: datetime) -> Result:
    data_dir = str(world.config.data_dir)
    return CliRunner().invoke(
        main, ["repo", "status", "--data-dir", data_dir], obj=CommandClock(lambda: now)
    )


def _tls_files(data_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((data_dir / TLS_DIR).iterdir())}


def test_expiring_ca_is_warned_about_by_repo_status_as_serve_check_warns(world: World) -> None:
    """R5, R38: the security officer reads in the status command what ``serve --check`` says."""
    end = _ca_end(world.config.data_dir)
    late = end - timedelta(days=200)
    check = CliRunner().invoke(
        main,
        ["serve", "--check", "--data-dir", str(world.config.data_dir)],
        obj=CommandClock(lambda: late),
    )
    assert check.exit_code == 0, check.output
    status = _status(world, late)
    assert status.exit_code == 0, status.output
    assert "snapshot" in status.stdout, "the repository is still shown"
    [tls_line] = [line for line in status.stdout.splitlines() if line.startswith("TLS ")]
    assert tls_line in check.stdout.splitlines()
    assert tls_line.endswith(f"; CA valid until {end:%Y-%m-%d} (200 days)")
    [warning] = status.stderr.splitlines()
    assert warning in check.stderr.splitlines()
    assert warning.startswith('fwserver: warning: TLS CA certificate "fwserver TLS CA ')
    assert "(200 days): devices must be given a new CA before then" in warning


def test_repo_status_says_nothing_of_tls_to_do_while_certificates_have_time(
    world: World,
) -> None:
    now = world.now
    server_tls(world.config, now=now)
    status = _status(world, now)
    assert status.exit_code == 0, status.output
    assert status.stderr == ""
    assert f"TLS certificate valid until {now + LEAF_VALIDITY:%Y-%m-%d} (90 days)" in status.stdout


def test_repo_status_names_a_leaf_whose_renewal_is_due_and_renews_nothing(world: World) -> None:
    """R5, R38: a stopped server's leaf is shown as due; status writes no TLS file."""
    server_tls(world.config, now=world.now)
    before = _tls_files(world.config.data_dir)
    due = world.now + LEAF_VALIDITY - RENEW_BEFORE + timedelta(days=2)
    status = _status(world, due)
    assert status.exit_code == 0, status.output
    [warning] = status.stderr.splitlines()
    assert warning.startswith("fwserver: warning: TLS served certificate")
    assert warning.endswith(
        "its renewal from the CA is due: start 'fwserver serve' or run 'fwserver serve --check'"
    )
    assert _tls_files(world.config.data_dir) == before


def test_repo_status_names_a_lost_ca_key_and_still_shows_the_repository(world: World) -> None:
    """R5: the key whose loss cuts off every device at the next renewal is named at once."""
    server_tls(world.config, now=world.now)
    (world.config.data_dir / TLS_DIR / "ca.key").unlink()
    status = _status(world, world.now)
    assert status.exit_code == 0, status.output
    assert "timestamp" in status.stdout
    [warning] = status.stderr.splitlines()
    assert warning.startswith("fwserver: warning: TLS: the TLS CA key ")
    assert "restore it from a backup" in warning


def test_repo_status_of_a_server_never_started_shows_the_certificate_init_issued(
    world: World,
) -> None:
    status = _status(world, world.now)
    assert status.exit_code == 0, status.output
    assert status.stderr == ""
    assert "TLS" in status.stdout


def test_repo_status_without_a_certificate_says_what_issues_it(world: World) -> None:
    (world.config.data_dir / TLS_DIR / "server.crt").unlink()
    status = _status(world, world.now)
    assert status.exit_code == 0, status.output
    assert status.stderr.splitlines() == [
        "fwserver: warning: TLS: no TLS certificate yet: 'fwserver serve --check' issues"
        f" {world.config.data_dir / TLS_DIR / 'server.crt'}"
    ]
    assert not (world.config.data_dir / TLS_DIR / "server.crt").exists()
