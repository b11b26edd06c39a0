"""Request bodies against the real server (gunicorn, TLS): bounded, and refused audibly.

The app refuses a body past its limit before reading it; gunicorn then
closes a connection whose body is unread, and a client still sending gets a
TCP reset that destroys the answer. The app reads and discards a bounded
rest after answering (``update_server/bodies.py``, B3), so a client that
declares its length honestly (with ``Expect: 100-continue`` or not) sends
its body and reads the 413. The client here is a plain TLS socket, so what
is on the wire is exactly what the test wrote.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import RunningServer

LOGIN = "/api/v1/auth/login"
BODY_BYTES = 32 * 1024**2  # twice the largest JSON limit (release metadata)
BLOCK = b" " * 1024**2
TIMEOUT = 60


def _connect(server: RunningServer) -> ssl.SSLSocket:
    url = urlsplit(server.url)
    host, port = url.hostname or "127.0.0.1", url.port or 443
    context = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection((host, port), timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname=host)


def _read_head(tls: ssl.SSLSocket) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < 8192:
        byte = tls.recv(1)
        if not byte:
            break
        head += byte
    return head


def _peak_memory_kib(pids: list[int]) -> dict[int, int]:
    peaks = {}
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[pid] = int(line.split()[1])
    return peaks


@pytest.mark.parametrize("expect_continue", [False, True])
def test_an_honest_client_sending_too_large_a_body_reads_the_413_not_a_reset(
    server: RunningServer, expect_continue: bool
) -> None:
    before = _peak_memory_kib(server.worker_pids())
    host = urlsplit(server.url).netloc
    head = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {BODY_BYTES}\r\n"
        + ("Expect: 100-continue\r\n" if expect_continue else "")
        + "\r\n"
    )
    with _connect(server) as tls:
        tls.sendall(head.encode())
        if expect_continue:
            assert _read_head(tls).startswith(b"HTTP/1.1 100")
        for _ in range(BODY_BYTES // len(BLOCK)):
            tls.sendall(BLOCK)  # a reset would raise here or below
        answer = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == 413
    assert answer.getheader("Content-Type") == "application/problem+json"
    assert body["status"] == 413
    after = _peak_memory_kib(server.worker_pids())
    growth_kib = max(after[pid] - before.get(pid, after[pid]) for pid in after)
    assert growth_kib < 8 * 1024, "a worker held the refused body in memory"
