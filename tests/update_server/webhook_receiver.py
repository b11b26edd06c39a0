"""A webhook receiver for the alert tests: a real HTTP server on loopback, in a thread.

It checks each request as a hospital's receiver would, with its own few
lines of HMAC (not the server's ``alerts.signing``, so that a bug the two
would share cannot pass): the signature over "<timestamp>.<body>", the
timestamp within ``tolerance`` of its clock, then dedup on the alert id.
It records every request it answered, and can be down (not listening),
failing (503) or hanging (accepts, never answers until released).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: How long a hanging receiver holds a request at most (released at stop).
HANG_LIMIT = 30.0


@dataclass(frozen=True)
class Received:
    """One request the receiver answered."""

    alert_id: str
    status: int
    #: The body's alert, if its signature held.
    alert: dict[str, Any] | None
    duplicate: bool = False


@dataclass
class WebhookReceiver:
    secret: bytes
    #: The receiver's clock, Unix seconds (the tests' FakeClock).
    now: Callable[[], float]
    tolerance: float = 300
    #: "up" (dedup, 200), "failing" (503), "hanging" (no answer until released).
    mode: str = "up"
    #: Seconds an "up" receiver takes to answer (a slower receiver widens races).
    delay: float = 0.0
    #: Alert ids of the requests being answered now.
    in_flight: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    #: The alerts accepted, by id, in the order first received.
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def start(self) -> None:
        """Listen (on the same port as before, after a ``stop``)."""
        self._release.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: not listening (a connection is refused)."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, headers: Any, body: bytes) -> tuple[int, Received]:
        alert_id = str(headers.get("X-FW-Alert-Id", ""))
        with self._lock:
            self.in_flight.append(alert_id)
        try:
            return self._answer(alert_id, headers, body)
        finally:
            with self._lock:
                self.in_flight.remove(alert_id)

    def _answer(self, alert_id: str, headers: Any, body: bytes) -> tuple[int, Received]:
        if self.mode == "hanging":
            self._release.wait(HANG_LIMIT)
            return 503, Received(alert_id, 503, None)
        if self.mode == "failing":
            return 503, Received(alert_id, 503, None)
        if not self._signed(headers, body):
            return 401, Received(alert_id, 401, None)
        self._release.wait(self.delay)
        alert = json.loads(body)
        with self._lock:
            duplicate = alert["id"] in self.alerts
            self.alerts.setdefault(alert["id"], alert)
        return 200, Received(alert_id, 200, alert, duplicate)

    def _signed(self, headers: Any, body: bytes) -> bool:
        timestamp = str(headers.get("X-FW-Timestamp", ""))
        signature = str(headers.get("X-FW-Signature", ""))
        if not timestamp.isdigit() or abs(self.now() - int(timestamp)) > self.tolerance:
            return False
        mac = hmac.new(self.secret, timestamp.encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest(f"v1={mac.hexdigest()}", signature)

    def first_deliveries(self) -> list[str]:
        """The alert ids accepted and new, in order (a dedup'd repeat is not one)."""
        return [r.alert_id for r in self.received if r.status == 200 and not r.duplicate]


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, received = receiver.answer(self.headers, body)
            with receiver._lock:
                receiver.received.append(received)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


@contextmanager
def receiving(secret: bytes, now: Callable[[], float]) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret, now)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
