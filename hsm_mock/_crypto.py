"""Cryptographic primitives of the token (private to ``hsm_mock``).

Invariants:

* a PIN never encrypts anything directly: Argon2id (memory-hard, parameters
  stored in the token, chosen at init) derives a key-encryption key (KEK) that
  wraps the token's random data-encryption key (DEK) with AES-256-GCM;
* every private key is sealed under the DEK with AES-256-GCM whose associated
  data binds the key's label, purpose, algorithm and public key, so editing
  any of these on disk makes the key unusable;
* private keys exist in clear only as ``cryptography`` objects inside this
  package; no function here returns their bytes except ``seal_private_key``'s
  ciphertext.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from securesystemslib.signer import ECDSA_SHA2_NISTP256, ED25519, SSlibKey

from hsm_mock.errors import KeyIntegrityError, TokenError

DEK_BYTES = 32
NONCE_BYTES = 12
SALT_BYTES = 16
# 64 MiB, 3 passes, 4 lanes: OWASP's Argon2id guidance for interactive logins.
DEFAULT_MEMORY_KIB = 64 * 1024
# Tests may go as low as 8 MiB to stay fast; nothing below is accepted.
MIN_MEMORY_KIB = 8 * 1024
MAX_MEMORY_KIB = 4 * 1024 * 1024

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class Algorithm(StrEnum):
    """Signature algorithms the token generates keys for."""

    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters; out-of-range values (also read from disk) raise."""

    memory_kib: int = DEFAULT_MEMORY_KIB
    iterations: int = 3
    lanes: int = 4

    def __post_init__(self) -> None:
        if not MIN_MEMORY_KIB <= self.memory_kib <= MAX_MEMORY_KIB:
            raise TokenError(
                f"KDF memory must be {MIN_MEMORY_KIB}..{MAX_MEMORY_KIB} KiB, not {self.memory_kib}"
            )
        if not 1 <= self.iterations <= 16 or not 1 <= self.lanes <= 16:
            raise TokenError("KDF iterations and lanes must each be 1..16")


@dataclass(frozen=True)
class Sealed:
    """An AES-GCM ciphertext and the nonce it was made with."""

    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class Wrap:
    """The DEK sealed under a KEK derived from one PIN with ``salt``."""

    salt: bytes
    sealed: Sealed


def _seal(key: bytes, plaintext: bytes, associated_data: bytes) -> Sealed:
    nonce = os.urandom(NONCE_BYTES)
    return Sealed(nonce, AESGCM(key).encrypt(nonce, plaintext, associated_data))


def _derive_kek(pin: str, salt: bytes, params: KdfParams) -> bytes:
    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(pin.encode("utf-8"))


def new_dek() -> bytes:
    """Return a fresh random data-encryption key."""
    return AESGCM.generate_key(bit_length=8 * DEK_BYTES)


def wrap_dek(dek: bytes, pin: str, params: KdfParams, *, role: str) -> Wrap:
    """Seal ``dek`` under KDF(``pin``) with a fresh salt; ``role`` is bound as AD."""
    salt = os.urandom(SALT_BYTES)
    return Wrap(salt, _seal(_derive_kek(pin, salt, params), dek, _wrap_ad(role)))


def unwrap_dek(wrap: Wrap, pin: str, params: KdfParams, *, role: str) -> bytes | None:
    """Return the DEK, or None if ``pin`` is wrong (the AEAD tag does not verify)."""
    kek = _derive_kek(pin, wrap.salt, params)
    try:
        return AESGCM(kek).decrypt(wrap.sealed.nonce, wrap.sealed.ciphertext, _wrap_ad(role))
    except InvalidTag:
        return None


def _wrap_ad(role: str) -> bytes:
    return f"fwhsm/dek-wrap/v1/{role}".encode()


def generate_private_key(algorithm: Algorithm) -> PrivateKey:
    """Generate a new private key for ``algorithm``."""
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def public_key_of(private_key: PrivateKey) -> SSlibKey:
    """Return the securesystemslib public key (default keyid) of ``private_key``."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return SSlibKey.from_crypto(private_key.public_key(), scheme=ED25519)
    return SSlibKey.from_crypto(private_key.public_key(), scheme=ECDSA_SHA2_NISTP256)


def seal_private_key(dek: bytes, private_key: PrivateKey, associated_data: bytes) -> Sealed:
    """Encrypt ``private_key`` (PKCS#8 DER) under the DEK, binding ``associated_data``."""
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _seal(dek, der, associated_data)


def open_private_key(
    dek: bytes, sealed: Sealed, associated_data: bytes, algorithm: Algorithm
) -> PrivateKey:
    """Decrypt a sealed key; raise ``KeyIntegrityError`` if any bound field changed."""
    try:
        der = AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, associated_data)
    except InvalidTag as exc:
        raise KeyIntegrityError(
            "key file was altered on disk (label, purpose, algorithm or key changed); "
            "refusing to use it"
        ) from exc
    key = serialization.load_der_private_key(der, password=None)
    expected = (
        ed25519.Ed25519PrivateKey if algorithm is Algorithm.ED25519 else ec.EllipticCurvePrivateKey
    )
    if not isinstance(key, expected):
        raise KeyIntegrityError(f"sealed key is not an {algorithm.value} key")
    return key


def sign_with(private_key: PrivateKey, payload: bytes) -> bytes:
    """Sign ``payload``: raw Ed25519, or DER ECDSA over SHA-256 (securesystemslib's format)."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(payload)
    return private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
