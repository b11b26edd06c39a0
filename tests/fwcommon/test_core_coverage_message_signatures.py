"""The device request signature profile refuses keys it cannot verify (S2, R25, R36).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``):
each refusal of ``fwcommon.message_signatures`` for a key outside the profile
is exercised directly, not only through a whole device registration.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from securesystemslib.signer import CryptoSigner, SSlibKey

from fwcommon.message_signatures import (
    UnsupportedKeyError,
    algorithm_for,
    crypto_public_key,
    public_key_dict,
)


def test_s2_an_rsa_key_cannot_sign_device_requests() -> None:
    key = CryptoSigner.generate_rsa().public_key
    with pytest.raises(UnsupportedKeyError, match="use an Ed25519 or an ECDSA P-256"):
        algorithm_for(key)


def test_s2_a_p384_key_labelled_nistp256_is_refused() -> None:
    """A key whose scheme claims P-256 but whose PEM is another curve is not verified as P-256."""
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    key = SSlibKey("k", "ecdsa", "ecdsa-sha2-nistp256", {"public": pem})
    with pytest.raises(UnsupportedKeyError, match="must be a P-256 public key"):
        crypto_public_key(key)


def test_s1_registration_sends_the_key_as_keytype_scheme_and_public_value() -> None:
    key = CryptoSigner.generate_ed25519().public_key
    sent = public_key_dict(key)
    assert sent == {"keytype": "ed25519", "scheme": "ed25519", "keyval": key.keyval}
    assert SSlibKey.from_dict("k", dict(sent)) == SSlibKey("k", "ed25519", "ed25519", key.keyval)
