"""The decision on a signed device request (RFC 9421): pure, no I/O, the clock passed in.

The profile (what is covered, the label, the tag, the algorithms) is
``fwcommon.message_signatures`` (S1, S2), which the client signs with.
Rules, each refused with its own ``Refusal`` (the audit entry's reason):

- D1 A device request carries exactly one ``device`` signature (tag
  ``fwupdate-device``) in ``Signature-Input`` and ``Signature``; without:
  ``unsigned``; one that cannot be parsed, or lacks ``keyid``, ``created``
  or ``nonce``: ``malformed``.
- D2 The signature verifies with the key registered for its ``keyid`` (the
  device id), by the algorithm of that key (never one the request names),
  and covers ``@method``, ``@path``, ``@query`` and ``content-digest``:
  else ``bad-signature``.
- D3 The body is the one the signed digest names (SHA-256): else
  ``body-digest``. Checked after D2, so the digest is the device's.
- D4 ``created`` lies within the skew window either side of the server's
  clock, and ``expires``, if given, is not past: else ``stale`` (R25).
- D5 The nonce has not been seen for this device within the window
  (``authentication`` keeps them, atomically across workers): else
  ``replayed`` (R25).
- D6 Only an accepted device is let through: ``unknown-device``,
  ``pending``, ``rejected``, ``decommissioned`` (R62: revoked at once).
  The state is told only once the signature verified, so it answers no one
  but the key's holder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver
from http_message_signatures.digests import ContentDigest
from http_message_signatures.exceptions import HTTPMessageSignaturesException, InvalidSignature
from http_sf.compat import InnerList
from securesystemslib.signer import Key

from fwcommon.message_signatures import (
    COVERED,
    LABEL,
    TAG,
    Message,
    UnsupportedKeyError,
    algorithm_for,
    crypto_public_key,
)

MAX_NONCE = 128


class Refusal(StrEnum):
    """Why a device request was refused (401), as its audit entry says."""

    UNSIGNED = "unsigned device request"
    MALFORMED = "malformed device signature"
    UNKNOWN_DEVICE = "unknown device"
    BAD_SIGNATURE = "bad device signature"
    BODY_DIGEST = "body does not match its signed digest"
    STALE = "signature created outside the skew window"
    REPLAYED = "nonce replayed"
    PENDING = "device not accepted yet"
    REJECTED = "device rejected"
    DECOMMISSIONED = "device decommissioned"


_UNKNOWN_OR_BAD = (
    "no device registered under this id verifies this signature: a device that never"
    " registered runs 'fwclient register'"
)

#: What the device is told (the 401's detail): what was wrong and what to do.
ADVICE: Mapping[Refusal, str] = {
    Refusal.UNSIGNED: "device routes need an RFC 9421 signature by the device key",
    Refusal.MALFORMED: "the device signature cannot be read (keyid, created and nonce needed)",
    # One answer for both, so that an unsigned caller cannot tell registered ids from
    # others (D6); the audit entry keeps which it was.
    Refusal.UNKNOWN_DEVICE: _UNKNOWN_OR_BAD,
    Refusal.BAD_SIGNATURE: _UNKNOWN_OR_BAD,
    Refusal.BODY_DIGEST: "the body does not match its signed Content-Digest",
    Refusal.STALE: "the signature's created time is outside the server's window:"
    " check the device clock",
    Refusal.REPLAYED: "this request was seen before (nonce replayed)",
    Refusal.PENDING: "the device is registered and waits for an administrator to accept it",
    Refusal.REJECTED: "the device was rejected",
    Refusal.DECOMMISSIONED: "the device was decommissioned; its key is revoked",
}


class DeviceRequestRefused(Exception):  # noqa: N818 - a refusal, named as the others
    """A device request is refused (401); ``reason`` is the rule it failed."""

    def __init__(self, reason: Refusal, *, device_id: str | None = None) -> None:
        super().__init__(ADVICE[reason])
        self.reason = reason
        #: The device, once its signature verified (the audit entry's actor).
        self.device_id = device_id


@dataclass(frozen=True)
class SignedRequest:
    """A verified device request: who signed it, its nonce and when."""

    device_id: str
    nonce: str
    created: datetime


def claimed_device(headers: Mapping[str, str]) -> str:
    """The ``keyid`` the request's ``device`` signature names (D1); not yet verified."""
    params = _signature_params(headers)
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or not keyid:
        raise DeviceRequestRefused(Refusal.MALFORMED)
    return keyid


def verify(
    message: Message,
    *,
    body: bytes,
    key: Key,
    device_id: str,
    now: datetime,
    skew: timedelta,
) -> SignedRequest:
    """Verify ``message`` as a request of ``device_id`` signed by ``key`` (D1-D4)."""
    params = _signature_params(message.headers)
    nonce, created = params.get("nonce"), params.get("created")
    if params.get("keyid") != device_id or not isinstance(nonce, str) or type(created) is not int:
        raise DeviceRequestRefused(Refusal.MALFORMED)
    if not nonce or len(nonce) > MAX_NONCE:
        raise DeviceRequestRefused(Refusal.MALFORMED)
    try:
        verifier = _Verifier(signature_algorithm=algorithm_for(key), key_resolver=_OneKey(key))
        results = verifier.verify(message, max_age=None, expect_tag=TAG, require_components=COVERED)
    except (InvalidSignature, HTTPMessageSignaturesException, UnsupportedKeyError):
        raise DeviceRequestRefused(Refusal.BAD_SIGNATURE) from None
    if len(results) != 1:
        raise DeviceRequestRefused(Refusal.MALFORMED)
    _check_digest(message.headers, body)
    when = datetime.fromtimestamp(created, tz=UTC)
    expires = params.get("expires")
    if abs(now - when) > skew or (type(expires) is int and expires < now.timestamp()):
        raise DeviceRequestRefused(Refusal.STALE, device_id=device_id)
    return SignedRequest(device_id, nonce, when)


def _signature_params(headers: Mapping[str, str]) -> dict[str, Any]:
    """The parameters of the one ``device`` signature (D1)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if "signature-input" not in lowered or "signature" not in lowered:
        raise DeviceRequestRefused(Refusal.UNSIGNED)
    # The library's own strict parser (duplicate labels refused).
    parse = HTTPMessageVerifier._parse_signature_dictionary
    try:
        inputs = parse(lowered["signature-input"])
    except (HTTPMessageSignaturesException, ValueError, TypeError):
        raise DeviceRequestRefused(Refusal.MALFORMED) from None
    member = inputs.get(LABEL)
    if len(inputs) != 1 or not isinstance(member, InnerList):
        raise DeviceRequestRefused(Refusal.MALFORMED)
    return dict(member.params)


def _check_digest(headers: Mapping[str, str], body: bytes) -> None:
    """D3: the body is the one the (signed) Content-Digest names."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        ContentDigest.verify(lowered.get("content-digest", ""), body)
    except (InvalidSignature, HTTPMessageSignaturesException, ValueError):
        raise DeviceRequestRefused(Refusal.BODY_DIGEST) from None


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, with time checked by ``verify`` on the server's clock (D4)."""

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        """No-op: the library would read the wall clock; D4 uses the injected one."""


class _OneKey(HTTPSignatureKeyResolver):
    """Resolves only the registered key (D2): the request cannot name another one."""

    def __init__(self, key: Key) -> None:
        self._key = crypto_public_key(key)

    def resolve_public_key(self, key_id: str) -> Any:
        return self._key

    def resolve_private_key(self, key_id: str) -> Any:
        raise NotImplementedError("verification only")
