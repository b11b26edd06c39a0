"""The default keyid has one owner (fwcommon.keyid) and equals securesystemslib's.

``SSlibKey.from_crypto`` is securesystemslib's public way to make a key with
its default keyid; ours must give the same id for every key type we accept,
or the repository checks would refuse the keys fwhsm and PKCS#11 tokens make.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from securesystemslib.signer import SSlibKey

from fwcommon.keyid import KeyIdError, default_keyid, default_keyid_of


def _ed25519() -> PublicKeyTypes:
    return ed25519.Ed25519PrivateKey.generate().public_key()


def _ecdsa() -> PublicKeyTypes:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def _rsa() -> PublicKeyTypes:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


@pytest.mark.parametrize("make", [_ed25519, _ecdsa, _rsa], ids=["ed25519", "ecdsa", "rsa"])
def test_default_keyid_equals_securesystemslib_for_each_key_type(
    make: Callable[[], PublicKeyTypes],
) -> None:
    key = SSlibKey.from_crypto(make())
    assert default_keyid_of(key) == key.keyid
    assert default_keyid(key.keytype, key.scheme, key.keyval) == key.keyid


def test_keyid_depends_on_the_scheme_too() -> None:
    key = SSlibKey.from_crypto(_ecdsa())
    other = default_keyid(key.keytype, "ecdsa-sha2-nistp384", key.keyval)
    assert other != key.keyid


def test_a_key_without_canonical_json_has_no_keyid() -> None:
    """Floats have no canonical JSON form: a clear KeyIdError (a ValueError), not a crash."""
    with pytest.raises(KeyIdError, match="canonical JSON"):
        default_keyid("ed25519", "ed25519", {"public": 1.5})
