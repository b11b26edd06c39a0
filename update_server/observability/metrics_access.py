"""Who may read ``/metrics``: the loopback only, or whoever holds its bearer token.

The metrics say how many devices check in, how many refuse what and which
routes are called: nothing secret, but a map for an attacker. So they are
closed by default, and the rules are:

- A1 ``loopback`` (the default, ``metrics_access``): only a request from a
  loopback address (127.0.0.0/8, ::1) is answered; any other is 403. The
  address is the TCP peer's: behind a reverse proxy on the same host every
  request is from the loopback, so use ``token`` there.
- A2 ``token``: only a request with ``Authorization: Bearer <token>`` is
  answered, from any address; the token is the content of
  ``metrics_token_file`` (0600, at least ``MIN_TOKEN_LENGTH`` characters),
  read once at start (a missing or weak one stops the start), compared in
  constant time. Without it, or with another, 401.
- A3 There is no third mode and no empty policy: ``MetricsAccess`` is built
  from the configuration, which refuses anything else (``config``).
"""

from __future__ import annotations

import hmac
import ipaddress
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from update_server.config import ConfigError, ServerConfig

MIN_TOKEN_LENGTH: Final = 32


class Mode(StrEnum):
    LOOPBACK = "loopback"
    TOKEN = "token"  # noqa: S105 - a mode's name, not a secret


class Refused(StrEnum):
    """Why a request for the metrics was refused (the audit entry's reason)."""

    NOT_LOOPBACK = "metrics: not from the loopback"
    TOKEN = "metrics: bearer token missing or wrong"  # noqa: S105 - a reason, not a secret


@dataclass(frozen=True)
class MetricsAccess:
    mode: Mode
    #: A2: the token (``token`` mode only); never logged, never shown.
    token: bytes = b""

    def __repr__(self) -> str:
        return f"MetricsAccess(mode={self.mode.value!r})"

    @classmethod
    def from_config(cls, config: ServerConfig) -> MetricsAccess:
        mode = Mode(config.metrics_access)
        if mode is Mode.LOOPBACK:
            return cls(mode)
        if config.metrics_token_file is None:  # config refuses this; checked again here
            raise ConfigError("metrics_token_file: required when metrics_access is token")
        return cls(mode, read_token(config.metrics_token_file))

    def refusal(self, *, remote_addr: str | None, authorization: str | None) -> Refused | None:
        """A1, A2: why this request may not read the metrics, or None if it may."""
        if self.mode is Mode.LOOPBACK:
            return None if is_loopback(remote_addr) else Refused.NOT_LOOPBACK
        given = (authorization or "").removeprefix("Bearer ").encode()
        offered = authorization is not None and authorization.startswith("Bearer ")
        if offered and hmac.compare_digest(given, self.token):
            return None
        return Refused.TOKEN


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def read_token(file: Path) -> bytes:
    """A2: the token in ``file``, or a ``ConfigError`` naming what to fix."""
    name = "metrics_token_file"
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        token = file.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {file} ({exc.strerror})") from None
    if mode & 0o077:
        raise ConfigError(f"{name}: {file} is readable by others; chmod 600 it")
    if len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise ConfigError(
            f"{name}: {file} must hold one token of at least {MIN_TOKEN_LENGTH} printable ASCII"
            " characters (e.g. 'openssl rand -hex 32')"
        )
    return token.encode()
