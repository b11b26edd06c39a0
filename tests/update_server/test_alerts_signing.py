"""A webhook's alert is signed over "<timestamp>.<body>" (R31, ``alerts.signing`` S1-S4).

The expected MAC is computed here with ``hmac`` directly, not through the
module under test; each refusal is named after the attack it stops.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from update_server.alerts.signing import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertSignatureError,
    headers,
    sign,
    verify,
)

SECRET = b"s" * 32
BODY = b'{"id":"12-00aa","class":"lockout"}'
SENT = 1_900_000_000


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_s1_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    assert sign(SECRET, timestamp=SENT, body=BODY) == f"v1={_mac(SECRET, SENT, BODY)}"


def test_s1_the_headers_carry_alert_id_timestamp_and_signature() -> None:
    sent = headers(SECRET, alert_id="12-00aa", timestamp=SENT, body=BODY)
    assert sent[ALERT_ID_HEADER] == "12-00aa"
    assert sent[TIMESTAMP_HEADER] == str(SENT)
    assert sent[SIGNATURE_HEADER] == f"v1={_mac(SECRET, SENT, BODY)}"
    assert SECRET.decode() not in "".join(sent.values())  # S4


def test_a_signature_made_now_verifies() -> None:
    signature = sign(SECRET, timestamp=SENT, body=BODY)
    verify(SECRET, body=BODY, timestamp=str(SENT), signature=signature, now=SENT + 10)


def test_s1_a_tampered_body_is_refused() -> None:
    signature = sign(SECRET, timestamp=SENT, body=BODY)
    with pytest.raises(AlertSignatureError, match="does not match"):
        verify(
            SECRET,
            body=BODY.replace(b"lockout", b"routine"),
            timestamp=str(SENT),
            signature=signature,
            now=SENT,
        )


def test_s1_a_timestamp_moved_forward_to_pass_the_window_is_refused() -> None:
    """A captured request re-sent with a fresh timestamp: the MAC covers the timestamp."""
    signature = sign(SECRET, timestamp=SENT, body=BODY)
    later = SENT + 3600
    with pytest.raises(AlertSignatureError, match="does not match"):
        verify(SECRET, body=BODY, timestamp=str(later), signature=signature, now=later)


def test_s2_an_old_request_replayed_is_refused() -> None:
    signature = sign(SECRET, timestamp=SENT, body=BODY)
    with pytest.raises(AlertSignatureError, match="replay"):
        verify(SECRET, body=BODY, timestamp=str(SENT), signature=signature, now=SENT + 301)


def test_s2_a_timestamp_from_the_future_is_refused() -> None:
    signature = sign(SECRET, timestamp=SENT, body=BODY)
    with pytest.raises(AlertSignatureError):
        verify(SECRET, body=BODY, timestamp=str(SENT), signature=signature, now=SENT - 301)


def test_s1_another_secret_is_refused() -> None:
    signature = sign(b"t" * 32, timestamp=SENT, body=BODY)
    with pytest.raises(AlertSignatureError, match="does not match"):
        verify(SECRET, body=BODY, timestamp=str(SENT), signature=signature, now=SENT)


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        ("", "v1=00"),
        ("-5", "v1=00"),
        ("1e9", "v1=00"),
        (str(SENT), ""),
        (str(SENT), "v2=" + "00" * 32),
        (str(SENT), _mac(SECRET, SENT, BODY)),  # no version prefix
    ],
)
def test_malformed_headers_are_refused_not_crashed_on(timestamp: str, signature: str) -> None:
    with pytest.raises(AlertSignatureError):
        verify(SECRET, body=BODY, timestamp=timestamp, signature=signature, now=SENT)


def test_s4_a_short_secret_is_refused_when_signing() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        sign(b"short", timestamp=SENT, body=BODY)
