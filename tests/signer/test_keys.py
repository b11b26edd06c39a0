"""Key references: public keys from files or token URIs; private keys only by URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.signer import CryptoSigner

from signer.errors import SignerError
from signer.keys import MAX_KEY_FILE, load_public_key, signer_from_uri


def _pin(_message: str) -> str:
    return "unused"


def test_pem_public_key_file_loads_with_its_default_keyid(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "k.pem").write_bytes(pem)
    key = load_public_key(str(tmp_path / "k.pem"))
    assert key.scheme == "ecdsa-sha2-nistp256"
    assert len(key.keyid) == 64


def test_json_key_file_with_and_without_keyid(tmp_path: Path) -> None:
    key = CryptoSigner.generate_ed25519().public_key
    with_id = tmp_path / "with.json"
    with_id.write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}))
    without = tmp_path / "without.json"
    without.write_text(json.dumps(key.to_dict()))
    assert load_public_key(str(with_id)).keyid == key.keyid
    assert load_public_key(str(without)).keyid == key.keyid


def test_json_key_file_whose_keyid_lies_is_refused(tmp_path: Path) -> None:
    """A key file claiming another key's id could smuggle a key under a trusted name."""
    key = CryptoSigner.generate_ed25519().public_key
    other = CryptoSigner.generate_ed25519().public_key
    path = tmp_path / "lying.json"
    path.write_text(json.dumps({"keyid": other.keyid, **key.to_dict()}))
    with pytest.raises(SignerError, match="keyid does not match"):
        load_public_key(str(path))


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[1, 2]", b'{"keytype": "ed25519"}', b"-----BEGIN PUBLIC KEY-----\nxx\n"],
    ids=["text", "list", "fields-missing", "bad-pem"],
)
def test_a_file_that_is_not_a_public_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(SignerError, match="not a public key file"):
        load_public_key(str(path))


def test_an_oversized_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b" " * (MAX_KEY_FILE + 1))
    with pytest.raises(SignerError, match="too large"):
        load_public_key(str(path))


def test_neither_file_nor_uri_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="neither a public key file nor a signer URI"):
        load_public_key(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("uri", ["file2:/tmp/key.pem", "/tmp/key.pem", "plain"])
def test_private_keys_are_only_ever_token_uris(uri: str) -> None:
    """Private key bytes never pass through fwsign: keys live in an HSM."""
    with pytest.raises(SignerError):
        signer_from_uri(uri, _pin)


def test_a_token_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="cannot read the public key"):
        load_public_key(f"fwhsm:{tmp_path}/no-token?label=alice")
