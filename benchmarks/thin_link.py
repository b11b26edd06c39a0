"""A thin link on this machine: a TCP relay that paces what the server sends.

``ThinLink`` listens on 127.0.0.1 and relays each connection to the server's
port, byte for byte (TLS passes through it untouched: the device still
verifies the server's certificate, for 127.0.0.1). What flows from the server
to the device is paced to ``bits_per_second`` per connection, as a slow
hospital segment or a metered modem would deliver it; what the device sends
(requests) is not. Each connection's pace is its own: a device holds one.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress
from types import TracebackType

CHUNK = 16 * 1024


class ThinLink:
    """A paced relay to ``127.0.0.1:upstream``; ``url`` replaces the server's in a device."""

    def __init__(self, upstream: int, *, bits_per_second: float) -> None:
        self._upstream = upstream
        self._rate = bits_per_second / 8  # bytes per second
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ThinLink:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                device, _address = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self._upstream))
            for source, sink, paced in ((device, server, False), (server, device, True)):
                pump = threading.Thread(target=self._pump, args=(source, sink, paced), daemon=True)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket, paced: bool) -> None:
        started, sent = time.monotonic(), 0
        try:
            while chunk := source.recv(CHUNK):
                sink.sendall(chunk)
                sent += len(chunk)
                if paced:
                    ahead = sent / self._rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass  # either side went away: end both
        finally:
            for end in (source, sink):
                with suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
