"""The real server over TLS: who can talk to it, on what, and how it stops."""

from __future__ import annotations

import ssl
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import urllib3

from tests.e2e.conftest import RunningServer, children_of, new_data_dir, start_server, stop_server
from update_server.config import ServerConfig
from update_server.tls import fingerprint, server_tls


def test_health_answers_over_tls_verified_against_the_generated_certificate(
    server: RunningServer,
) -> None:
    assert server.ca == server.data_dir / "tls" / "server.crt"
    assert f"SHA-256 fingerprint {fingerprint(server.ca)}" in server.stdout.read_text()
    with server.pool() as pool:
        response = pool.request("GET", f"{server.url}/api/v1/health")
    assert response.status == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_plain_http_is_refused(server: RunningServer) -> None:
    """No cleartext listener: an HTTP request on the port gets no HTTP answer."""
    plain = server.url.replace("https://", "http://")
    with (
        urllib3.PoolManager(retries=False, timeout=5) as pool,
        pytest.raises(urllib3.exceptions.ProtocolError),
    ):
        pool.request("GET", f"{plain}/api/v1/health")


def test_a_client_that_does_not_trust_the_certificate_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    """Default trust store (no --ca): verification fails, nothing is exchanged."""
    with (
        urllib3.PoolManager(cert_reqs="CERT_REQUIRED", retries=False, timeout=5) as pool,
        pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        pool.request("GET", f"{server.url}/api/v1/health")


def test_a_client_pinning_another_certificate_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    other = new_data_dir(tmp_path)
    other_ca = server_tls(ServerConfig.load(other)).ca
    with (
        urllib3.PoolManager(ca_certs=str(other_ca), retries=False, timeout=5) as pool,
        pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        pool.request("GET", f"{server.url}/api/v1/health")


def test_tls_below_1_2_is_refused_by_the_server(server: RunningServer) -> None:
    """The client would accept TLS 1.1 (security level 0); the server does not."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(server.ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated: the point
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        urllib3.PoolManager(ssl_context=context, retries=False, timeout=5) as pool,
        pytest.raises(urllib3.exceptions.SSLError),
    ):
        pool.request("GET", f"{server.url}/api/v1/health")


def test_it_listens_on_loopback_only(server: RunningServer) -> None:
    port = urlsplit(server.url).port
    assert urlsplit(server.url).hostname == "127.0.0.1"
    assert _listening_addresses(port) == {"127.0.0.1"}


def _listening_addresses(port: int | None) -> set[str]:
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                addresses.add(_ipv4(address) if len(address) == 8 else address)
    return addresses


def _ipv4(little_endian_hex: str) -> str:
    return ".".join(str(int(little_endian_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))


def test_it_runs_the_configured_number_of_workers(server: RunningServer) -> None:
    assert len(server.worker_pids()) == 2


def test_sigterm_stops_the_master_and_every_worker(tmp_path: Path) -> None:
    """A graceful stop: exit status 0, no worker left behind."""
    with start_server(new_data_dir(tmp_path), workers=2) as running:
        workers = running.worker_pids()
        assert len(workers) == 2
        started = time.monotonic()
        status = stop_server(running.process)
        elapsed = time.monotonic() - started
    assert status == 0
    assert elapsed < 10
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert children_of(running.process.pid) == []
    assert "Handling signal: term" in running.log.read_text()
    assert "Shutting down: Master" in running.log.read_text()
