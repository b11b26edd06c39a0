"""The device's own key: which key it signs its requests with (R10).

Rules:

- K1 The private key never leaves the device. By default provisioning
  generates an Ed25519 key pair in the state directory: the private key in
  ``provisioned/device_key.pem`` (PKCS#8, mode 0600, written atomically;
  never printed, logged or sent). Or the key lives in a secure element and
  is named by a PKCS#11 signer URI (``hsm:...``, as ``fwcommon.keyref``
  loads them): only its public half is read, the private key never leaves
  the element.
- K2 The state records which key the device uses:
  ``provisioned/device_key.json`` (read-only) holds ``{"uri", "public_key"}``;
  ``uri`` is ``file:device_key.pem`` (inside ``provisioned/``) or the token
  URI. The public key is recorded when provisioning, so registration sends
  the key the device signs with, and a token that later answers with another
  key is refused rather than trusted.
- K3 Only keys that can sign device requests are taken (Ed25519, ECDSA P-256:
  ``fwcommon.message_signatures``), and a new key must sign and verify a
  test message before it is recorded.
- K4 A secure element's PIN comes from ``FWCLIENT_DEVICE_KEY_PIN`` (the device
  runs unattended), never from the command line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey

from client.errors import ProvisioningError
from client.state import StateDir
from fwcommon.files import atomic_write
from fwcommon.keyid import default_keyid
from fwcommon.keyref import KeyRefError, is_token_uri, load_signer, public_key_from_uri
from fwcommon.message_signatures import UnsupportedKeyError, algorithm_for

KEY_RECORD = "device_key.json"
PRIVATE_KEY_FILE = "device_key.pem"
FILE_URI = f"file:{PRIVATE_KEY_FILE}"
PIN_ENV = "FWCLIENT_DEVICE_KEY_PIN"
_PROBE = b"fwupdate device key check"
_MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True)
class DeviceKey:
    """Which key the device signs with (K2): its URI and its public key."""

    uri: str
    public_key: Key

    def to_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "public_key": self.public_key.to_dict()}


def record_file(state: StateDir) -> Path:
    return state.provisioned / KEY_RECORD


def create_device_key(state: StateDir, *, uri: str | None = None) -> DeviceKey:
    """Generate the device key (no ``uri``) or take the token key ``uri`` (K1-K3).

    The caller holds the state directory's lock. Refuses to replace a key.
    """
    if record_file(state).exists():
        raise ProvisioningError(f"{state.root} already has a device key; refusing to replace it")
    key = _generate(state) if uri is None else _token_key(uri)
    _check_signs(key, device_signer(state, key))
    state.provisioned.mkdir(parents=True, exist_ok=True)
    data = json.dumps(key.to_json(), sort_keys=True, indent=1).encode()
    atomic_write(record_file(state), data, mode=0o444)
    return key


def device_key(state: StateDir) -> DeviceKey:
    """The key recorded at provisioning (K2), or a clear error."""
    file = record_file(state)
    try:
        data = json.loads(file.read_bytes()[:_MAX_KEY_FILE])
        key = Key.from_dict(
            _keyid(data["public_key"]), {k: data["public_key"][k] for k in _KEY_FIELDS}
        )
        uri = str(data["uri"])
    except FileNotFoundError:
        raise ProvisioningError(
            f"{state.root} has no device key: it was provisioned before device keys;"
            " provision the device again"
        ) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProvisioningError(f"{file} is not a device key record ({exc})") from None
    return DeviceKey(uri, key)


def device_signer(state: StateDir, key: DeviceKey | None = None) -> Signer:
    """The signer of the device key (K1, K4); its public key is the recorded one (K2)."""
    key = key if key is not None else device_key(state)
    if key.uri == FILE_URI:
        signer: Signer = _file_signer(state, key.public_key)
    else:
        try:
            signer = load_signer(key.uri, _pin_handler)
        except KeyRefError as exc:
            raise ProvisioningError(f"device key {key.uri}: {exc}") from None
        if signer.public_key.keyval != key.public_key.keyval:
            raise ProvisioningError(
                f"the token behind {key.uri} holds another key than the one provisioned:"
                " refusing to sign with it"
            )
    return signer


_KEY_FIELDS = ("keytype", "scheme", "keyval")


def _keyid(public: dict[str, Any]) -> str:
    return default_keyid(public["keytype"], public["scheme"], public["keyval"])


def _generate(state: StateDir) -> DeviceKey:
    signer = CryptoSigner.generate_ed25519()
    state.provisioned.mkdir(parents=True, exist_ok=True)
    # K1: 0600 from the first byte (atomic_write stages with the final mode).
    atomic_write(state.provisioned / PRIVATE_KEY_FILE, signer.private_bytes, mode=0o600)
    return DeviceKey(FILE_URI, signer.public_key)


def _token_key(uri: str) -> DeviceKey:
    if not is_token_uri(uri):
        raise ProvisioningError(
            f"--device-key {uri!r}: give a PKCS#11 signer URI (hsm:...) of the secure element's key"
        )
    try:
        key = public_key_from_uri(uri)
        algorithm_for(key)
    except (KeyRefError, UnsupportedKeyError) as exc:
        raise ProvisioningError(f"--device-key: {exc}") from None
    return DeviceKey(uri, key)


def _file_signer(state: StateDir, public_key: Key) -> Signer:
    file = state.provisioned / PRIVATE_KEY_FILE
    try:
        private = load_pem_private_key(file.read_bytes()[:_MAX_KEY_FILE], password=None)
    except (OSError, ValueError, TypeError) as exc:
        # Only the class: never the key file's contents.
        raise ProvisioningError(
            f"cannot read the device key {file}: {type(exc).__name__}"
        ) from None
    if not isinstance(public_key, SSlibKey):
        raise ProvisioningError("the recorded device key is not a securesystemslib key")
    return CryptoSigner(private, public_key)


def _check_signs(key: DeviceKey, signer: Signer) -> None:
    """K3: the key signs, and its signature verifies with the recorded public key."""
    try:
        key.public_key.verify_signature(signer.sign(_PROBE), _PROBE)
    except UnverifiedSignatureError:
        raise ProvisioningError(
            f"the device key {key.uri} does not sign with its public key: not recorded"
        ) from None


def _pin_handler(secret: str) -> str:
    pin = os.environ.get(PIN_ENV, "")
    if not pin:
        raise ProvisioningError(f"the device key's {secret} is needed: set {PIN_ENV}")
    return pin
