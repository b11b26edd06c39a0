"""The server's decision on a device's signed request at its edges (D1, D2).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36): signature parameters that do not make one well-formed ``device``
signature are refused as malformed before any key is looked up or used.
"""

from __future__ import annotations

import pytest
from securesystemslib.signer import CryptoSigner

from fwcommon.message_signatures import Message
from tests.update_server.test_devices_signatures import NOW, SKEW, URL, _signed
from update_server.devices.signatures import (
    MAX_NONCE,
    DeviceRequestRefused,
    Refusal,
    claimed_device,
    verify,
)

BODY = b'{"running_version": "1.2.0"}'


def refusal_of_claim(signature_input: str) -> Refusal:
    message = Message(
        "POST", URL, {"Signature-Input": signature_input, "Signature": "device=:AA==:"}
    )
    with pytest.raises(DeviceRequestRefused) as refused:
        claimed_device(message.headers)
    return refused.value.reason


def test_d1_a_device_signature_that_names_no_key_is_malformed() -> None:
    assert refusal_of_claim('device=("@method");created=1;nonce="n-1"') is Refusal.MALFORMED


@pytest.mark.parametrize(
    "signature_input",
    [
        'device=("@method");keyid="pump-1", other=("@path");keyid="pump-1"',
        'other=("@method");keyid="pump-1"',
        'device=1;keyid="pump-1"',
    ],
    ids=["two-signatures", "another-label", "not-a-component-list"],
)
def test_d1_anything_but_one_device_signature_is_malformed(signature_input: str) -> None:
    """A second signature could be checked in place of the first: exactly one is read."""
    assert refusal_of_claim(signature_input) is Refusal.MALFORMED


def test_d1_a_nonce_longer_than_the_limit_is_malformed_before_the_signature_is_checked() -> None:
    """The nonce is stored to refuse replays (D5): an unbounded one would fill the table."""
    signer = CryptoSigner.generate_ed25519()
    message = _signed(signer, nonce="n" * (MAX_NONCE + 1))
    with pytest.raises(DeviceRequestRefused) as refused:
        verify(message, body=BODY, key=signer.public_key, device_id="pump-1", now=NOW, skew=SKEW)
    assert refused.value.reason is Refusal.MALFORMED
    at_limit = _signed(signer, nonce="n" * MAX_NONCE)
    signed = verify(
        at_limit, body=BODY, key=signer.public_key, device_id="pump-1", now=NOW, skew=SKEW
    )
    assert signed.nonce == "n" * MAX_NONCE
