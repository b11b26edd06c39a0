"""The secrets key that seals TOTP secrets at rest has exactly its size (R9, R36).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``).
"""

from __future__ import annotations

import os

import pytest

from update_server.mfa.secretbox import KEY_BYTES, SecretBox, SecretBoxError


@pytest.mark.parametrize("size", [0, 16, KEY_BYTES - 1, KEY_BYTES + 1])
def test_r9_a_secrets_key_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(SecretBoxError, match=f"must be {KEY_BYTES} bytes"):
        SecretBox(os.urandom(size))
