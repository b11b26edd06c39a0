"""The real server over TLS: who can talk to it, on what, and how it stops."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import urllib3
from cryptography import x509

from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import (
    RunningServer,
    children_of,
    fwclient,
    new_data_dir,
    start_server,
    stop_server,
)
from tests.e2e.offline import LINE, import_repository, make_repository
from update_server.config import ServerConfig
from update_server.tls import DEFAULT_NAMES, LEAF_VALIDITY, fingerprint, issue_leaf, server_tls

#: TLS 1.2 suites with CBC and HMAC that an ECDSA server certificate can use.
CBC_SUITES = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"


def test_health_answers_over_tls_verified_against_the_servers_ca(
    server: RunningServer,
) -> None:
    assert server.ca == server.data_dir / "tls" / "ca.crt"
    assert f"SHA-256 fingerprint {fingerprint(server.ca)}" in server.stdout.read_text()
    assert "TLS certificate valid until " in server.stdout.read_text()
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


def test_the_served_certificate_is_a_leaf_of_the_ca(server: RunningServer) -> None:
    leaf = served_certificate(server.url, ca=server.ca)
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(server.ca.read_bytes()))
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def served_certificate(url: str, *, ca: Path, ciphers: str | None = None) -> x509.Certificate:
    """The certificate the server at ``url`` presents to a client trusting ``ca``."""
    context = ssl.create_default_context(cafile=str(ca))
    if ciphers is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_tls_1_2_client_offering_only_cbc_suites_is_refused(server: RunningServer) -> None:
    """R26 secure communications: TLS 1.2 is ECDHE with AES-GCM or ChaCha20-Poly1305 only.

    A real client socket offering only CBC suites (which the server once
    accepted) gets no handshake; the same client offering AES-GCM does.
    """
    with pytest.raises(ssl.SSLError, match=r"HANDSHAKE_FAILURE|NO_SHARED_CIPHER"):
        served_certificate(server.url, ca=server.ca, ciphers=CBC_SUITES)
    served_certificate(server.url, ca=server.ca, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")


def test_a_client_pinning_another_certificate_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    other = new_data_dir(tmp_path)
    other_ca = server_tls(ServerConfig.load(other), now=datetime.now(UTC)).ca
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


def test_a_device_given_the_ca_still_updates_after_the_certificate_is_renewed(
    tmp_path: Path,
) -> None:
    """R5 return to secure operation: renewing the server's certificate cuts off no device.

    The device is provisioned with the CA (its own copy) and talks to the
    server; later the served certificate is due (made 80 days ago here, as
    time would), the restarted server renews it from the same CA, and the
    device updates over the real gunicorn TLS listener, unchanged.
    """
    data_dir = new_data_dir(tmp_path)
    config = ServerConfig.load(data_dir)
    image = tmp_path / "pump-fw-1.0.0.bin"
    image.write_bytes(os.urandom(64 * 1024))
    info = FirmwareInfo(version="1.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(tmp_path / "offline", config, image, info, authorization=False)
    import_repository(data_dir, tmp_path / "offline", targets_dir=tmp_path)
    state, device_ca = tmp_path / "device", tmp_path / "device-ca.crt"
    shutil.copyfile(data_dir / "tls" / "ca.crt", device_ca)
    root = str(tmp_path / "offline" / "metadata" / "1.root.json")
    provisioned = fwclient(
        "provision", "--state", str(state), "--root", root,
        "--hardware-model", LINE, "--device-id", "pump-0100",
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr

    def device(command: str, url: str) -> None:
        result = fwclient(command, "--state", str(state), "--server", url, "--ca", str(device_ca))
        assert result.returncode == 0, result.stderr

    with start_server(data_dir, workers=1) as before:
        first = served_certificate(before.url, ca=device_ca)
        device("check", before.url)
    aged = datetime.now(UTC) - LEAF_VALIDITY + timedelta(days=10)
    issue_leaf(data_dir / "tls", names=DEFAULT_NAMES, now=aged)
    with start_server(data_dir, workers=1) as after:
        renewed = served_certificate(after.url, ca=device_ca)
        device("update", after.url)
    assert renewed.serial_number != first.serial_number
    assert renewed.public_key() != first.public_key()
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert "issued a TLS certificate from the server's CA" in after.log.read_text()
