"""The device request signature profile (RFC 9421), shared by the signing
client and the verifying server: one rule, one home.

Rules:

- S1 A device signs every request with the key it registered: one signature
  labelled ``device``, tagged ``fwupdate-device``, covering ``@method``,
  ``@path``, ``@query`` and ``content-digest`` (SHA-256 of the body, empty
  bodies included), with ``created``, ``nonce`` and ``keyid`` (the device id)
  and ``alg`` (R10, R25: the method, the route, its arguments and the body
  are bound to the key, the time and a one-time nonce).
- S2 The algorithm follows the key: ``ed25519`` for an Ed25519 key,
  ``ecdsa-p256-sha256`` for an ECDSA P-256 key (what a secure element may
  hold only). Any other key cannot sign device requests.
- S3 Signing goes through a securesystemslib ``Signer`` (a file key or a
  PKCS#11 token alike): the profile prepares the signature base, the signer
  signs it, an ECDSA signature is converted from DER to ``r || s``, and the
  profile attaches it.

No I/O, no clock: callers pass the time and the nonce.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from http_message_signatures import HTTPMessageSigner, HTTPSignatureAlgorithm
from http_message_signatures.algorithms import ECDSA_P256_SHA256, ED25519
from securesystemslib.signer import Key, Signer

LABEL = "device"
TAG = "fwupdate-device"
COVERED = ("@method", "@path", "@query", "content-digest")
#: (keytype, scheme) of a securesystemslib key → its RFC 9421 algorithm (S2).
ALGORITHMS: Mapping[tuple[str, str], type[HTTPSignatureAlgorithm]] = {
    ("ed25519", "ed25519"): ED25519,
    ("ecdsa", "ecdsa-sha2-nistp256"): ECDSA_P256_SHA256,
}
NONCE_BYTES = 16


class UnsupportedKeyError(ValueError):
    """The key cannot sign device requests (S2); the message names what can."""


@dataclass
class Message:
    """An HTTP request as the signature library reads it."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


def algorithm_for(key: Key) -> type[HTTPSignatureAlgorithm]:
    """The RFC 9421 algorithm of ``key`` (S2)."""
    algorithm = ALGORITHMS.get((key.keytype, key.scheme))
    if algorithm is None:
        raise UnsupportedKeyError(
            f"a {key.keytype}/{key.scheme} key cannot sign device requests:"
            " use an Ed25519 or an ECDSA P-256 (ecdsa-sha2-nistp256) key"
        )
    return algorithm


def crypto_public_key(key: Key) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    """The ``cryptography`` public key of a supported securesystemslib ``key``."""
    algorithm_for(key)
    public = key.keyval.get("public")
    if not isinstance(public, str):
        raise UnsupportedKeyError("the key has no public value")
    if key.keytype == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(public))
    loaded = load_pem_public_key(public.encode())
    if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(
        loaded.curve, ec.SECP256R1
    ):
        raise UnsupportedKeyError("an ecdsa-sha2-nistp256 key must be a P-256 public key")
    return loaded


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def sign_request(
    message: Message,
    *,
    body: bytes,
    signer: Signer,
    key_id: str,
    created: datetime,
    nonce: str,
) -> None:
    """Add ``Content-Digest``, ``Signature-Input`` and ``Signature`` to ``message`` (S1, S3)."""
    algorithm = algorithm_for(signer.public_key)
    profile = HTTPMessageSigner(signature_algorithm=algorithm)
    prepared = profile.prepare(
        message,
        key_id=key_id,
        created=created,
        nonce=nonce,
        label=LABEL,
        tag=TAG,
        covered_component_ids=COVERED,
        body=body,
    )
    signature = bytes.fromhex(signer.sign(prepared.signature_base).signature)
    if algorithm is ECDSA_P256_SHA256:  # S3: securesystemslib's ECDSA signature is DER
        signature = ECDSA_P256_SHA256.signature_from_der(signature)
    profile.apply(message, prepared, signature)


def signed_headers(
    method: str,
    url: str,
    *,
    body: bytes,
    signer: Signer,
    key_id: str,
    created: datetime,
    nonce: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of a signed request: ``headers`` plus digest and signature."""
    message = Message(method, url, dict(headers or {}))
    sign_request(
        message,
        body=body,
        signer=signer,
        key_id=key_id,
        created=created,
        nonce=nonce if nonce is not None else new_nonce(),
    )
    return message.headers


def signed_json(
    method: str, url: str, body: Any | None, *, signer: Signer, key_id: str, created: datetime
) -> tuple[bytes, dict[str, str]]:
    """A device request's body (compact JSON; empty without ``body``) and its signed headers."""
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    headers = signed_headers(
        method,
        url,
        body=data,
        signer=signer,
        key_id=key_id,
        created=created,
        headers={"Content-Type": "application/json"} if body is not None else None,
    )
    return data, headers


def public_key_dict(key: Key) -> dict[str, Any]:
    """``key`` as registration sends it: keytype, scheme, keyval."""
    data: dict[str, Any] = key.to_dict()
    return data
