"""A key's default keyid, as the TUF specification defines it.

The keyid of a public key is the hex SHA-256 of the canonical JSON of its
``keytype``, ``scheme`` and ``keyval`` (TUF spec, "Key objects" and
"KEYID"); securesystemslib gives every key it makes this keyid
(``SSlibKey.from_crypto``, each signer's ``import_``). The repository
checks refuse a key listed under any other keyid, and a public key file
may not name its key under another key's keyid: both ask here, and only
securesystemslib's public canonical-JSON encoder is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key


class KeyIdError(ValueError):
    """The key has no canonical JSON form (a float, a non-string key...), hence no keyid."""


def default_keyid(keytype: str, scheme: str, keyval: Mapping[str, Any]) -> str:
    """The default keyid of the key made of these fields; ``KeyIdError`` if it has none."""
    fields = {"keytype": keytype, "scheme": scheme, "keyval": dict(keyval)}
    try:
        canonical = encode_canonical(fields)
        data = canonical.encode("utf-8") if isinstance(canonical, str) else None
    except (FormatError, UnicodeEncodeError, TypeError) as exc:
        raise KeyIdError(f"the key has no canonical JSON form: {exc}") from None
    if data is None:
        raise KeyIdError("the key has no canonical JSON form")
    return hashlib.sha256(data).hexdigest()


def default_keyid_of(key: Key) -> str:
    """The default keyid of ``key`` (whatever keyid it is listed under)."""
    return default_keyid(key.keytype, key.scheme, key.keyval)
