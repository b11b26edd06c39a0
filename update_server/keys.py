"""The server's online keys: snapshot, timestamp, audit, authorization.

Each is a token key URI in the configuration (``fwhsm:`` by default, ``hsm:``
for a PKCS#11 token). The server signs unattended, so the token's user PIN
comes from ``FWSERVER_HSM_PIN`` or from a PIN file readable by the server
user only; it is never logged. The server never holds root, targets or
release keys (R6): a full compromise can at worst freeze updates.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from securesystemslib.signer import Signer

from fwcommon.keyref import KeyRefError, load_signer
from update_server.config import ServerConfig

PIN_ENV = "FWSERVER_HSM_PIN"


class KeyConfigError(RuntimeError):
    """An online key cannot be loaded; the message says what to configure."""


def read_pin(config: ServerConfig) -> str:
    pin = os.environ.get(PIN_ENV)
    if pin:
        return pin
    file = config.hsm_pin_file
    if file is None or not file.is_file():
        raise KeyConfigError(f"no HSM PIN: set {PIN_ENV} or hsm_pin_file in the configuration")
    if stat.S_IMODE(file.stat().st_mode) & 0o077:
        raise KeyConfigError(f"{file} is readable by others; chmod 600 it")
    return file.read_text().strip()


def signer_loader(config: ServerConfig) -> SignerLoader:
    return SignerLoader(config)


class SignerLoader:
    """Loads one online signer by role, on first use."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config

    def __call__(self, role: str) -> Signer:
        uri = self._config.online_keys.get(role)
        if not uri:
            raise KeyConfigError(f"no online {role} key configured (online_keys.{role})")
        try:
            return load_signer(uri, lambda _message: read_pin(self._config))
        except KeyRefError as exc:
            raise KeyConfigError(str(exc)) from None


def pin_file(data_dir: Path) -> Path:
    return data_dir / "hsm.pin"
