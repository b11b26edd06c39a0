"""Secrets at rest (pure): AES-GCM bound to the row a secret belongs to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from update_server.mfa.secretbox import KEY_BYTES, SecretBox, SecretBoxError


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(KEY_BYTES))


def test_seal_and_open(box: SecretBox) -> None:
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", context=b"user/1/alice")
    assert b"JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, context=b"user/1/alice") == b"JBSWY3DPEHPK3PXP"


def test_each_seal_uses_a_new_nonce(box: SecretBox) -> None:
    assert box.seal(b"s", context=b"c") != box.seal(b"s", context=b"c")


def test_a_secret_moved_to_another_row_does_not_open(box: SecretBox) -> None:
    sealed = box.seal(b"JBSWY3DPEHPK3PXP", context=b"user/1/alice")
    with pytest.raises(SecretBoxError, match="another row"):
        box.open(sealed, context=b"user/2/mallory")


def test_a_tampered_or_foreign_blob_does_not_open(box: SecretBox) -> None:
    sealed = bytearray(box.seal(b"secret", context=b"c"))
    sealed[-1] ^= 1
    with pytest.raises(SecretBoxError):
        box.open(bytes(sealed), context=b"c")
    with pytest.raises(SecretBoxError):
        SecretBox(os.urandom(KEY_BYTES)).open(box.seal(b"secret", context=b"c"), context=b"c")
    with pytest.raises(SecretBoxError, match="not a sealed secret"):
        box.open(b"\x02" + bytes(40), context=b"c")


def test_key_file_must_be_private_and_the_right_size(tmp_path: Path) -> None:
    key = tmp_path / "secrets.key"
    key.write_bytes(os.urandom(KEY_BYTES))
    key.chmod(0o644)
    with pytest.raises(SecretBoxError, match="chmod 600"):
        SecretBox.from_file(key)
    key.chmod(0o600)
    assert (
        SecretBox.from_file(key).open(
            SecretBox.from_file(key).seal(b"x", context=b"c"), context=b"c"
        )
        == b"x"
    )
    key.write_bytes(b"short")
    with pytest.raises(SecretBoxError, match="expected 32 bytes"):
        SecretBox.from_file(key)
    with pytest.raises(SecretBoxError, match="cannot read"):
        SecretBox.from_file(tmp_path / "missing.key")


def test_the_key_is_not_in_the_repr(box: SecretBox) -> None:
    assert box.key.hex() not in repr(box)
