"""The server's TLS certificate: self-signed by default, configured for real."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from update_server.config import ServerConfig
from update_server.tls import (
    RENEW_BEFORE,
    VALIDITY,
    TlsError,
    configured_tls,
    fingerprint,
    generate_self_signed,
    server_tls,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(path: Path) -> x509.SubjectAlternativeName:
    return _certificate(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_default_is_a_self_signed_ec_p256_certificate_for_localhost(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert files.generated
    assert files.cert == files.ca == tmp_path / "tls" / "server.crt"
    certificate = _certificate(files.cert)
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert certificate.issuer == certificate.subject
    assert _san(files.cert).get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in _san(files.cert).get_values_for_type(x509.IPAddress)
    assert certificate.not_valid_after_utc == NOW + VALIDITY


def test_the_self_signed_certificate_cannot_sign_for_other_names(tmp_path: Path) -> None:
    """A stolen server key impersonates this server only: CA:FALSE, serverAuth."""
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    extensions = _certificate(files.cert).extensions
    assert extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is False
    usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_the_private_key_is_readable_by_the_server_user_only(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.parent.stat().st_mode) == 0o700


def test_the_certificate_is_reused_across_starts(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path)
    first = server_tls(config, now=NOW)
    before = first.cert.read_bytes()
    again = server_tls(config, now=NOW + timedelta(days=100))
    assert not again.generated
    assert again.cert.read_bytes() == before


def test_a_certificate_near_its_expiry_is_replaced(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path)
    before = server_tls(config, now=NOW).cert.read_bytes()
    later = NOW + VALIDITY - RENEW_BEFORE + timedelta(days=1)
    renewed = server_tls(config, now=later)
    assert renewed.generated
    assert renewed.cert.read_bytes() != before


def test_a_configured_host_is_named_in_the_certificate(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path, host="fw.example.test"), now=NOW)
    assert "fw.example.test" in _san(files.cert).get_values_for_type(x509.DNSName)
    assert not server_tls(ServerConfig(data_dir=tmp_path, host="localhost"), now=NOW).generated


def test_a_new_host_gets_a_new_certificate(tmp_path: Path) -> None:
    server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    files = server_tls(ServerConfig(data_dir=tmp_path, host="10.1.2.3"), now=NOW)
    assert files.generated
    assert ipaddress.ip_address("10.1.2.3") in _san(files.cert).get_values_for_type(x509.IPAddress)


def test_a_wildcard_bind_is_not_a_certificate_name(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path, host="0.0.0.0"), now=NOW)  # noqa: S104
    assert ipaddress.ip_address("0.0.0.0") not in _san(files.cert).get_values_for_type(  # noqa: S104
        x509.IPAddress
    )


def test_a_strict_tls_client_verifies_the_server_against_the_file(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=datetime.now(UTC))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.cert, files.key)
    client_context = ssl.create_default_context(cafile=str(files.ca))
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    left, right = socket.socketpair()
    with left, right:
        server = threading.Thread(target=_handshake, args=(server_context, right), daemon=True)
        server.start()
        left.settimeout(10)
        with client_context.wrap_socket(left, server_hostname="127.0.0.1") as tls:
            assert tls.version() in {"TLSv1.2", "TLSv1.3"}
        server.join(10)


def _handshake(context: ssl.SSLContext, sock: socket.socket) -> None:
    sock.settimeout(10)
    with context.wrap_socket(sock, server_side=True):
        pass


def _real_certificate(directory: Path) -> tuple[Path, Path]:
    generate_self_signed(directory, names=["fw.example.test"], now=NOW)
    return directory / "server.crt", directory / "server.key"


def test_a_configured_certificate_is_used_as_given(tmp_path: Path) -> None:
    cert, key = _real_certificate(tmp_path / "pki")
    config = ServerConfig(data_dir=tmp_path / "data", tls_cert=cert, tls_key=key)
    files = server_tls(config, now=NOW)
    assert (files.cert, files.key, files.ca, files.generated) == (cert, key, cert, False)
    assert not (tmp_path / "data" / "tls").exists()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert, _key = _real_certificate(tmp_path)
    with pytest.raises(TlsError, match="both tls_cert and tls_key"):
        configured_tls(cert, None, now=NOW)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    cert, key = _real_certificate(tmp_path)
    key.chmod(0o644)
    with pytest.raises(TlsError, match="chmod 600"):
        configured_tls(cert, key, now=NOW)


def test_the_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cert, _key = _real_certificate(tmp_path / "a")
    _cert, other_key = _real_certificate(tmp_path / "b")
    with pytest.raises(TlsError, match="is not the key of"):
        configured_tls(cert, other_key, now=NOW)


def test_an_expired_configured_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = _real_certificate(tmp_path)
    with pytest.raises(TlsError, match="expired"):
        configured_tls(cert, key, now=NOW + VALIDITY + timedelta(days=1))


def test_files_that_are_not_pem_are_named(tmp_path: Path) -> None:
    cert, key = _real_certificate(tmp_path)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not pem")
    garbage.chmod(0o600)
    with pytest.raises(TlsError, match="not a PEM certificate"):
        configured_tls(garbage, key, now=NOW)
    with pytest.raises(TlsError, match="not an unencrypted PEM private key"):
        configured_tls(cert, garbage, now=NOW)
    with pytest.raises(TlsError, match="cannot read certificate"):
        configured_tls(tmp_path / "missing.crt", key, now=NOW)


def test_an_encrypted_key_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    cert, key = _real_certificate(tmp_path)
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    key.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(TlsError, match="unencrypted"):
        configured_tls(cert, key, now=NOW)


def test_the_fingerprint_is_the_sha256_of_the_certificate(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    der = _certificate(files.cert).public_bytes(serialization.Encoding.DER)
    assert fingerprint(files.cert).replace(":", "").lower() == hashlib.sha256(der).hexdigest()
