"""Real HSMs: the same Signer code path signs with a PKCS#11 token (SoftHSM2).

securesystemslib's ``HSMSigner`` (``hsm:`` URIs, python-pkcs11, module path in
``PYKCS11LIB``) signs TUF metadata exactly like the ``fwhsm:`` mock: callers
only change the URI and public key in their configuration. Skips locally if
SoftHSM2 or OpenSC is missing; fails instead on CI (``CI=true``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from securesystemslib.signer import SecretsHandler, Signer
from tuf.api.metadata import Metadata, Root

from hsm_mock import Algorithm, Purpose, Token, private_key_uri
from tests.hsm_mock.helpers import FAST_KDF, SO_PIN, USER_PIN, skip_or_fail
from tests.softhsm import KeyConfig


@pytest.fixture
def fwhsm_key(tmp_path: Path) -> KeyConfig:
    token = Token.init(tmp_path / "t", so_pin=SO_PIN, user_pin=USER_PIN, kdf=FAST_KDF)
    key = token.login(USER_PIN).generate(
        label="root-key", purpose=Purpose.ROOT, algorithm=Algorithm.ECDSA_P256
    )
    return KeyConfig(private_key_uri(token.path, key.label), key.public_key)


def _sign_root(config: KeyConfig, secrets_handler: SecretsHandler) -> Metadata[Root]:
    """The caller's code path: nothing here knows which kind of token it talks to."""
    root = Metadata(Root())
    root.signed.add_key(config.public_key, "root")
    root.sign(Signer.from_priv_key_uri(config.uri, config.public_key, secrets_handler))
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    return root


def test_softhsm_pkcs11_signer_signs_tuf_root(softhsm_key: KeyConfig) -> None:
    assert softhsm_key.uri.startswith("hsm:1?label=")
    assert softhsm_key.public_key.scheme == "ecdsa-sha2-nistp256"
    asked: list[str] = []

    def handler(message: str) -> str:
        asked.append(message)
        return USER_PIN

    root = _sign_root(softhsm_key, handler)
    signature = root.signatures[softhsm_key.public_key.keyid]
    softhsm_key.public_key.verify_signature(signature, root.signed_bytes)
    assert asked


def test_same_code_path_signs_with_fwhsm_and_pkcs11(
    softhsm_key: KeyConfig, fwhsm_key: KeyConfig
) -> None:
    """Switching from the mock to a real token is a configuration change only."""
    for config in (fwhsm_key, softhsm_key):
        root = _sign_root(config, lambda _message: USER_PIN)
        assert list(root.signatures) == [config.public_key.keyid]


def test_missing_softhsm_skips_locally_but_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run"):
        skip_or_fail("softhsm2-util not installed")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("softhsm2-util not installed")
