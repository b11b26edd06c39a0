"""Signer URIs of both token kinds: the mock (``fwhsm:``) and PKCS#11 (``hsm:``).

The one place that turns a private key URI into its public key and a
``Signer``, shared by ``fwsign`` and the update server, so that moving a key
from the software token to a hardware one is a configuration change only.
Production code, hence not in the mock package; it knows the software
token's scheme (``hsm_mock.signer``) as one of the two token kinds, and
importing that module registers the scheme with securesystemslib. It is
imported only when a ``fwhsm:`` URI is used: a device, whose key is a file
or a secure element's (``hsm:``), carries no part of the mock token (R3).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pkcs11.exceptions import PKCS11Error
from securesystemslib.signer import HSMSigner, Key, SecretsHandler, Signer, SSlibKey

from fwcommon.keyid import default_keyid

#: The mock token's scheme (``hsm_mock.signer.SCHEME``, checked by a test).
MOCK_SCHEME = "fwhsm"
TOKEN_SCHEMES = frozenset({MOCK_SCHEME, HSMSigner.SCHEME})
MAX_KEY_FILE = 64 * 1024


class KeyRefError(ValueError):
    """A URI names no key we can reach; the message says why."""


def is_token_uri(ref: str) -> bool:
    return ref.partition(":")[0] in TOKEN_SCHEMES


def load_public_key(ref: str) -> Key:
    """A public key named by ``ref``: a token URI, a key JSON file or a PEM file.

    Key JSON is securesystemslib's (as ``fwhsm export-public`` writes it); a
    ``keyid`` in the file must be the key's own default keyid, so a file
    cannot smuggle a key in under another key's name.
    """
    if is_token_uri(ref):
        return public_key_from_uri(ref)
    path = Path(ref)
    if not path.is_file():
        raise KeyRefError(
            f"{ref!r} is neither a public key file nor a signer URI (fwhsm:..., hsm:...)"
        )
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise KeyRefError(f"{path}: too large for a public key file")
    try:
        return _parse_key_file(data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise KeyRefError(f"{path}: not a public key file ({exc})") from None


def _parse_key_file(data: bytes) -> Key:
    if data.lstrip().startswith(b"-----BEGIN"):
        return SSlibKey.from_crypto(load_pem_public_key(data))
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise TypeError("expected a JSON object with keytype, scheme and keyval")
    fields = {name: obj[name] for name in ("keytype", "scheme", "keyval")}
    keyid = default_keyid(fields["keytype"], fields["scheme"], fields["keyval"])
    if obj.get("keyid", keyid) != keyid:
        raise ValueError("its keyid does not match the key")
    key: Key = Key.from_dict(keyid, fields)
    return key


def public_key_from_uri(uri: str) -> Key:
    """Ask the token behind ``uri`` for its public key (no PIN needed)."""
    scheme = uri.partition(":")[0]
    try:
        if scheme == MOCK_SCHEME:
            return _mock_public_key(uri)
        if scheme == HSMSigner.SCHEME:
            parsed = urlparse(uri)
            label = dict(parse_qsl(parsed.query)).get("label")
            keyid = int(parsed.path) if parsed.path else None
            _uri, key = HSMSigner.import_(keyid, label)
            found: Key = key
            return found
    except (ValueError, OSError, PKCS11Error) as exc:  # the token's own words
        raise KeyRefError(f"cannot read the public key of {uri}: {exc}") from None
    raise KeyRefError(f"{uri}: not a token key URI (fwhsm:... or hsm:...)")


def _mock_public_key(uri: str) -> Key:
    """The mock token's public key; importing its signer registers the scheme."""
    try:
        from hsm_mock import signer as mock  # noqa: PLC0415 - only for fwhsm: URIs (R3)
        from hsm_mock.errors import HSMError  # noqa: PLC0415
    except ModuleNotFoundError as exc:  # fwupdate-device ships no software token
        if exc.name != "hsm_mock":
            raise
        raise KeyRefError(
            f"{uri}: the software token (fwhsm:) is not installed here; a device's key is"
            " its own file or a secure element's (hsm:...)"
        ) from None

    try:
        return mock.public_key_from_uri(uri)
    except HSMError as exc:
        raise KeyRefError(f"cannot read the public key of {uri}: {exc}") from None


def load_signer(uri: str, secrets_handler: SecretsHandler) -> Signer:
    """A signer for ``uri``; the PIN is asked for lazily by ``secrets_handler``."""
    key = public_key_from_uri(uri)
    try:
        return Signer.from_priv_key_uri(uri, key, secrets_handler)
    except ValueError as exc:
        raise KeyRefError(f"{uri}: {exc}") from None
