"""Key references: how a person names a key on the command line.

A *public* key is named by a file (securesystemslib key JSON, as written by
``fwhsm export-public``, or a PEM public key) or by a signer URI whose token
can tell its public key. A *private* key is only ever a signer URI
(``fwhsm:...`` for the mock HSM, ``hsm:...`` for a PKCS#11 token): private
bytes never pass through this package (ARCHITECTURE: keys stay in the HSM).
The parsing itself lives in ``fwcommon.keyref``, shared with the server.
"""

from __future__ import annotations

from securesystemslib.signer import Key, SecretsHandler, Signer

from fwcommon import keyref
from signer.errors import SignerError

MAX_KEY_FILE = keyref.MAX_KEY_FILE


def load_public_key(ref: str) -> Key:
    """The public key named by ``ref`` (a key file or a signer URI)."""
    try:
        return keyref.load_public_key(ref)
    except keyref.KeyRefError as exc:
        raise SignerError(str(exc)) from None


def signer_from_uri(uri: str, secrets_handler: SecretsHandler) -> Signer:
    """A signer for ``uri``; the PIN is asked for lazily by ``secrets_handler``."""
    if not keyref.is_token_uri(uri):
        raise SignerError(
            f"{uri!r} is not a private key URI; keys live in an HSM (fwhsm:... or hsm:...)"
        )
    try:
        return keyref.load_signer(uri, secrets_handler)
    except keyref.KeyRefError as exc:
        raise SignerError(str(exc)) from None
