"""A server certificate the device refuses is named as such, never as "unreachable" alone.

An unknown CA or an expired certificate is what a network attacker
impersonating the server (or a misconfigured one) presents: the refusal is
right, and its message must say which certificate problem it was, so a
technician does not go looking for a network fault. The servers here are
real TLS sockets on 127.0.0.1 whose certificates the test makes; the clock
that judges them is the wall clock, as it is for OpenSSL on the device.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from client import cli
from client.directive import STANDALONE
from client.fetcher import HttpsFetcher
from client.state import StateDir
from client.update import Outcome, Remote, update
from tests.client.helpers_state import event_types
from update_server.tls import CERT_FILE, KEY_FILE, VALIDITY, generate_self_signed


class HandshakeServer:
    """TLS on 127.0.0.1 with the certificate in ``directory``: handshakes, then hangs up."""

    def __init__(self, directory: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection, contextlib.suppress(OSError):
                self._context.wrap_socket(connection, server_side=True).close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._listener.close()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[HandshakeServer]:
    server = HandshakeServer(directory)
    try:
        yield server
    finally:
        server.close()


def attempt(state: StateDir, server: HandshakeServer, ca: Path) -> str:
    fetcher = HttpsFetcher(ca=ca, timeout=5)
    try:
        result = update(
            state, Remote(f"https://127.0.0.1:{server.port}", fetcher), directive=STANDALONE
        )
    finally:
        fetcher.close()
    assert (result.outcome, result.event) == (Outcome.FAILED, "unreachable")
    assert event_types(state)[-1] == "unreachable"
    return result.message


def test_tls_impersonation_a_certificate_from_an_unknown_ca_is_named(
    tmp_path: Path, state: StateDir
) -> None:
    """R21 (server authentication): a certificate that does not chain to the device's CA."""
    now = datetime.now(UTC)
    generate_self_signed(tmp_path / "impostor", names=("127.0.0.1",), now=now)
    generate_self_signed(tmp_path / "trusted", names=("127.0.0.1",), now=now)
    with serving(tmp_path / "impostor") as server:
        message = attempt(state, server, tmp_path / "trusted" / CERT_FILE)
    assert "TLS certificate refused" in message
    assert "(self-signed certificate)" in message
    assert "--ca" in message


def test_tls_impersonation_an_expired_certificate_is_named(tmp_path: Path, state: StateDir) -> None:
    """R21: a server certificate past its validity (a stolen old key, or a lapsed renewal)."""
    issued = datetime.now(UTC) - VALIDITY - timedelta(days=30)
    generate_self_signed(tmp_path / "old", names=("127.0.0.1",), now=issued)
    with serving(tmp_path / "old") as server:
        message = attempt(state, server, tmp_path / "old" / CERT_FILE)
    assert "TLS certificate refused" in message
    assert "certificate has expired" in message
    assert state.bootenv().pending is None, "the running firmware keeps running"


def test_tls_impersonation_is_named_on_the_command_line_even_with_v(
    tmp_path: Path, state: StateDir
) -> None:
    """R21: ``fwclient -v update`` says which certificate problem stopped it."""
    issued = datetime.now(UTC) - VALIDITY - timedelta(days=30)
    generate_self_signed(tmp_path / "old", names=("127.0.0.1",), now=issued)
    with serving(tmp_path / "old") as server:
        result = CliRunner().invoke(
            cli.main,
            [
                "-v", "update", "--state", str(state.root),
                "--server", f"https://127.0.0.1:{server.port}",
                "--ca", str(tmp_path / "old" / CERT_FILE), "--timeout", "5",
            ],
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fwclient: unreachable: "), last
    assert "TLS certificate refused (certificate has expired)" in last
