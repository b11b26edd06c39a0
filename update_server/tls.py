"""The server's TLS certificate: configured, or self-signed for the embedded default.

With ``tls_cert`` and ``tls_key`` in the configuration the server uses that
certificate (a hospital PKI or public CA one); both must be given, the key
must match the certificate and be readable by the server user only.

Without them ``fwserver serve`` makes a self-signed certificate in
``<data-dir>/tls/`` on first start (EC P-256, SHA-256, SAN ``localhost``,
``127.0.0.1`` and ``::1``, plus the configured host) and reuses it until it
nears expiry. The certificate is its own trust anchor: clients are given
``server.crt`` as their CA file. It is an end-entity certificate
(``CA:FALSE``, ``serverAuth`` only), so a stolen server key can impersonate
this server and nothing else, even for a client that trusts the file.
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from repo_metadata.files import atomic_write
from update_server.config import ServerConfig

TLS_DIR = "tls"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"
#: A self-signed certificate lives a year and is replaced 30 days before it
#: expires (clients that pinned the old file must be given the new one).
VALIDITY = timedelta(days=365)
RENEW_BEFORE = timedelta(days=30)
#: Tolerate clients whose clock is a little behind the server's.
BACKDATE = timedelta(minutes=5)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


class TlsError(RuntimeError):
    """The certificate or key cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class TlsFiles:
    """What gunicorn loads, and what clients must trust."""

    cert: Path
    key: Path
    #: The file to give clients as their CA (``--ca``): the self-signed
    #: certificate itself, or the configured certificate.
    ca: Path
    generated: bool = False


def server_tls(config: ServerConfig, *, now: datetime | None = None) -> TlsFiles:
    """The configured certificate, or the self-signed one (made if needed)."""
    now = now or datetime.now(UTC)
    if config.tls_cert is not None or config.tls_key is not None:
        return configured_tls(config.tls_cert, config.tls_key, now=now)
    names = list(DEFAULT_NAMES)
    if config.host not in WILDCARD_HOSTS and config.host not in names:
        names.append(config.host)
    return self_signed_tls(config.data_dir / TLS_DIR, names=names, now=now)


def configured_tls(cert: Path | None, key: Path | None, *, now: datetime) -> TlsFiles:
    """Check a configured certificate and key before gunicorn loads them."""
    if cert is None or key is None:
        raise TlsError("set both tls_cert and tls_key, or neither for a self-signed certificate")
    certificate = _read_certificate(cert)
    private_key = _read_key(key)
    if _public_bytes(certificate.public_key()) != _public_bytes(private_key.public_key()):
        raise TlsError(f"tls_key {key} is not the key of tls_cert {cert}")
    if certificate.not_valid_after_utc <= now:
        raise TlsError(f"tls_cert {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    return TlsFiles(cert=cert, key=key, ca=cert)


def self_signed_tls(directory: Path, *, names: Sequence[str], now: datetime) -> TlsFiles:
    """Reuse the certificate in ``directory`` if still good for ``names``, else make one."""
    files = TlsFiles(cert=directory / CERT_FILE, key=directory / KEY_FILE, ca=directory / CERT_FILE)
    if files.cert.is_file() and files.key.is_file() and _still_good(files, names, now):
        return files
    generate_self_signed(directory, names=names, now=now)
    return TlsFiles(cert=files.cert, key=files.key, ca=files.ca, generated=True)


def generate_self_signed(directory: Path, *, names: Sequence[str], now: datetime) -> None:
    """Write a new key (0600) and self-signed certificate into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fwupdate"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"fwserver self-signed ({names[0]})"),
        ]
    )
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(list(_general_names(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a certificate on disk always has its key beside it.
    atomic_write(directory / KEY_FILE, key_pem, mode=0o600)
    atomic_write(directory / CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM))


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate, to compare out of band with what a client was given."""
    digest = _read_certificate(cert).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def _key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(names: Iterable[str]) -> Iterable[x509.GeneralName]:
    for name in names:
        try:
            yield x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            yield x509.DNSName(name)


def _still_good(files: TlsFiles, names: Sequence[str], now: datetime) -> bool:
    try:
        certificate = _read_certificate(files.cert)
        key = _read_key(files.key)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (TlsError, x509.ExtensionNotFound):
        return False
    matches = _public_bytes(certificate.public_key()) == _public_bytes(key.public_key())
    covered = set(_general_names(names)) <= set(san.value)
    return matches and covered and certificate.not_valid_after_utc - now > RENEW_BEFORE


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise TlsError(f"cannot read certificate {path}: {exc.strerror}") from None
    except ValueError:
        raise TlsError(f"{path} is not a PEM certificate") from None


def _read_key(path: Path) -> PrivateKeyTypes:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read TLS key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise TlsError(f"TLS key {path} is readable by others; chmod 600 it")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError):
        raise TlsError(f"{path} is not an unencrypted PEM private key") from None


def _public_bytes(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
