"""Request bodies: bounded before they are read, drained after a refusal.

Rules, applied to every request in one place (``bound``, before any other
``before_request``, so before authentication and the database):

- B1 Every body has a limit: ``max_request_bytes`` (small JSON: login,
  enrolment, password) unless the view declares a larger one with
  ``@accepts_body("<setting>")`` (``max_metadata_bytes`` for release
  metadata, ``max_upload_bytes`` for firmware streams only).
- B2 A declared ``Content-Length`` over the limit is refused (413) before a
  byte is read; a body without one (chunked) is refused (413) as soon as
  its reader passes the limit (``CappedStream``). Nothing is parsed past the limit, so an
  unauthenticated client cannot make a worker hold a large body in memory.
  A view that declares a large limit refuses an over-long declared length
  itself, after authentication, so that the refusal is audited (R27).
- B3 After an error answer, the unread rest of the body is read and
  discarded (``drain``), at most ``DRAIN_BYTES`` for at most
  ``DRAIN_SECONDS``. A client that sends its whole body before it reads
  (most do, ``Expect: 100-continue`` or not: gunicorn answers ``100
  Continue`` before the app runs) then reads the answer: a socket closed
  with unread bytes sends a TCP reset, which destroys the answer on its
  way. Beyond the bound the connection is closed (the answer may be lost),
  so a refused body costs the server bounded time and no memory.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO, TypeVar

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from update_server.config import ServerConfig
from update_server.errors import PayloadTooLargeError

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
#: The settings a view may name as its body limit.
LARGE_BODY_SETTINGS = frozenset({"max_metadata_bytes", "max_upload_bytes"})
DRAIN_BYTES = 64 * 1024**2
DRAIN_SECONDS = 10.0
_DRAIN_BLOCK = 64 * 1024
#: The server's own body stream, where ``bound`` wrapped it.
RAW_INPUT = "fw.raw_input"


def accepts_body(setting: str) -> Callable[[F], F]:
    """The view takes bodies up to ``ServerConfig.<setting>`` bytes (B1)."""
    if setting not in LARGE_BODY_SETTINGS:
        raise ValueError(f"accepts_body: {setting!r} is not one of {sorted(LARGE_BODY_SETTINGS)}")

    def mark(view: F) -> F:
        view.fw_body_limit = setting  # type: ignore[attr-defined]
        return view

    return mark


def limit_for(view: Callable[..., Any] | None, config: ServerConfig) -> int:
    """The body limit of ``view`` (``max_request_bytes`` unless it declares one)."""
    setting = getattr(view, "fw_body_limit", None)
    limit: int = getattr(config, setting) if setting else config.max_request_bytes
    return limit


def bound() -> None:
    """``before_request``: set this request's limit; refuse a larger declared body (B2)."""
    config: ServerConfig = current_app.extensions["fw"].config
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    limit = limit_for(view, config)
    request.max_content_length = limit
    declared = request.content_length
    if declared is None:
        # Chunked: werkzeug's own cut would hand a view the first ``limit``
        # bytes as if they were the whole body; this one refuses (413).
        request.environ[RAW_INPUT] = raw = request.environ["wsgi.input"]
        request.environ["wsgi.input"] = CappedStream(raw, limit)
        request.max_content_length = None
        return
    refused_by_view = getattr(view, "fw_body_limit", None) is not None
    if declared > limit and not refused_by_view:
        raise PayloadTooLargeError(
            f"the body is {declared} bytes; this endpoint takes at most {limit}", limit=limit
        )


class CappedStream(io.RawIOBase):
    """A body of unknown length that raises ``RequestEntityTooLarge`` past ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        super().__init__()
        self._stream = stream
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        # At most one byte past the limit: enough to know it was passed.
        want = min(len(buffer), self._limit + 1 - self._read)
        data = self._stream.read(want) if want > 0 else b""
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge(f"the body is longer than the limit of {self._limit} bytes")
        buffer[: len(data)] = data
        return len(data)


def drain(environ: Mapping[str, Any]) -> None:
    """Read and discard what is left of the body, within the bounds (B3)."""
    stream = environ.get(RAW_INPUT, environ.get("wsgi.input"))
    sock = environ.get("gunicorn.socket")
    if stream is None:
        return
    prior = sock.gettimeout() if sock is not None else None
    deadline = time.monotonic() + DRAIN_SECONDS
    total = 0
    try:
        while total < DRAIN_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(_DRAIN_BLOCK)
            if not chunk:
                return
            total += len(chunk)
    except Exception as exc:  # noqa: BLE001 - a client gone or too slow: the server closes
        logger.debug("request body not drained: %s", type(exc).__name__)
    finally:
        if sock is not None:
            try:
                sock.settimeout(prior)
            except OSError:
                logger.debug("socket closed while draining")
