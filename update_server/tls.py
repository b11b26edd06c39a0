"""The server's TLS: a long-lived CA that devices trust, short-lived leaves it issues.

Rules (R26 secure communications, R5 return to secure operation):

- T1 Devices trust a CA, never a leaf. ``fwserver init`` (or the first
  ``serve`` of an older data directory) makes ``<data-dir>/tls/ca.crt`` and its
  key ``ca.key`` (0600, directory 0700): EC P-256, ten years, ``CA:TRUE``
  path length 0, ``keyCertSign``/``cRLSign`` only. Devices are provisioned
  with ``ca.crt`` (``--ca``).
- T2 The served certificate ``server.crt`` is a leaf the CA issues: a new EC
  P-256 key, 90 days, ``CA:FALSE``, ``digitalSignature``, ``serverAuth``
  only, SAN ``localhost``, ``127.0.0.1``, ``::1`` and the configured host; it
  never outlives the CA. A stolen leaf key impersonates this server only.
- T3 Renewal re-issues the leaf from the same CA when fewer than 30 days are
  left or the names changed: at every start of ``serve``, and in the running
  server before a handshake would need it (``LeafKeeper``). A device that
  trusts ``ca.crt`` never notices.
- T4 The CA is never replaced silently: a ``ca.crt`` without its key, a key
  that is not the CA's, or an expired CA stops the server with what to do.
  A new CA means provisioning every device again.
- T5 Every certificate served or chained to is warned about before it expires
  (``expiry_warnings``): a leaf 30 days before (fwserver renews its own), the
  CA devices trust a year before (``CA_WARN_BEFORE``). ``serve`` warns at
  start, with ``--check`` and once a day in its log; ``repo status`` reads the
  same warnings without issuing anything (``served_tls``).
- T6 A configured ``tls_cert``/``tls_key`` (a hospital PKI) is used as given;
  devices are given the CA that issued it. A configured self-signed
  certificate is its own trust anchor and is warned about as a pinned leaf.
- T7 A self-signed ``server.crt`` made by an fwserver before the CA (which
  devices pinned) is served until it is due, then replaced by a leaf of the
  CA: devices have until then to be given ``ca.crt``.
- T8 TLS 1.2 and 1.3 only, TLS 1.2 with ECDHE and AEAD ciphers only (Mozilla
  "intermediate" without DHE): no CBC, no static RSA (``server_profile``).
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import ssl
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fwcommon.files import atomic_write
from update_server.config import ServerConfig

logger = logging.getLogger(__name__)

TLS_DIR = "tls"
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CERT_FILE = "server.crt"
KEY_FILE = "server.key"
LOCK_FILE = ".lock"
#: T1: about a device's service life; a new CA means provisioning every device.
CA_VALIDITY = timedelta(days=3652)
#: T2, T3: short-lived leaves, renewed from the CA 30 days before they expire.
LEAF_VALIDITY = timedelta(days=90)
RENEW_BEFORE = timedelta(days=30)
#: T5: a served leaf renews itself (T3); 30 days is time to fix a renewal that fails.
WARN_BEFORE = timedelta(days=30)
#: T5, R5: the CA devices trust is warned about a year ahead. Replacing it means
#: provisioning every device of the fleet again, each taken out of clinical use
#: in turn by a technician; 30 days is far too short for that.
CA_WARN_BEFORE = timedelta(days=365)
#: A self-signed certificate of an fwserver before the CA (T7, and test stand-ins).
VALIDITY = timedelta(days=365)
#: Tolerate clients whose clock is a little behind the server's.
BACKDATE = timedelta(minutes=5)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind
MIN_TLS = ssl.TLSVersion.TLSv1_2
#: T8: TLS 1.2 suites of Mozilla's "intermediate" profile with forward secrecy
#: by ECDHE; TLS 1.3 suites are all AEAD and stay OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

_Context = TypeVar("_Context")


class TlsError(RuntimeError):
    """The certificate or key cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class TlsFiles:
    """What gunicorn loads, and what devices must trust."""

    cert: Path
    key: Path
    #: The file devices are given as ``--ca``; None when the issuer of a
    #: configured certificate is not in a file fwserver knows (T6).
    ca: Path | None
    generated: bool = False
    #: Issued and renewed by fwserver from ``ca`` (T3); False for a configured
    #: certificate and for a self-signed one kept for pinned devices (T7).
    managed: bool = False


def server_profile(context: ssl.SSLContext) -> ssl.SSLContext:
    """T8: restrict a server context to TLS 1.2+ with ECDHE and AEAD ciphers."""
    context.minimum_version = MIN_TLS
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_names(config: ServerConfig) -> tuple[str, ...]:
    """The names a managed leaf is issued for: loopback, and the configured host."""
    names = list(DEFAULT_NAMES)
    if config.host not in WILDCARD_HOSTS and config.host not in names:
        names.append(config.host)
    return tuple(names)


def certificate_names(config: ServerConfig) -> tuple[str, ...]:
    """Loopback and the names the served certificate is valid for: the default trusted hosts.

    A configured ``tls_cert``: its subjectAltName's DNS names and addresses
    (``*.example.org`` as werkzeug's ``.example.org``); else the names
    fwserver issues its own leaf for (``server_names``).
    """
    if config.tls_cert is None:
        return server_names(config)
    try:
        san = _read_certificate(config.tls_cert).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return DEFAULT_NAMES
    dns = [name.removeprefix("*") for name in san.value.get_values_for_type(x509.DNSName)]
    addresses = [str(address) for address in san.value.get_values_for_type(x509.IPAddress)]
    return tuple(dict.fromkeys((*DEFAULT_NAMES, *dns, *addresses)))


def server_tls(config: ServerConfig, *, now: datetime) -> TlsFiles:
    """The configured certificate, or the CA's current leaf (issued if due)."""
    if config.tls_cert is not None or config.tls_key is not None:
        return configured_tls(config.tls_cert, config.tls_key, now=now)
    return managed_tls(config.data_dir / TLS_DIR, names=server_names(config), now=now)


def served_tls(config: ServerConfig, *, now: datetime) -> TlsFiles:
    """T5 for ``repo status``: the files as they are, read only; nothing made or issued.

    A status command may run as another user than the server: writing here
    could leave a key the server cannot read. A leaf that is due stays as it
    is (a running server renews it, T3) and is warned about as due.
    """
    if config.tls_cert is not None or config.tls_key is not None:
        return configured_tls(config.tls_cert, config.tls_key, now=now)
    directory = config.data_dir / TLS_DIR
    cert, ca = directory / CERT_FILE, directory / CA_CERT_FILE
    if not ca.exists() and not (directory / CA_KEY_FILE).exists():
        raise TlsError(f"no TLS CA in {directory} yet: 'fwserver serve --check' makes it")
    ca_cert, _key = _ca_in(directory, now=now)
    if not cert.exists():
        raise TlsError(f"no TLS certificate yet: 'fwserver serve --check' issues {cert}")
    managed = _issued_by(_read_certificate(cert), ca_cert)
    return TlsFiles(cert, directory / KEY_FILE, ca, managed=managed)


def configured_tls(cert: Path | None, key: Path | None, *, now: datetime) -> TlsFiles:
    """T6: check a configured certificate and key before gunicorn loads them."""
    if cert is None or key is None:
        raise TlsError("set both tls_cert and tls_key, or neither for fwserver's own CA")
    chain = _read_chain(cert)
    private_key = _read_key(key)
    if _public_bytes(chain[0].public_key()) != _public_bytes(private_key.public_key()):
        raise TlsError(f"tls_key {key} is not the key of tls_cert {cert}")
    if chain[0].not_valid_after_utc <= now:
        raise TlsError(f"tls_cert {cert} expired on {chain[0].not_valid_after_utc:%Y-%m-%d}")
    anchor = cert if _self_issued(chain[-1]) else None
    return TlsFiles(cert=cert, key=key, ca=anchor)


def managed_tls(directory: Path, *, names: Sequence[str], now: datetime) -> TlsFiles:
    """T1-T4, T7: the CA (made if there is none) and a leaf good for ``names`` at ``now``."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    with _locked(directory, exclusive=True):
        ca_cert, ca_key = _ca(directory, now=now)
        files = TlsFiles(directory / CERT_FILE, directory / KEY_FILE, directory / CA_CERT_FILE)
        kept = _current_leaf(files, ca_cert, names=names, now=now)
        if kept is not None:
            return kept
        _write_leaf(directory, ca_cert, ca_key, names=names, now=now)
        logger.info("issued a TLS certificate from the CA for %s", ", ".join(names))
        return TlsFiles(files.cert, files.key, files.ca, generated=True, managed=True)


def make_ca(directory: Path, *, now: datetime) -> Path:
    """T1: the CA devices trust, made once in ``directory`` (never over an existing one)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    with _locked(directory, exclusive=True):
        _ca(directory, now=now)
    return directory / CA_CERT_FILE


def issue_leaf(directory: Path, *, names: Sequence[str], now: datetime) -> Path:
    """A new leaf from the CA in ``directory``, due or not (``managed_tls`` renews when due)."""
    with _locked(directory, exclusive=True):
        ca_cert, ca_key = _ca_in(directory, now=now)
        _write_leaf(directory, ca_cert, ca_key, names=names, now=now)
    return directory / CERT_FILE


@dataclass
class LeafKeeper:
    """T3 in a running server: before a handshake, the leaf is renewed if it is due.

    gunicorn builds a TLS context for each connection from the files on disk;
    ``load`` runs that build under a shared lock, so it never reads a new key
    beside the old certificate. The CA and the leaf are read again only when
    the leaf is due or once a day (when the warnings of T5 are logged again).
    """

    directory: Path
    names: tuple[str, ...]
    clock: Callable[[], datetime]
    _next_check: datetime | None = field(default=None, init=False)

    def load(self, build: Callable[[], _Context]) -> _Context:
        now = self.clock()
        if self._next_check is None or now >= self._next_check:
            self._next_check = self._check(now)
        with _locked(self.directory, exclusive=False):
            return build()

    def _check(self, now: datetime) -> datetime:
        try:
            files = managed_tls(self.directory, names=self.names, now=now)
        except TlsError as exc:
            logger.error("TLS certificate not renewed: %s", exc)  # noqa: TRY400 - no traceback
            return now + timedelta(hours=1)
        for warning in expiry_warnings(files, now=now):
            logger.warning("%s", warning)
        due = _read_certificate(files.cert).not_valid_after_utc - RENEW_BEFORE
        return min(max(due, now + timedelta(minutes=1)), now + timedelta(days=1))


@dataclass(frozen=True)
class Expiring:
    """T5: a certificate served or chained to that expires within its notice, and what to do."""

    role: str
    #: The certificate's SHA-256 fingerprint (hex): which one, for an alert raised once.
    fingerprint: str
    not_after: datetime
    message: str


def expiring(files: TlsFiles, *, now: datetime) -> list[Expiring]:
    """T5: the certificates within their notice (``WARN_BEFORE``, ``CA_WARN_BEFORE``)."""
    return [
        Expiring(
            role,
            _digest(certificate).hex(),
            certificate.not_valid_after_utc,
            _expiry_warning(role, certificate, files, now),
        )
        for role, certificate in _certificates(files)
        if certificate.not_valid_after_utc - now <= _warn_before(role)
    ]


def expiry_warnings(files: TlsFiles, *, now: datetime) -> list[str]:
    """T5, T6, T7: one line for each certificate served or chained to that needs action."""
    warnings = [found.message for found in expiring(files, now=now)]
    leaf = _read_certificate(files.cert)
    if not files.managed and _self_issued(leaf):
        warnings.append(_pinned_warning(files, leaf))
    return warnings


def status_line(files: TlsFiles, *, now: datetime) -> str:
    """One line for the operator: until when the served certificate and its CA are good."""
    leaf = _read_chain(files.cert)[0]
    line = f"TLS certificate valid until {_day(leaf)} ({_days_left(leaf, now)} days)"
    if files.managed:
        line += f", renewed from the CA {RENEW_BEFORE.days} days before"
    if files.ca is not None and files.ca != files.cert:
        anchor = _read_chain(files.ca)[-1]
        line += f"; CA valid until {_day(anchor)} ({_days_left(anchor, now)} days)"
    return line


def fingerprint(cert: Path) -> str:
    """SHA-256 of the certificate, to compare out of band with what a device was given."""
    digest = _read_certificate(cert).fingerprint(hashes.SHA256())
    return ":".join(f"{byte:02X}" for byte in digest)


def generate_self_signed(directory: Path, *, names: Sequence[str], now: datetime) -> None:
    """A self-signed leaf (``CA:FALSE``, ``serverAuth``) and its key in ``directory``.

    What fwserver served before it had a CA (T7); tests use it as a stand-in
    server certificate that is its own trust anchor.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(f"fwserver self-signed ({names[0]})")
    builder = _leaf_builder(key.public_key(), names=names, now=now, not_after=now + VALIDITY)
    certificate = (
        builder.issuer_name(subject)
        .subject_name(subject)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_pair(directory / KEY_FILE, key, directory / CERT_FILE, certificate)


def _ca(directory: Path, *, now: datetime) -> tuple[x509.Certificate, PrivateKeyTypes]:
    if not (directory / CA_CERT_FILE).exists() and not (directory / CA_KEY_FILE).exists():
        _write_ca(directory, now=now)
        logger.info("made the TLS CA %s", directory / CA_CERT_FILE)
    return _ca_in(directory, now=now)


def _ca_in(directory: Path, *, now: datetime) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """T4: the CA in ``directory``, complete and valid, or what to do about it."""
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if not key_path.exists():
        raise TlsError(
            f"the TLS CA key {key_path} is missing: restore it from a backup (devices trust"
            f" {cert_path}); making a new CA means provisioning every device again"
        )
    certificate, key = _read_certificate(cert_path), _read_key(key_path)
    if _public_bytes(certificate.public_key()) != _public_bytes(key.public_key()):
        raise TlsError(f"{key_path} is not the key of the TLS CA {cert_path}")
    if certificate.not_valid_after_utc <= now:
        raise TlsError(
            f"the TLS CA {cert_path} expired on {_day(certificate)}: move {directory} aside,"
            " start the server to make a new CA, and provision every device with it"
        )
    return certificate, key


def _write_ca(directory: Path, *, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    identifier = x509.SubjectKeyIdentifier.from_public_key(public)
    subject = _name(f"fwserver TLS CA {identifier.digest[:4].hex()}")
    usage = _key_usage(digital_signature=False, key_cert_sign=True, crl_sign=True)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(identifier, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(directory / CA_KEY_FILE, key, directory / CA_CERT_FILE, certificate)


def _write_leaf(
    directory: Path,
    ca_cert: x509.Certificate,
    ca_key: PrivateKeyTypes,
    *,
    names: Sequence[str],
    now: datetime,
) -> None:
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"the TLS CA key in {directory} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)
    builder = _leaf_builder(key.public_key(), names=names, now=now, not_after=not_after)
    ca_identifier = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    certificate = (
        builder.issuer_name(ca_cert.subject)
        .subject_name(_name(f"fwserver ({names[0]})"))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_identifier.value),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(directory / KEY_FILE, key, directory / CERT_FILE, certificate)


def _leaf_builder(
    public: ec.EllipticCurvePublicKey, *, names: Sequence[str], now: datetime, not_after: datetime
) -> x509.CertificateBuilder:
    usage = _key_usage(digital_signature=True, key_cert_sign=False, crl_sign=False)
    return (
        x509.CertificateBuilder()
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(list(_general_names(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _write_pair(
    key_path: Path, key: ec.EllipticCurvePrivateKey, cert_path: Path, cert: x509.Certificate
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key first: a certificate on disk always has its key beside it.
    atomic_write(key_path, key_pem, mode=0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _current_leaf(
    files: TlsFiles, ca_cert: x509.Certificate, *, names: Sequence[str], now: datetime
) -> TlsFiles | None:
    """The leaf on disk if it may still be served (T3, T7), else None."""
    try:
        certificate = _read_certificate(files.cert)
        key = _read_key(files.key)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (TlsError, x509.ExtensionNotFound):
        return None
    if _public_bytes(certificate.public_key()) != _public_bytes(key.public_key()):
        return None
    if not set(_general_names(names)) <= set(san.value):
        return None
    if _issued_by(certificate, ca_cert):
        due = _due(certificate.not_valid_after_utc, ca_cert.not_valid_after_utc, now)
        return None if due else TlsFiles(files.cert, files.key, files.ca, managed=True)
    if _self_issued(certificate) and certificate.not_valid_after_utc - now > RENEW_BEFORE:
        return TlsFiles(files.cert, files.key, files.ca)
    return None


def _due(leaf_after: datetime, ca_after: datetime, now: datetime) -> bool:
    # A leaf cut short by its CA's expiry is not due: a new one would be no longer.
    return leaf_after - now <= RENEW_BEFORE and leaf_after < ca_after


def _issued_by(certificate: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _self_issued(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject and _issued_by(certificate, certificate)


def _certificates(files: TlsFiles) -> Iterator[tuple[str, x509.Certificate]]:
    """The certificates served, then those of the CA file, each once, with its role.

    "CA" is a self-issued certificate of the CA file, the anchor devices trust
    (also when a configured chain serves it); the served leaf itself, even
    self-signed and pinned (T6), and intermediates are "served".
    """
    served = _read_chain(files.cert)
    trusted = [] if files.ca is None else _read_chain(files.ca)
    anchors = {_digest(c) for c in trusted if _self_issued(c)} - {_digest(served[0])}
    seen: set[bytes] = set()
    for certificate in served + trusted:
        digest = _digest(certificate)
        if digest not in seen:
            seen.add(digest)
            yield ("CA" if digest in anchors else "served"), certificate


def _digest(certificate: x509.Certificate) -> bytes:
    return certificate.fingerprint(hashes.SHA256())


def _warn_before(role: str) -> timedelta:
    return CA_WARN_BEFORE if role == "CA" else WARN_BEFORE


def _expiry_warning(
    role: str, certificate: x509.Certificate, files: TlsFiles, now: datetime
) -> str:
    day = _day(certificate)
    if certificate.not_valid_after_utc <= now:
        when, by = f"expired on {day}", "now"
    else:
        when, by = f"expires on {day} ({_days_left(certificate, now)} days)", "before then"
    todo = _what_to_do(role, certificate, files, now=now, by=by)
    return f'TLS {role} certificate "{_common_name(certificate)}" {when}: {todo}'


def _what_to_do(
    role: str, certificate: x509.Certificate, files: TlsFiles, *, now: datetime, by: str
) -> str:
    if role == "CA":
        return f"devices must be given a new CA {by}: make one and provision every device with it"
    if not files.managed:
        return f"install a renewed certificate (tls_cert, tls_key) {by}"
    ca_after = None if files.ca is None else _read_certificate(files.ca).not_valid_after_utc
    if ca_after is not None and _due(certificate.not_valid_after_utc, ca_after, now):
        # Read as it is on disk (served_tls): no server has renewed it (T3).
        return (
            "its renewal from the CA is due: start 'fwserver serve' or run 'fwserver serve --check'"
        )
    return "it cannot outlive its CA: devices must be given a new CA"


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def _pinned_warning(files: TlsFiles, leaf: x509.Certificate) -> str:
    if files.ca == files.cert:
        return (
            f"TLS certificate {files.cert} is self-signed and devices trust it as their CA:"
            " they lose the server when it is replaced; configure a certificate issued by a CA"
            " and give devices that CA"
        )
    replaced = leaf.not_valid_after_utc - RENEW_BEFORE
    return (
        f"TLS certificate {files.cert} is the self-signed one of an earlier fwserver, which"
        f" devices may trust as their CA: give them {files.ca} before {replaced:%Y-%m-%d},"
        " when a certificate of that CA replaces it"
    )


def _days_left(certificate: x509.Certificate, now: datetime) -> int:
    return (certificate.not_valid_after_utc - now).days


def _day(certificate: x509.Certificate) -> str:
    return f"{certificate.not_valid_after_utc:%Y-%m-%d}"


@contextmanager
def _locked(directory: Path, *, exclusive: bool) -> Iterator[None]:
    """Workers renewing at once issue one leaf; a reader never sees half a pair."""
    with (directory / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fwupdate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, digital_signature: bool, key_cert_sign: bool, crl_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(names: Iterable[str]) -> Iterable[x509.GeneralName]:
    for name in names:
        try:
            yield x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            yield x509.DNSName(name)


def _read_certificate(path: Path) -> x509.Certificate:
    return _read_chain(path)[0]


def _read_chain(path: Path) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise TlsError(f"cannot read certificate {path}: {exc.strerror}") from None
    except ValueError:
        raise TlsError(f"{path} is not a PEM certificate") from None
    return chain


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
