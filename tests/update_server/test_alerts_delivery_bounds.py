"""A webhook delivery ends in bounded time and reads a bounded answer (``delivery`` W5; R31).

Real loopback receivers that misbehave at the socket level (the polite
``webhook_receiver`` cannot): silent after the request, answering one byte
at a time in the status line, the headers or the body, stalling the TLS
handshake, or sending a body of a gigabyte. Each delivery must end within
its deadline (here 1 s, passed to the ``Sender``; the server's is
``DEADLINE``, well within the worker's claim) and read at most
``REPLY_LIMIT`` bytes of the answer.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.update_server.alerts_helpers import write_secret
from update_server.alerts.delivery import DEADLINE, READ_TIMEOUT, REPLY_LIMIT, Sender
from update_server.alerts.worker import LEASE
from update_server.config import Webhook
from update_server.tls import managed_tls

#: The deadline these tests give the sender, and the slack a loaded machine may add to it.
TEST_DEADLINE = 1.0
SLACK = 1.5
GIGABYTE = 1 << 30

Behaviour = Callable[[socket.socket, threading.Event], int]


@dataclass
class RawReceiver:
    """A loopback TCP server that meets each connection with ``behaviour`` in a thread."""

    behaviour: Behaviour
    tls: ssl.SSLContext | None = None
    sent: list[int] = field(default_factory=list)
    #: Set once a request was read in full.
    requested: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _listener: socket.socket | None = None

    def start(self) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        port: int = listener.getsockname()[1]
        return port

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            _read_request(connection)
            self.requested.set()
            self.sent.append(self.behaviour(connection, self._stop))
        except OSError:
            self.sent.append(-1)  # the sender hung up on us
        finally:
            connection.close()


def _read_request(connection: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(4096)


def silent(connection: socket.socket, stop: threading.Event) -> int:
    """Reads the request, answers nothing until the test ends."""
    stop.wait(30)
    return 0


def trickling(prefix: bytes) -> Behaviour:
    """Sends ``prefix``, then one byte every 50 ms for as long as it is read."""

    def behaviour(connection: socket.socket, stop: threading.Event) -> int:
        connection.sendall(prefix)
        sent = len(prefix)
        while not stop.wait(0.05):
            connection.sendall(b"a")
            sent += 1
        return sent

    return behaviour


def huge(status: bytes) -> Behaviour:
    """Answers ``status`` with a body of a gigabyte, as fast as the sender takes it."""

    def behaviour(connection: socket.socket, stop: threading.Event) -> int:
        connection.sendall(status + b"\r\nContent-Length: %d\r\n\r\n" % GIGABYTE)
        chunk, sent = b"x" * 65536, 0
        try:
            while sent < GIGABYTE and not stop.is_set():
                connection.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the sender closed the connection: what we want
        return sent

    return behaviour


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    write_secret(tmp_path / "siem.key")
    return tmp_path / "siem.key"


@pytest.fixture
def receiver() -> Iterator[Callable[..., RawReceiver]]:
    started: list[RawReceiver] = []

    def start(behaviour: Behaviour, tls: ssl.SSLContext | None = None) -> RawReceiver:
        made = RawReceiver(behaviour, tls)
        started.append(made)
        return made

    yield start
    for made in started:
        made.stop()


def _sender(url: str, secret_file: Path, ca_file: Path | None = None) -> Sender:
    hook = Webhook(name="siem", url=url, secret_file=secret_file, ca_file=ca_file)
    return Sender([hook], deadline=TEST_DEADLINE)


def _post(sender: Sender) -> tuple[str | None, float]:
    started = time.monotonic()
    error = sender.post("siem", alert_id="a1", body=b'{"id": "a1"}', timestamp=1_700_000_000)
    return error, time.monotonic() - started


def test_w5_the_servers_deadline_is_well_within_the_workers_claim() -> None:
    """W5, O3: a delivery cut at its deadline is over long before another worker may claim it."""
    assert LEASE.total_seconds() >= DEADLINE * 3


SLOW = {
    "silent": silent,
    "status-line-byte-by-byte": trickling(b"HTTP/1.1 2"),
    "headers-byte-by-byte": trickling(b"HTTP/1.1 503 Busy\r\nX-Slow: "),
    "body-byte-by-byte": trickling(b"HTTP/1.1 503 Busy\r\nContent-Length: 100000\r\n\r\n"),
}


@pytest.mark.parametrize("behaviour", list(SLOW.values()), ids=list(SLOW))
def test_w5_a_receiver_answering_slowly_or_never_is_cut_at_the_deadline(
    receiver: Callable[..., RawReceiver], secret_file: Path, behaviour: Behaviour
) -> None:
    """W5: whatever the receiver dribbles, the delivery fails within its deadline, retried later."""
    port = receiver(behaviour).start()

    error, elapsed = _post(_sender(f"http://127.0.0.1:{port}/alerts", secret_file))

    assert error == f"no complete answer within {TEST_DEADLINE:g} s"
    assert TEST_DEADLINE <= elapsed < TEST_DEADLINE + SLACK < READ_TIMEOUT


def test_w5_a_stalled_tls_handshake_is_cut_at_the_deadline(
    secret_file: Path, tmp_path: Path
) -> None:
    """W5: a receiver that accepts the connection and never speaks TLS holds nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        error, elapsed = _post(_sender(f"https://127.0.0.1:{port}/alerts", secret_file))
    finally:
        listener.close()

    assert error == f"no complete answer within {TEST_DEADLINE:g} s"
    assert elapsed < TEST_DEADLINE + SLACK


@pytest.mark.parametrize("status", [b"HTTP/1.1 500 Broken", b"HTTP/1.1 200 OK"])
def test_w5_a_huge_answer_is_read_to_its_limit_and_the_connection_closed(
    receiver: Callable[..., RawReceiver], secret_file: Path, status: bytes
) -> None:
    """W5: a gigabyte body costs at most REPLY_LIMIT bytes read; a 2xx is delivered unread."""
    served = receiver(huge(status))
    port = served.start()

    error, elapsed = _post(_sender(f"http://127.0.0.1:{port}/alerts", secret_file))

    if status.endswith(b"OK"):
        assert error is None
    else:
        assert error == "HTTP 500: " + "x" * REPLY_LIMIT
    assert elapsed < TEST_DEADLINE
    served.stop()
    deadline = time.monotonic() + 10
    while not served.sent and time.monotonic() < deadline:
        threading.Event().wait(0.01)  # the receiver's thread notices the closed connection
    [sent] = served.sent
    assert sent < 64 * 1024 * 1024  # what socket buffers took, not the gigabyte


def test_w3_w5_https_verifies_the_receiver_against_its_ca_file(
    receiver: Callable[..., RawReceiver], secret_file: Path, tmp_path: Path
) -> None:
    """W3: the receiver's certificate is checked (its CA file, or the system's CAs: refused)."""
    # A real handshake checks validity against the real clock, so the leaf is issued for now.
    files = managed_tls(tmp_path / "tls", names=["127.0.0.1"], now=datetime.now(UTC))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    answer = trickling(b"HTTP/1.1 204 No Content\r\n\r\n")
    port = receiver(answer, context).start()
    url = f"https://127.0.0.1:{port}/alerts"
    assert files.ca is not None

    trusted, _ = _post(_sender(url, secret_file, ca_file=files.ca))
    unknown, _ = _post(_sender(url, secret_file))

    assert trusted is None
    assert unknown is not None and "CERTIFICATE_VERIFY_FAILED" in unknown


def test_w5_closing_the_sender_cuts_a_delivery_under_way(
    receiver: Callable[..., RawReceiver], secret_file: Path
) -> None:
    """A worker stopping does not wait for a hanging receiver (``AlertWorker.stop``)."""
    served = receiver(silent)
    port = served.start()
    sender = Sender(
        [Webhook(name="siem", url=f"http://127.0.0.1:{port}/", secret_file=secret_file)],
        deadline=60,
    )
    result: list[tuple[str | None, float]] = []
    posting = threading.Thread(target=lambda: result.append(_post(sender)))
    posting.start()
    assert served.requested.wait(10), "the delivery never reached the receiver"

    sender.close()
    posting.join(timeout=10)

    [(error, elapsed)] = result
    assert error == "cut short: the alert worker is stopping"
    assert elapsed < 10
