"""POSTing one alert to one webhook, signed (``signing``), with short timeouts (R31).

Rules:

* W1 A delivery counts once the receiver answers 2xx; anything else (another
  status, a refused or reset connection, a timeout, a certificate that does
  not verify) is a failed attempt, retried later (``outbox.settle``).
* W2 Every wait is short (``CONNECT_TIMEOUT``, ``READ_TIMEOUT``) and happens
  in the alert worker, never on a request's path. No redirect is followed
  (a signed alert goes to the configured URL only) and urllib3 retries
  nothing itself: the outbox's back-off decides.
* W3 https verifies the receiver's certificate (the webhook's ``ca_file``,
  or the system's CAs); ``config.Webhook`` allows plain http to loopback only.
* W4 A webhook's secret comes from its file, which must be a regular file
  readable by its owner only, of at least ``signing.MIN_SECRET_BYTES``
  bytes (surrounding whitespace is not part of it). It is never logged: an
  error names the file, never its content.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import urllib3

from update_server.alerts import signing
from update_server.alerts.errors import AlertConfigError
from update_server.config import Webhook

CONNECT_TIMEOUT: Final = 3.0
READ_TIMEOUT: Final = 5.0
#: How much of a refusing receiver's answer is kept as the error (never logged in full).
_ERROR_TEXT = 200


def read_secret(file: Path) -> bytes:
    """W4: the HMAC secret in ``file``; ``AlertConfigError`` naming what to fix."""
    try:
        info = file.stat()
    except OSError as exc:
        raise AlertConfigError(f"webhook secret file {file}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise AlertConfigError(f"webhook secret file {file} is not a regular file")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise AlertConfigError(f"webhook secret file {file} is readable by others; chmod 600 it")
    secret = file.read_bytes().strip()
    if len(secret) < signing.MIN_SECRET_BYTES:
        raise AlertConfigError(
            f"webhook secret file {file} holds fewer than {signing.MIN_SECRET_BYTES} bytes;"
            " write a long random one (e.g. openssl rand -hex 32)"
        )
    return secret


@dataclass(frozen=True)
class _Target:
    url: str
    secret: bytes
    pool: urllib3.PoolManager


class Sender:
    """Delivers to the configured webhooks; secrets read once, at start (W4)."""

    def __init__(self, webhooks: Iterable[Webhook]) -> None:
        self._targets: Mapping[str, _Target] = {
            hook.name: _Target(hook.url, read_secret(hook.secret_file), _pool(hook))
            for hook in webhooks
        }

    @property
    def webhooks(self) -> tuple[str, ...]:
        return tuple(self._targets)

    def post(self, webhook: str, *, alert_id: str, body: bytes, timestamp: int) -> str | None:
        """W1: None if the receiver answered 2xx, else what went wrong (for ``last_error``)."""
        target = self._targets[webhook]
        headers = signing.headers(target.secret, alert_id=alert_id, timestamp=timestamp, body=body)
        try:
            answer = target.pool.request(
                "POST",
                target.url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
                retries=False,
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.HTTPError as exc:
            return f"{type(exc).__name__}: {_reason(exc)}"
        if 200 <= answer.status < 300:
            return None
        text = answer.data[:_ERROR_TEXT].decode("utf-8", "replace")
        return f"HTTP {answer.status}" + (f": {text}" if text else "")

    def close(self) -> None:
        for target in self._targets.values():
            target.pool.clear()


def _pool(hook: Webhook) -> urllib3.PoolManager:
    """W3: certificates verified; one connection kept per webhook."""
    ca = None if hook.ca_file is None else str(hook.ca_file)
    return urllib3.PoolManager(num_pools=1, maxsize=1, cert_reqs="CERT_REQUIRED", ca_certs=ca)


def _reason(exc: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).splitlines()[0][:_ERROR_TEXT] if str(reason) else type(reason).__name__
