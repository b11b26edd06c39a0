"""The audit public key: how a checker names it (R28).

On the server it is read from the token behind ``online_keys.audit`` (no PIN
needed); offline, from a key file (securesystemslib key JSON as written by
``fwhsm export-public``, or PEM) or a token URI. Only public halves pass here.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.signer import Key, SSlibKey
from securesystemslib.signer._utils import compute_default_keyid

from hsm_mock.keyref import KeyRefError, public_key_from_uri
from update_server.audit.errors import CheckpointError
from update_server.config import ServerConfig

MAX_KEY_FILE = 64 * 1024
TOKEN_SCHEMES = frozenset({"fwhsm", "hsm"})


def audit_public_key(config: ServerConfig) -> Key:
    """The audit key's public half, from its token (no PIN needed)."""
    uri = config.online_keys.get("audit")
    if not uri:
        raise CheckpointError("no audit key is configured (online_keys.audit)")
    return load_public_key(uri)


def load_public_key(ref: str) -> Key:
    """A public key from a token URI, a key JSON file (``fwhsm export-public``) or PEM."""
    if ref.partition(":")[0] in TOKEN_SCHEMES:
        try:
            return public_key_from_uri(ref)
        except KeyRefError as exc:
            raise CheckpointError(str(exc)) from None
    path = Path(ref)
    if not path.is_file():
        raise CheckpointError(f"{ref!r} is neither a public key file nor a key URI")
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE + 1)
    try:
        return _parse_key_file(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a public key file ({exc})") from None


def _parse_key_file(data: bytes) -> SSlibKey:
    if len(data) > MAX_KEY_FILE:
        raise ValueError("too large")
    if data.lstrip().startswith(b"-----BEGIN"):
        return SSlibKey.from_crypto(load_pem_public_key(data))
    obj = json.loads(data)
    fields = {name: obj[name] for name in ("keytype", "scheme", "keyval")}
    keyid = compute_default_keyid(fields["keytype"], fields["scheme"], fields["keyval"])
    if obj.get("keyid", keyid) != keyid:
        raise ValueError("its keyid does not match the key")
    return SSlibKey.from_dict(keyid, fields)
