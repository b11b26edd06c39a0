"""The signed device request decision (devices.signatures, D1-D4), one test per attack (R10, R25).

Requests are signed by the client's profile (fwcommon.message_signatures)
with keys made in the test; the clock is passed in.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from securesystemslib.signer import CryptoSigner, Signer

from fwcommon.keyref import load_signer
from fwcommon.message_signatures import Message, sign_request
from tests.hsm_mock.helpers import USER_PIN
from tests.softhsm import KeyConfig
from update_server.devices.signatures import DeviceRequestRefused, Refusal, claimed_device, verify

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(seconds=60)
URL = "https://updates.example:8443/api/v1/device/reports"
BODY = b'{"running_version": "1.2.0"}'


def _signed(
    signer: Signer, *, body: bytes = BODY, created: datetime = NOW, nonce: str = "n-1"
) -> Message:
    message = Message("POST", URL, {"Content-Type": "application/json"})
    sign_request(message, body=body, signer=signer, key_id="pump-1", created=created, nonce=nonce)
    return message


def _verify(message: Message, signer: Signer, *, body: bytes = BODY) -> str:
    signed = verify(
        message, body=body, key=signer.public_key, device_id="pump-1", now=NOW, skew=SKEW
    )
    return signed.nonce


def _refusal(message: Message, signer: Signer, *, body: bytes = BODY) -> Refusal:
    with pytest.raises(DeviceRequestRefused) as refused:
        _verify(message, signer, body=body)
    return refused.value.reason


@pytest.fixture(params=["ed25519", "ecdsa"])
def signer(request: pytest.FixtureRequest) -> Signer:
    """S2: both algorithms a device key may have (ECDSA P-256: a secure element's)."""
    if request.param == "ed25519":
        return CryptoSigner.generate_ed25519()
    return CryptoSigner.generate_ecdsa()


def test_a_signed_request_verifies_and_names_its_device_and_nonce(signer: Signer) -> None:
    message = _signed(signer)
    assert claimed_device(message.headers) == "pump-1"
    assert _verify(message, signer) == "n-1"


def test_unsigned_request_is_refused_d1() -> None:
    message = Message("POST", URL, {"Content-Type": "application/json"})
    with pytest.raises(DeviceRequestRefused) as refused:
        claimed_device(message.headers)
    assert refused.value.reason is Refusal.UNSIGNED


def test_signature_by_another_key_is_refused_d2(signer: Signer) -> None:
    """Impersonation: a request signed by any key but the registered one."""
    assert _refusal(_signed(CryptoSigner.generate_ed25519()), signer) is Refusal.BAD_SIGNATURE


def test_request_changed_in_flight_is_refused_d2(signer: Signer) -> None:
    """The method and route are signed: moving a signature to another route fails."""
    message = _signed(signer)
    moved = Message("POST", URL.replace("reports", "authorizations"), message.headers)
    assert _refusal(moved, signer) is Refusal.BAD_SIGNATURE


def test_body_that_does_not_match_its_digest_is_refused_d3(signer: Signer) -> None:
    """Tampering: the body is swapped, the signed headers kept."""
    message = _signed(signer)
    assert _refusal(message, signer, body=b'{"running_version": "9.9.9"}') is Refusal.BODY_DIGEST


def test_digest_replaced_with_the_new_bodys_is_refused_d2(signer: Signer) -> None:
    """Swapping the digest too breaks the signature, which covers it."""
    message = _signed(signer)
    other = b"{}"
    digest = base64.b64encode(hashlib.sha256(other).digest()).decode()
    message.headers["Content-Digest"] = f"sha-256=:{digest}:"
    assert _refusal(message, signer, body=other) is Refusal.BAD_SIGNATURE


@pytest.mark.parametrize("offset", [timedelta(seconds=-61), timedelta(seconds=61)])
def test_stale_or_future_created_is_refused_d4(signer: Signer, offset: timedelta) -> None:
    """R25: a request captured and replayed after the window (or dated ahead) is refused."""
    assert _refusal(_signed(signer, created=NOW + offset), signer) is Refusal.STALE


def test_created_at_the_edge_of_the_window_is_accepted_d4(signer: Signer) -> None:
    assert _verify(_signed(signer, created=NOW - SKEW), signer) == "n-1"


def test_signature_for_another_device_id_is_refused_d2(signer: Signer) -> None:
    """The keyid is the device id: a device cannot sign as another one."""
    message = _signed(signer)
    with pytest.raises(DeviceRequestRefused) as refused:
        verify(message, body=BODY, key=signer.public_key, device_id="pump-2", now=NOW, skew=SKEW)
    assert refused.value.reason is Refusal.MALFORMED


def test_garbage_signature_headers_are_malformed_d1() -> None:
    message = Message("POST", URL, {"Signature-Input": "device=(((", "Signature": "x"})
    with pytest.raises(DeviceRequestRefused) as refused:
        claimed_device(message.headers)
    assert refused.value.reason is Refusal.MALFORMED


def test_a_secure_element_key_signs_requests_that_verify_s3(softhsm_key: KeyConfig) -> None:
    """S3: a PKCS#11 signer (SoftHSM2, ECDSA P-256) signs DER; the profile sends r || s."""
    signer = load_signer(softhsm_key.uri, lambda _secret: USER_PIN)
    assert _verify(_signed(signer), signer) == "n-1"
