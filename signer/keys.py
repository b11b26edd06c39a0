"""Key references: how a person names a key on the command line.

A *public* key is named by a file (securesystemslib key JSON, as written by
``fwhsm export-public``, or a PEM public key) or by a signer URI whose token
can tell its public key. A *private* key is only ever a signer URI
(``fwhsm:...`` for the mock HSM, ``hsm:...`` for a PKCS#11 token): private
bytes never pass through this package (ARCHITECTURE: keys stay in the HSM).
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.signer import (
    SIGNER_FOR_URI_SCHEME,
    HSMSigner,
    Key,
    SecretsHandler,
    Signer,
    SSlibKey,
)
from securesystemslib.signer._utils import compute_default_keyid

from hsm_mock import keyref
from hsm_mock.signer import SCHEME as MOCK_SCHEME
from signer.errors import SignerError

MAX_KEY_FILE = 64 * 1024
TOKEN_SCHEMES = frozenset({MOCK_SCHEME, HSMSigner.SCHEME})


def is_signer_uri(ref: str) -> bool:
    scheme, sep, _ = ref.partition(":")
    return bool(sep) and scheme in SIGNER_FOR_URI_SCHEME


def load_public_key(ref: str) -> Key:
    """The public key named by ``ref`` (a key file or a signer URI)."""
    if is_signer_uri(ref):
        return public_key_from_uri(ref)
    path = Path(ref)
    if not path.is_file():
        raise SignerError(
            f"{ref!r} is neither a public key file nor a signer URI (fwhsm:..., hsm:...)"
        )
    data = path.read_bytes()[: MAX_KEY_FILE + 1]
    if len(data) > MAX_KEY_FILE:
        raise SignerError(f"{path}: too large for a public key file")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return SSlibKey.from_crypto(load_pem_public_key(data))
        return _key_from_json(json.loads(data))
    except (ValueError, TypeError, KeyError) as exc:
        raise SignerError(f"{path}: not a public key file ({exc})") from None


def _key_from_json(obj: object) -> Key:
    if not isinstance(obj, dict):
        raise TypeError("expected a JSON object with keytype, scheme and keyval")
    fields = {k: obj[k] for k in ("keytype", "scheme", "keyval")}
    computed = compute_default_keyid(fields["keytype"], fields["scheme"], fields["keyval"])
    if obj.get("keyid", computed) != computed:
        raise ValueError("its keyid does not match the key")
    key: Key = Key.from_dict(computed, dict(fields))
    return key


def public_key_from_uri(uri: str) -> Key:
    """Ask the token behind ``uri`` for its public key (no PIN needed)."""
    try:
        return keyref.public_key_from_uri(uri)
    except keyref.KeyRefError as exc:
        raise SignerError(str(exc)) from None


def signer_from_uri(uri: str, secrets_handler: SecretsHandler) -> Signer:
    """A signer for ``uri``; the PIN is asked for lazily by ``secrets_handler``."""
    if not is_signer_uri(uri) or uri.partition(":")[0] not in TOKEN_SCHEMES:
        raise SignerError(
            f"{uri!r} is not a private key URI; keys live in an HSM (fwhsm:... or hsm:...)"
        )
    try:
        return keyref.load_signer(uri, secrets_handler)
    except keyref.KeyRefError as exc:
        raise SignerError(str(exc)) from None
