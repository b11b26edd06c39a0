"""The audit public key: how a checker names it (R28).

On the server it is read from the token behind ``online_keys.audit`` (no PIN
needed); offline, from a key file (securesystemslib key JSON as written by
``fwhsm export-public``, or PEM) or a token URI. Only public halves pass here.
"""

from __future__ import annotations

from securesystemslib.signer import Key

from fwcommon import keyref
from fwcommon.keyref import KeyRefError
from update_server.audit.errors import CheckpointError
from update_server.config import ServerConfig


def audit_public_key(config: ServerConfig) -> Key:
    """The audit key's public half, from its token (no PIN needed)."""
    uri = config.online_keys.get("audit")
    if not uri:
        raise CheckpointError("no audit key is configured (online_keys.audit)")
    return load_public_key(uri)


def load_public_key(ref: str) -> Key:
    """A public key from a token URI, a key JSON file (``fwhsm export-public``) or PEM."""
    try:
        return keyref.load_public_key(ref)
    except KeyRefError as exc:
        raise CheckpointError(str(exc)) from None
