"""How a webhook's alert is signed, and how its receiver checks it (R31). Pure: no I/O.

Every delivery attempt sends the alert's JSON body with three headers::

    X-FW-Alert-Id:  <the alert id: the same for every attempt of one alert>
    X-FW-Timestamp: <Unix time of this attempt, whole seconds>
    X-FW-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

Rules (a receiver applies ``verify``, or its own copy of these five lines):

* S1 The MAC covers the timestamp and the exact body bytes, so neither can
  be changed without the secret; the alert id is inside the body too
  (``"id"``), so it is covered as well.
* S2 The receiver refuses a timestamp further than ``tolerance`` (five
  minutes by default) from its own clock: a captured request cannot be
  replayed later. Within the tolerance, a replay is an alert id already
  seen, which the receiver dedups anyway (each retry is signed anew).
* S3 The comparison is constant-time (``hmac.compare_digest``).
* S4 The secret is at least ``MIN_SECRET_BYTES`` long; it is never logged,
  and never in a header or the body.

A receiver in Python::

    from update_server.alerts.signing import verify, AlertSignatureError
    try:
        verify(secret, body=raw_body, timestamp=headers["X-FW-Timestamp"],
               signature=headers["X-FW-Signature"], now=time.time())
    except AlertSignatureError:
        return 401
    if alert_id_seen(json.loads(raw_body)["id"]):
        return 200          # delivered before: acknowledge, do nothing
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

ALERT_ID_HEADER: Final = "X-FW-Alert-Id"
TIMESTAMP_HEADER: Final = "X-FW-Timestamp"
SIGNATURE_HEADER: Final = "X-FW-Signature"
VERSION: Final = "v1"
#: S2: how far from the receiver's clock a timestamp may be.
DEFAULT_TOLERANCE: Final = 300
#: S4: 256 bits, the MAC's own strength.
MIN_SECRET_BYTES: Final = 32


class AlertSignatureError(ValueError):
    """An alert's signature does not hold: refuse the request (the message says why)."""


def signed_bytes(timestamp: int, body: bytes) -> bytes:
    """S1: what the MAC covers."""
    return f"{timestamp}.".encode() + body


def sign(secret: bytes, *, timestamp: int, body: bytes) -> str:
    """The ``X-FW-Signature`` value of ``body`` sent at ``timestamp``."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret has at least {MIN_SECRET_BYTES} bytes")
    digest = hmac.new(secret, signed_bytes(timestamp, body), hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"


def headers(secret: bytes, *, alert_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header one delivery attempt sends."""
    return {
        "Content-Type": "application/json",
        ALERT_ID_HEADER: alert_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp=timestamp, body=body),
    }


def verify(
    secret: bytes,
    *,
    body: bytes,
    timestamp: str,
    signature: str,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Raise ``AlertSignatureError`` unless ``signature`` holds for ``body`` sent at ``timestamp``
    and ``timestamp`` is within ``tolerance`` seconds of ``now`` (S1-S3)."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise AlertSignatureError(f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    sent = int(timestamp)
    if abs(now - sent) > tolerance:
        raise AlertSignatureError(
            f"{TIMESTAMP_HEADER} is {now - sent:.0f} s from this receiver's clock"
            f" (at most {tolerance} s): a replay, or a clock to fix"
        )
    version, _, given = signature.partition("=")
    if version != VERSION or not given:
        raise AlertSignatureError(f"{SIGNATURE_HEADER} is not {VERSION}=<hex>")
    expected = sign(secret, timestamp=sent, body=body).partition("=")[2]
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise AlertSignatureError("the signature does not match the body and timestamp")
