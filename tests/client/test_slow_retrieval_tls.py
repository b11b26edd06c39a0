"""TUF slow retrieval over a real TLS socket: a trickle is cut off at the pace check.

A server that sends a byte just often enough to beat each socket timeout must
not hold the device: the fetcher reads whatever has arrived (never waits to
fill a 64 KiB block), so its pace check runs on every byte and ends the
download once the grace period is over. The fake-response tests cannot show
this: the waiting happens inside urllib3's read.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tuf.api.exceptions import SlowRetrievalError

from client.fetcher import HttpsFetcher, Pace
from update_server.tls import CERT_FILE, KEY_FILE, generate_self_signed

#: The server trickles at most this many bytes (one per ``GAP`` s): about 6 s.
TRICKLE = 120
GAP = 0.05


class TrickleServer:
    """HTTPS on 127.0.0.1: a 1 MiB Content-Length, then one body byte per ``GAP`` s."""

    def __init__(self, directory: Path) -> None:
        generate_self_signed(directory, names=("127.0.0.1",), now=datetime.now(UTC))
        self.ca = directory / CERT_FILE
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self._tls = context.wrap_socket(self._listener, server_side=True)
        self.port = self._tls.getsockname()[1]
        self.sent = 0
        self.client_gone = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._tls.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
            for _ in range(TRICKLE):
                if self.client_gone.wait(GAP):
                    return
                try:
                    connection.sendall(b"x")
                except OSError:  # the client hung up: what the test wants
                    self.client_gone.set()
                    return
                self.sent += 1

    def close(self) -> None:
        self.client_gone.set()
        self._thread.join(timeout=10)
        self._tls.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TrickleServer]:
    trickle = TrickleServer(tmp_path / "tls")
    yield trickle
    trickle.close()


def test_a_trickle_inside_each_socket_timeout_is_cut_off_by_the_pace_check(
    server: TrickleServer,
) -> None:
    """Slow retrieval: the download ends after the grace period, long before the trickle."""
    fetcher = HttpsFetcher(ca=server.ca, timeout=5, pace=Pace(min_rate=1000, grace=0.5))
    url = f"https://127.0.0.1:{server.port}/targets/fw.bin"
    with pytest.raises(SlowRetrievalError, match="below 1000 B/s"):
        for _block in fetcher.fetch(url):
            pass
    fetcher.close()
    received = server.sent
    assert received < TRICKLE // 2, f"the client took {received} bytes before giving up"
