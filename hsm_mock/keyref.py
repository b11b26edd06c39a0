"""Signer URIs of both token kinds: the mock (``fwhsm:``) and PKCS#11 (``hsm:``).

The one place that turns a private key URI into its public key and a
``Signer``, shared by ``fwsign`` and the update server, so that moving a key
from the software token to a hardware one is a configuration change only.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlparse

from pkcs11.exceptions import PKCS11Error
from securesystemslib.signer import HSMSigner, Key, SecretsHandler, Signer

from hsm_mock import signer as mock
from hsm_mock.errors import HSMError


class KeyRefError(ValueError):
    """A URI names no key we can reach; the message says why."""


def public_key_from_uri(uri: str) -> Key:
    """Ask the token behind ``uri`` for its public key (no PIN needed)."""
    scheme = uri.partition(":")[0]
    try:
        if scheme == mock.SCHEME:
            return mock.public_key_from_uri(uri)
        if scheme == HSMSigner.SCHEME:
            parsed = urlparse(uri)
            label = dict(parse_qsl(parsed.query)).get("label")
            keyid = int(parsed.path) if parsed.path else None
            _uri, key = HSMSigner.import_(keyid, label)
            found: Key = key
            return found
    except (ValueError, OSError, HSMError, PKCS11Error) as exc:  # the token's own words
        raise KeyRefError(f"cannot read the public key of {uri}: {exc}") from None
    raise KeyRefError(f"{uri}: not a token key URI (fwhsm:... or hsm:...)")


def load_signer(uri: str, secrets_handler: SecretsHandler) -> Signer:
    """A signer for ``uri``; the PIN is asked for lazily by ``secrets_handler``."""
    key = public_key_from_uri(uri)
    try:
        return Signer.from_priv_key_uri(uri, key, secrets_handler)
    except ValueError as exc:
        raise KeyRefError(f"{uri}: {exc}") from None
