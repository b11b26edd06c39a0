"""Secrets at rest: AES-256-GCM under the server's secrets key.

TOTP secrets are stored sealed, never in clear. The associated data names
the row a secret belongs to (user id and name), so a sealed secret copied
into another person's row does not open: an attacker with write access to
the database cannot give themselves someone else's second factor, nor copy
their own to another account. The key lives in a 0600 file in the data
directory (``ServerConfig.secrets_key_file``), written by ``fwserver init``,
outside the database: a database dump alone reveals no secret.

Sealed layout: version byte (1) | 12-byte random nonce | ciphertext and tag.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"


class SecretBoxError(Exception):
    """The key cannot be used, or a sealed secret does not open here."""


@dataclass(frozen=True)
class SecretBox:
    """Seal and open small secrets bound to a context (the row they live in)."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise SecretBoxError(f"the secrets key must be {KEY_BYTES} bytes")

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """Load the key, refusing a file that others may read."""
        try:
            info = path.stat()
            key = path.read_bytes()
        except OSError as exc:
            raise SecretBoxError(f"{path}: cannot read the secrets key ({exc.strerror})") from None
        if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
            raise SecretBoxError(f"{path}: the secrets key must be private: chmod 600 {path}")
        if len(key) != KEY_BYTES:
            raise SecretBoxError(f"{path}: not a secrets key (expected {KEY_BYTES} bytes)")
        return cls(key)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + AESGCM(self.key).encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        """The plaintext, or ``SecretBoxError`` if the blob, key or context differ."""
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != VERSION:
            raise SecretBoxError("not a sealed secret of this server")
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return AESGCM(self.key).decrypt(nonce, ciphertext, context)
        except InvalidTag:
            raise SecretBoxError(
                "sealed secret does not open: other key, or moved from another row"
            ) from None
