"""POSTing one alert to one webhook, signed (``signing``), with short timeouts (R31).

Rules:

* W1 A delivery counts once the receiver answers 2xx; anything else (another
  status, a refused or reset connection, a timeout, a certificate that does
  not verify) is a failed attempt, retried later (``outbox.settle``).
* W2 Every wait is short (``CONNECT_TIMEOUT``, ``READ_TIMEOUT``) and happens
  in the alert worker, never on a request's path. No redirect is followed
  (a signed alert goes to the configured URL only) and nothing is retried
  here: the outbox's back-off decides.
* W5 A delivery ends within ``DEADLINE`` seconds, whatever the receiver
  does (well within the worker's claim, ``worker.LEASE``, so no other
  worker takes the row while it is still being sent): a timer shuts the
  connection's socket at the deadline, which ends any wait on it (the TCP
  connect, the TLS handshake, the status line, the headers, the body).
  Per-read timeouts alone (urllib3's ``Timeout``, ``total`` included)
  bound the time between two reads, not the request: a receiver sending a
  byte every few seconds would hold the worker for ever. Its answer is
  read to at most ``REPLY_LIMIT`` bytes (none of a 2xx, the start of an
  error's text otherwise, undecoded), and the connection is closed after
  each delivery, so a huge or endless body costs nothing.
* W3 https verifies the receiver's certificate (the webhook's ``ca_file``,
  or the system's CAs); ``config.Webhook`` allows plain http to loopback only.
* W4 A webhook's secret comes from its file, which must be a regular file
  readable by its owner only, of at least ``signing.MIN_SECRET_BYTES``
  bytes (surrounding whitespace is not part of it). It is never logged: an
  error names the file, never its content.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from update_server.alerts import signing
from update_server.alerts.errors import AlertConfigError
from update_server.config import Webhook

CONNECT_TIMEOUT: Final = 3.0
READ_TIMEOUT: Final = 5.0
#: W5: seconds a delivery may take in all.
DEADLINE: Final = 10.0
#: W5: bytes read at most of a refusing receiver's answer, kept as the error (never in full).
REPLY_LIMIT: Final = 200


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
    ca_file: Path | None


class Sender:
    """Delivers to the configured webhooks; secrets read once, at start (W4).

    Used by one thread at a time (the worker's); ``close`` may come from
    another, and cuts a delivery under way.
    """

    def __init__(self, webhooks: Iterable[Webhook], *, deadline: float = DEADLINE) -> None:
        self._targets: Mapping[str, _Target] = {
            hook.name: _Target(hook.url, read_secret(hook.secret_file), hook.ca_file)
            for hook in webhooks
        }
        self.deadline = deadline
        self._current: _Cutter | None = None

    @property
    def webhooks(self) -> tuple[str, ...]:
        return tuple(self._targets)

    def post(self, webhook: str, *, alert_id: str, body: bytes, timestamp: int) -> str | None:
        """W1: None if the receiver answered 2xx, else what went wrong (for ``last_error``)."""
        target = self._targets[webhook]
        headers = signing.headers(target.secret, alert_id=alert_id, timestamp=timestamp, body=body)
        cutter = _Cutter()
        connection = _connection(target, cutter)
        late = f"no complete answer within {self.deadline:g} s"
        timer = threading.Timer(self.deadline, cutter.cut, args=(late,))  # W5
        timer.daemon = True
        self._current = cutter
        timer.start()
        try:
            answered = _exchange(connection, target.url, headers, body)
        except (OSError, urllib3.exceptions.HTTPError, http.client.HTTPException) as exc:
            answered = f"{type(exc).__name__}: {_reason(exc)}"
        finally:
            timer.cancel()
            cutter.finish()  # before the close: never a cut of a reused descriptor
            self._current = None
            connection.close()
        # A cut answer may parse as a short one: it is a failed attempt all the same.
        return answered if cutter.why is None else cutter.why

    def close(self) -> None:
        """Cut the delivery under way, if any (the worker is stopping)."""
        current = self._current
        if current is not None:
            current.cut("cut short: the alert worker is stopping")


class _Cutter:
    """W5: ends every wait on one delivery's socket, from another thread.

    The socket is shut by its descriptor, known from the moment it exists
    (``opened``): the TLS handshake happens on a new socket object that
    takes the descriptor over, and answers are read from it. ``finish``,
    before the connection is closed, makes any later cut do nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._finished = False
        #: Why the delivery was cut, once it is.
        self.why: str | None = None

    def opened(self, sock: socket.socket) -> None:
        with self._lock:
            if self.why is not None:  # cut before the socket existed
                sock.close()
                raise TimeoutError(self.why)
            self._fd = sock.fileno()

    def cut(self, why: str) -> None:
        with self._lock:
            if self._finished or self.why is not None:
                return
            self.why = why
            if self._fd is not None:
                # The reader gets EOF; the copy of the descriptor is closed, not the socket.
                with (
                    contextlib.suppress(OSError),
                    socket.fromfd(self._fd, socket.AF_INET, socket.SOCK_STREAM) as same,
                ):
                    same.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self._lock:
            self._finished = True


class _WatchedHTTP(HTTPConnection):
    cutter: _Cutter

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.cutter.opened(sock)
        return sock


class _WatchedHTTPS(HTTPSConnection):
    cutter: _Cutter

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        self.cutter.opened(sock)
        return sock


def _exchange(
    connection: HTTPConnection, url: str, headers: Mapping[str, str], body: bytes
) -> str | None:
    """W1, W5: POST ``body``; None on 2xx, else the status and the start of the answer."""
    connection.connect()
    if connection.sock is not None:
        connection.sock.settimeout(READ_TIMEOUT)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection.request(
        "POST", path, body=body, headers=dict(headers), preload_content=False,
        decode_content=False,
    )  # fmt: skip
    answer = connection.getresponse()
    if 200 <= answer.status < 300:
        return None
    text = answer.read(REPLY_LIMIT)[:REPLY_LIMIT].decode("utf-8", "replace")
    return f"HTTP {answer.status}" + (f": {text}" if text else "")


def _connection(target: _Target, cutter: _Cutter) -> HTTPConnection:
    """W3: https verifies the receiver's certificate and name; a new connection each time."""
    parts = urlsplit(target.url)
    host = parts.hostname or ""
    connection: _WatchedHTTP | _WatchedHTTPS
    if parts.scheme == "http":
        connection = _WatchedHTTP(host, parts.port or 80, timeout=CONNECT_TIMEOUT)
    else:
        ca = None if target.ca_file is None else str(target.ca_file)
        connection = _WatchedHTTPS(
            host, parts.port or 443, timeout=CONNECT_TIMEOUT, cert_reqs="CERT_REQUIRED",
            ca_certs=ca,
        )  # fmt: skip
    connection.cutter = cutter
    return connection


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).splitlines()[0][:REPLY_LIMIT] if str(reason) else type(reason).__name__
