"""The server's TLS: its own CA for devices, short-lived leaves, or a configured certificate.

Certificates only this module reads are made at ``NOW``; those a real OpenSSL
handshake checks are made relative to the wall clock (``datetime.now``), so
the suite passes on any date.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
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

from tests.update_server.conftest import FAST_KDF
from update_server.config import ServerConfig
from update_server.setup import init_data_dir
from update_server.tls import (
    CA_VALIDITY,
    CA_WARN_BEFORE,
    DEFAULT_NAMES,
    LEAF_VALIDITY,
    RENEW_BEFORE,
    VALIDITY,
    WARN_BEFORE,
    LeafKeeper,
    TlsError,
    configured_tls,
    expiry_warnings,
    fingerprint,
    generate_self_signed,
    issue_leaf,
    make_ca,
    served_tls,
    server_profile,
    server_tls,
    status_line,
)

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(path: Path) -> x509.SubjectAlternativeName:
    return _certificate(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_the_default_is_a_p256_leaf_issued_by_the_servers_own_ca(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert (files.generated, files.managed) == (True, True)
    assert files.cert == tmp_path / "tls" / "server.crt"
    assert files.ca == tmp_path / "tls" / "ca.crt"
    leaf, ca = _certificate(files.cert), _certificate(files.ca)
    leaf.verify_directly_issued_by(ca)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert _san(files.cert).get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in _san(files.cert).get_values_for_type(x509.IPAddress)
    assert leaf.not_valid_after_utc == NOW + LEAF_VALIDITY
    assert ca.not_valid_after_utc == NOW + CA_VALIDITY


def test_the_ca_can_issue_server_certificates_and_nothing_below_them(tmp_path: Path) -> None:
    """R26: the CA's key signs leaves only (path length 0); it is no server certificate."""
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert files.ca is not None
    extensions = _certificate(files.ca).extensions
    constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    assert (constraints.critical, constraints.value.ca, constraints.value.path_length) == (
        True,
        True,
        0,
    )
    usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, False)
    with pytest.raises(x509.ExtensionNotFound):
        extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_the_served_certificate_cannot_sign_for_other_names(tmp_path: Path) -> None:
    """R26: a stolen server key impersonates this server only: CA:FALSE, serverAuth."""
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    extensions = _certificate(files.cert).extensions
    assert extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is False
    usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_private_keys_are_readable_by_the_server_user_only(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    for key in (files.key, tmp_path / "tls" / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.key.parent.stat().st_mode) == 0o700


def test_init_makes_the_ca_devices_are_provisioned_with(tmp_path: Path) -> None:
    config = init_data_dir(tmp_path / "data", kdf=FAST_KDF, now=NOW).config
    ca = config.data_dir / "tls" / "ca.crt"
    assert _certificate(ca).not_valid_after_utc == NOW + CA_VALIDITY
    assert server_tls(config, now=NOW + timedelta(days=3)).ca == ca
    assert _certificate(ca).not_valid_after_utc == NOW + CA_VALIDITY


def test_the_certificate_is_reused_across_starts(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path)
    before = server_tls(config, now=NOW).cert.read_bytes()
    again = server_tls(config, now=NOW + LEAF_VALIDITY - RENEW_BEFORE - timedelta(days=1))
    assert not again.generated
    assert again.cert.read_bytes() == before


def test_a_certificate_near_its_expiry_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    """R5: renewal changes the leaf and its key, never what devices trust."""
    config = ServerConfig(data_dir=tmp_path)
    first = server_tls(config, now=NOW)
    assert first.ca is not None
    ca_before, leaf_before = first.ca.read_bytes(), _certificate(first.cert)
    later = NOW + LEAF_VALIDITY - RENEW_BEFORE + timedelta(days=1)
    renewed = server_tls(config, now=later)
    assert renewed.generated
    assert first.ca.read_bytes() == ca_before
    leaf = _certificate(renewed.cert)
    leaf.verify_directly_issued_by(_certificate(first.ca))
    assert leaf.public_key() != leaf_before.public_key()
    assert leaf.not_valid_after_utc == later + LEAF_VALIDITY


def test_renewing_the_certificate_does_not_cut_off_devices_given_the_ca(tmp_path: Path) -> None:
    """R5 return to secure operation: a device provisioned before a renewal still connects.

    The device keeps its own copy of what it was given at provisioning; the
    server then renews its certificate (the leaf issued 80 days ago is due).
    """
    now = datetime.now(UTC)
    config = ServerConfig(data_dir=tmp_path / "data")
    old = server_tls(config, now=now - LEAF_VALIDITY + timedelta(days=10))
    assert old.ca is not None
    device_ca = shutil.copyfile(old.ca, tmp_path / "device-ca.crt")
    assert _handshake(old.cert, old.key, ca=device_ca) in {"TLSv1.2", "TLSv1.3"}
    renewed = server_tls(config, now=now)
    assert renewed.generated
    assert _handshake(renewed.cert, renewed.key, ca=device_ca) in {"TLSv1.2", "TLSv1.3"}


def test_a_running_server_renews_its_certificate_when_due(tmp_path: Path) -> None:
    """R5: a server that runs for months serves a renewed leaf, never an expired one."""
    clock = [NOW]
    keeper = LeafKeeper(tmp_path / "tls", DEFAULT_NAMES, clock=lambda: clock[0])
    served_file = tmp_path / "tls" / "server.crt"
    first = keeper.load(served_file.read_bytes)
    clock[0] = NOW + LEAF_VALIDITY - RENEW_BEFORE - timedelta(hours=1)
    assert keeper.load(served_file.read_bytes) == first
    clock[0] += timedelta(hours=2)
    served = keeper.load(served_file.read_bytes)
    assert served != first
    leaf = x509.load_pem_x509_certificate(served)
    leaf.verify_directly_issued_by(_certificate(tmp_path / "tls" / "ca.crt"))
    assert leaf.not_valid_after_utc == clock[0] + LEAF_VALIDITY


def test_a_running_server_whose_ca_key_is_gone_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [NOW]
    keeper = LeafKeeper(tmp_path / "tls", DEFAULT_NAMES, clock=lambda: clock[0])
    keeper.load(lambda: None)
    (tmp_path / "tls" / "ca.key").unlink()
    clock[0] += LEAF_VALIDITY - RENEW_BEFORE + timedelta(days=1)
    assert keeper.load(lambda: "context") == "context"
    assert "TLS certificate not renewed" in caplog.text
    assert "ca.key is missing" in caplog.text


def test_a_lost_ca_key_is_never_replaced_by_a_new_ca(tmp_path: Path) -> None:
    """R5: a new CA would cut off every device; the operator restores the key instead."""
    config = ServerConfig(data_dir=tmp_path)
    files = server_tls(config, now=NOW)
    assert files.ca is not None
    ca = files.ca.read_bytes()
    (tmp_path / "tls" / "ca.key").unlink()
    with pytest.raises(TlsError, match="restore it from a backup"):
        server_tls(config, now=NOW + LEAF_VALIDITY)
    assert files.ca.read_bytes() == ca
    assert not (tmp_path / "tls" / "ca.key").exists()


def test_a_ca_key_that_is_not_the_cas_is_refused(tmp_path: Path) -> None:
    server_tls(ServerConfig(data_dir=tmp_path / "a"), now=NOW)
    server_tls(ServerConfig(data_dir=tmp_path / "b"), now=NOW)
    shutil.copyfile(tmp_path / "b" / "tls" / "ca.key", tmp_path / "a" / "tls" / "ca.key")
    with pytest.raises(TlsError, match="is not the key of the TLS CA"):
        issue_leaf(tmp_path / "a" / "tls", names=DEFAULT_NAMES, now=NOW)


def test_an_expired_ca_stops_the_server_with_what_to_do(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path)
    server_tls(config, now=NOW)
    with pytest.raises(TlsError, match="provision every device"):
        server_tls(config, now=NOW + CA_VALIDITY + timedelta(days=1))


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path)
    server_tls(config, now=NOW)
    near_the_end = NOW + CA_VALIDITY - timedelta(days=20)
    files = server_tls(config, now=near_the_end)
    assert files.ca is not None
    end = _certificate(files.ca).not_valid_after_utc
    assert _certificate(files.cert).not_valid_after_utc == end
    # Cut short by its CA, it is not reissued on each start.
    assert not server_tls(config, now=near_the_end + timedelta(days=1)).generated


def test_nothing_is_warned_about_while_every_certificate_has_time(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert expiry_warnings(files, now=NOW) == []
    later = NOW + CA_VALIDITY - CA_WARN_BEFORE - timedelta(minutes=1)
    assert expiry_warnings(server_tls(ServerConfig(data_dir=tmp_path), now=later), now=later) == []


def test_expiring_ca_is_warned_about_a_year_ahead_in_time_to_provision_every_device(
    tmp_path: Path,
) -> None:
    """R5, R38: a new CA means provisioning the whole fleet again; a month's notice is too late."""
    config = ServerConfig(data_dir=tmp_path)
    server_tls(config, now=NOW)
    end = NOW + CA_VALIDITY
    a_year_before = end - timedelta(days=365)
    files = server_tls(config, now=a_year_before)
    [warning] = expiry_warnings(files, now=a_year_before)
    assert warning.startswith('TLS CA certificate "fwserver TLS CA ')
    assert f"expires on {end:%Y-%m-%d} (365 days): devices must be given a new CA before then" in (
        warning
    )
    assert f"CA valid until {end:%Y-%m-%d} (365 days)" in status_line(files, now=a_year_before)


def test_in_the_cas_last_month_its_last_leaf_is_warned_about_too(tmp_path: Path) -> None:
    """R5: a leaf cut short by its CA cannot be renewed; the CA's replacement is what helps."""
    config = ServerConfig(data_dir=tmp_path)
    server_tls(config, now=NOW)
    late = NOW + CA_VALIDITY - timedelta(days=29)
    files = server_tls(config, now=late)
    served, ca = expiry_warnings(files, now=late)
    end = f"{NOW + CA_VALIDITY:%Y-%m-%d}"
    assert served.startswith("TLS served certificate")
    assert served.endswith("it cannot outlive its CA: devices must be given a new CA")
    assert f"expires on {end} (29 days): devices must be given a new CA before then" in ca


def test_expiring_root_of_a_configured_chain_is_warned_about_a_year_ahead_its_leaf_a_month(
    tmp_path: Path,
) -> None:
    """R5, R38: the hospital CA devices trust is a CA too; the leaf its PKI renews keeps 30 days."""
    pki = tmp_path / "pki" / "tls"
    server_tls(ServerConfig(data_dir=tmp_path / "pki"), now=NOW)
    issued = NOW + CA_VALIDITY - timedelta(days=200)
    chain = tmp_path / "chain.pem"
    leaf = issue_leaf(pki, names=DEFAULT_NAMES, now=issued)
    chain.write_bytes(leaf.read_bytes() + (pki / "ca.crt").read_bytes())
    files = configured_tls(chain, pki / "server.key", now=issued)
    [ca] = expiry_warnings(files, now=issued)
    assert ca.startswith("TLS CA certificate")
    assert "(200 days): devices must be given a new CA before then" in ca
    month_before = issued + LEAF_VALIDITY - WARN_BEFORE
    assert len(expiry_warnings(files, now=month_before - timedelta(minutes=1))) == 1
    served, _ca = expiry_warnings(files, now=month_before)
    assert served.startswith("TLS served certificate")
    assert "(30 days): install a renewed certificate (tls_cert, tls_key) before then" in served


def test_status_reads_a_due_leaf_as_it_is_and_names_the_missing_renewal(tmp_path: Path) -> None:
    """R5, R38: status never writes the TLS files (it may run as another user than the server)."""
    config = ServerConfig(data_dir=tmp_path)
    server_tls(config, now=NOW)
    before = {path.name: path.read_bytes() for path in (tmp_path / "tls").iterdir()}
    due = NOW + LEAF_VALIDITY - RENEW_BEFORE + timedelta(days=1)
    files = served_tls(config, now=due)
    assert (files.managed, files.generated) == (True, False)
    assert {path.name: path.read_bytes() for path in (tmp_path / "tls").iterdir()} == before
    [warning] = expiry_warnings(files, now=due)
    assert warning.startswith("TLS served certificate")
    assert warning.endswith(
        "its renewal from the CA is due: start 'fwserver serve' or run 'fwserver serve --check'"
    )


def test_status_of_a_directory_never_served_names_what_issues_the_certificate(
    tmp_path: Path,
) -> None:
    make_ca(tmp_path / "tls", now=NOW)
    with pytest.raises(TlsError, match="'fwserver serve --check' issues"):
        served_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert not (tmp_path / "tls" / "server.crt").exists()
    with pytest.raises(TlsError, match="no TLS CA in"):
        served_tls(ServerConfig(data_dir=tmp_path / "empty"), now=NOW)
    assert not (tmp_path / "empty").exists()


def test_status_names_an_expired_ca_and_a_lost_ca_key(tmp_path: Path) -> None:
    """R5: what stops the next start of the server is shown before it happens."""
    config = ServerConfig(data_dir=tmp_path)
    server_tls(config, now=NOW)
    with pytest.raises(TlsError, match="provision every device"):
        served_tls(config, now=NOW + CA_VALIDITY)
    (tmp_path / "tls" / "ca.key").unlink()
    with pytest.raises(TlsError, match="restore it from a backup"):
        served_tls(config, now=NOW)


def test_a_configured_host_is_named_in_the_certificate(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path, host="fw.example.test"), now=NOW)
    assert "fw.example.test" in _san(files.cert).get_values_for_type(x509.DNSName)
    assert not server_tls(ServerConfig(data_dir=tmp_path, host="localhost"), now=NOW).generated


def test_a_new_host_gets_a_new_certificate_from_the_same_ca(tmp_path: Path) -> None:
    first = server_tls(ServerConfig(data_dir=tmp_path), now=NOW)
    assert first.ca is not None
    ca = first.ca.read_bytes()
    files = server_tls(ServerConfig(data_dir=tmp_path, host="10.1.2.3"), now=NOW)
    assert files.generated
    assert ipaddress.ip_address("10.1.2.3") in _san(files.cert).get_values_for_type(x509.IPAddress)
    assert first.ca.read_bytes() == ca


def test_a_wildcard_bind_is_not_a_certificate_name(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path, host="0.0.0.0"), now=NOW)  # noqa: S104
    assert ipaddress.ip_address("0.0.0.0") not in _san(files.cert).get_values_for_type(  # noqa: S104
        x509.IPAddress
    )


def test_a_strict_tls_client_verifies_the_server_against_the_ca(tmp_path: Path) -> None:
    files = server_tls(ServerConfig(data_dir=tmp_path), now=datetime.now(UTC))
    assert files.ca is not None
    assert _handshake(files.cert, files.key, ca=files.ca) in {"TLSv1.2", "TLSv1.3"}


def test_the_server_profile_offers_no_cbc_suite_in_tls_1_2() -> None:
    """R26: TLS 1.2 with ECDHE and AES-GCM or ChaCha20-Poly1305 only (Mozilla intermediate)."""
    context = server_profile(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    for cipher in tls12:
        assert cipher["kea"] == "kx-ecdhe", cipher["name"]
        assert cipher["aead"], cipher["name"]


def _handshake(cert: Path, key: Path, *, ca: Path) -> str | None:
    server_context = server_profile(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(ca))
    client_context.verify_flags |= ssl.VERIFY_X509_STRICT
    left, right = socket.socketpair()
    with left, right:
        server = threading.Thread(target=_serve_one, args=(server_context, right), daemon=True)
        server.start()
        left.settimeout(10)
        with client_context.wrap_socket(left, server_hostname="127.0.0.1") as tls:
            version = tls.version()
        server.join(10)
    return version


def _serve_one(context: ssl.SSLContext, sock: socket.socket) -> None:
    sock.settimeout(10)
    with context.wrap_socket(sock, server_side=True):
        pass


def test_a_self_signed_certificate_of_an_earlier_fwserver_is_served_until_due(
    tmp_path: Path,
) -> None:
    """R5: devices that pinned the old server.crt keep their server while given ca.crt."""
    generate_self_signed(tmp_path / "tls", names=list(DEFAULT_NAMES), now=NOW)
    legacy = (tmp_path / "tls" / "server.crt").read_bytes()
    files = server_tls(ServerConfig(data_dir=tmp_path), now=NOW + timedelta(days=1))
    assert (files.generated, files.managed) == (False, False)
    assert files.cert.read_bytes() == legacy
    assert files.ca == tmp_path / "tls" / "ca.crt"
    [warning] = expiry_warnings(files, now=NOW + timedelta(days=1))
    replaced = f"{NOW + VALIDITY - RENEW_BEFORE:%Y-%m-%d}"
    assert f"give them {files.ca} before {replaced}" in warning
    due = NOW + VALIDITY - RENEW_BEFORE + timedelta(days=1)
    renewed = server_tls(ServerConfig(data_dir=tmp_path), now=due)
    assert (renewed.generated, renewed.managed) == (True, True)
    _certificate(renewed.cert).verify_directly_issued_by(_certificate(files.ca))


def _self_signed_pair(directory: Path) -> tuple[Path, Path]:
    generate_self_signed(directory, names=["fw.example.test"], now=NOW)
    return directory / "server.crt", directory / "server.key"


def test_a_certificate_from_another_ca_is_used_as_given(tmp_path: Path) -> None:
    """An operator's PKI: fwserver serves the pair and makes no CA of its own."""
    pki = server_tls(ServerConfig(data_dir=tmp_path / "pki"), now=NOW)
    config = ServerConfig(data_dir=tmp_path / "data", tls_cert=pki.cert, tls_key=pki.key)
    files = server_tls(config, now=NOW)
    assert (files.cert, files.key, files.ca, files.generated) == (pki.cert, pki.key, None, False)
    assert not (tmp_path / "data" / "tls").exists()
    assert expiry_warnings(files, now=NOW) == []
    assert expiry_warnings(files, now=NOW + LEAF_VALIDITY - timedelta(days=3))[0].endswith(
        "install a renewed certificate (tls_cert, tls_key) before then"
    )


def test_a_configured_chain_names_its_root_as_the_devices_ca(tmp_path: Path) -> None:
    pki = server_tls(ServerConfig(data_dir=tmp_path / "pki"), now=NOW)
    assert pki.ca is not None
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.cert.read_bytes() + pki.ca.read_bytes())
    files = configured_tls(chain, pki.key, now=NOW)
    assert files.ca == chain
    assert expiry_warnings(files, now=NOW) == []


def test_a_configured_self_signed_certificate_is_warned_about_as_pinned(tmp_path: Path) -> None:
    cert, key = _self_signed_pair(tmp_path / "pki")
    config = ServerConfig(data_dir=tmp_path / "data", tls_cert=cert, tls_key=key)
    files = server_tls(config, now=NOW)
    assert (files.cert, files.key, files.ca, files.generated) == (cert, key, cert, False)
    [warning] = expiry_warnings(files, now=NOW)
    assert "is self-signed and devices trust it as their CA" in warning


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert, _key = _self_signed_pair(tmp_path)
    with pytest.raises(TlsError, match="both tls_cert and tls_key"):
        configured_tls(cert, None, now=NOW)


def test_a_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    cert, key = _self_signed_pair(tmp_path)
    key.chmod(0o644)
    with pytest.raises(TlsError, match="chmod 600"):
        configured_tls(cert, key, now=NOW)


def test_the_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    cert, _key = _self_signed_pair(tmp_path / "a")
    _cert, other_key = _self_signed_pair(tmp_path / "b")
    with pytest.raises(TlsError, match="is not the key of"):
        configured_tls(cert, other_key, now=NOW)


def test_an_expired_configured_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = _self_signed_pair(tmp_path)
    with pytest.raises(TlsError, match="expired"):
        configured_tls(cert, key, now=NOW + VALIDITY + timedelta(days=1))


def test_files_that_are_not_pem_are_named(tmp_path: Path) -> None:
    cert, key = _self_signed_pair(tmp_path)
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
    cert, key = _self_signed_pair(tmp_path)
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
    assert files.ca is not None
    der = _certificate(files.ca).public_bytes(serialization.Encoding.DER)
    assert fingerprint(files.ca).replace(":", "").lower() == hashlib.sha256(der).hexdigest()
