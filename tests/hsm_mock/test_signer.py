"""The token as a securesystemslib Signer: ``fwhsm:`` URIs, lazy PIN, TUF signing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from securesystemslib.signer import SIGNER_FOR_URI_SCHEME, Signer, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Timestamp

from hsm_mock import (
    Algorithm,
    KeyInfo,
    MockHSMSigner,
    Purpose,
    Token,
    parse_uri,
    private_key_uri,
    public_key_from_uri,
)
from hsm_mock.errors import (
    InvalidURIError,
    KeyMismatchError,
    PinIncorrectError,
    PurposeMismatchError,
)
from tests.hsm_mock.helpers import USER_PIN, payload

MakeKey = Callable[..., KeyInfo]


class PinPad:
    """A secrets handler that records what it was asked."""

    def __init__(self, *pins: str) -> None:
        self.pins = list(pins) or [USER_PIN]
        self.asked: list[str] = []

    def __call__(self, message: str) -> str:
        self.asked.append(message)
        return self.pins[min(len(self.asked), len(self.pins)) - 1]


def _signer(token: Token, key: KeyInfo, handler: PinPad) -> Signer:
    return Signer.from_priv_key_uri(private_key_uri(token.path, key.label), key.public_key, handler)


def test_fwhsm_scheme_registered_on_import() -> None:
    assert SIGNER_FOR_URI_SCHEME["fwhsm"] is MockHSMSigner


def test_uri_round_trip(tmp_path: Path) -> None:
    token_dir = tmp_path / "release tokens" / "50%"
    uri = private_key_uri(token_dir, "root-2026.a")
    assert uri.startswith("fwhsm:/") and " " not in uri
    assert uri.endswith("/release%20tokens/50%25?label=root-2026.a")
    assert parse_uri(uri) == (token_dir, "root-2026.a")


def test_uri_round_trip_through_signer_from_priv_key_uri(token: Token, make_key: MakeKey) -> None:
    key = make_key(Purpose.SNAPSHOT)
    signer = _signer(token, key, PinPad())
    assert isinstance(signer, MockHSMSigner)
    assert signer.public_key == key.public_key
    data = payload("snapshot")
    key.public_key.verify_signature(signer.sign(data), data)


def test_public_key_from_uri_needs_no_pin(token: Token, make_key: MakeKey) -> None:
    key = make_key(Purpose.ROOT, Algorithm.ECDSA_P256)
    assert public_key_from_uri(private_key_uri(token.path, "root")) == key.public_key


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_tuf_root_signed_by_token_passes_verify_delegate(
    token: Token, make_key: MakeKey, algorithm: Algorithm
) -> None:
    key = make_key(Purpose.ROOT, algorithm)
    root = Metadata(Root())
    root.signed.add_key(key.public_key, "root")
    root.sign(_signer(token, key, PinPad()))
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)


def test_pin_asked_lazily_once_per_signer(token: Token, make_key: MakeKey) -> None:
    """Like a PKCS#11 session: PIN on first sign, session kept for later ones."""
    key = make_key(Purpose.TIMESTAMP)
    pad = PinPad()
    signer = _signer(token, key, pad)
    assert pad.asked == []
    for version in (1, 2):
        Metadata(Timestamp(version=version)).sign(signer)
    assert pad.asked == ["user PIN"]


def test_wrong_pin_from_handler_is_not_cached(token: Token, make_key: MakeKey) -> None:
    key = make_key(Purpose.TIMESTAMP)
    signer = _signer(token, key, PinPad("wrong-pin-1", USER_PIN))
    with pytest.raises(PinIncorrectError):
        signer.sign(payload("timestamp"))
    assert signer.sign(payload("timestamp"))
    assert token.status().user_failures == 0


def test_r47_signer_refuses_metadata_of_another_role(token: Token, make_key: MakeKey) -> None:
    """R47 through the Signer seam: a timestamp key cannot sign root metadata."""
    key = make_key(Purpose.TIMESTAMP)
    with pytest.raises(UnsignedMetadataError) as caught:
        Metadata(Root()).sign(_signer(token, key, PinPad()))
    assert isinstance(caught.value.__cause__, PurposeMismatchError)


def test_signature_carries_the_callers_keyid(token: Token, make_key: MakeKey) -> None:
    key = make_key(Purpose.SNAPSHOT).public_key
    renamed = SSlibKey("custom-keyid", key.keytype, key.scheme, key.keyval)
    signer = Signer.from_priv_key_uri(private_key_uri(token.path, "snapshot"), renamed, PinPad())
    data = payload("snapshot")
    signature = signer.sign(data)
    assert signature.keyid == "custom-keyid"
    renamed.verify_signature(signature, data)


def test_signer_refuses_a_public_key_that_is_not_the_tokens(
    token: Token, make_key: MakeKey
) -> None:
    """Threat: a configuration pairing a URI with someone else's public key."""
    make_key(Purpose.ROOT)
    other = make_key(Purpose.TARGETS)
    with pytest.raises(KeyMismatchError):
        Signer.from_priv_key_uri(private_key_uri(token.path, "root"), other.public_key, PinPad())


def test_signer_requires_a_secrets_handler(token: Token, make_key: MakeKey) -> None:
    key = make_key(Purpose.ROOT)
    with pytest.raises(ValueError, match="secrets handler"):
        Signer.from_priv_key_uri(private_key_uri(token.path, "root"), key.public_key)


@pytest.mark.parametrize(
    "uri",
    [
        "fwhsm:relative/token?label=root",
        "fwhsm:/token",
        "fwhsm:/token?label=a&label=b",
        "fwhsm:/token?label=../../etc/passwd",
        "fwhsm:/token?label=root&pin=123456",
        "fwhsm:/token?label",
        "hsm:/token?label=root",
    ],
)
def test_malformed_uri_refused(uri: str) -> None:
    with pytest.raises(InvalidURIError):
        parse_uri(uri)
