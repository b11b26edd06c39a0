"""``fwserver serve`` on a port that is taken: one line that says what to do, at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from update_server.cli import main
from update_server.config import ServerConfig
from update_server.serve import ServeError, check_port

# R6: fwserver serve refuses root (test_serve_root); here its other rules are tested.
pytestmark = pytest.mark.usefixtures("unprivileged")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (here: this test) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_serve_on_a_busy_port_says_so_and_starts_nothing(
    config: ServerConfig, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr("update_server.cli_serve.run", started.append)
    result = CliRunner().invoke(
        main, ["serve", "--data-dir", str(config.data_dir), "--port", str(busy_port)]
    )
    assert result.exit_code == 1
    assert (
        f"error: port {busy_port} on 127.0.0.1 is in use (another fwserver?):"
        " stop it or pass --port"
    ) in result.stderr
    assert started == [], "gunicorn was not started"


def test_a_free_port_passes_and_port_zero_always_does(busy_port: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port("127.0.0.1", free)
    check_port("127.0.0.1", 0)
    with pytest.raises(ServeError, match="is in use"):
        check_port("127.0.0.1", busy_port)


def test_an_address_that_cannot_be_bound_is_named(busy_port: int) -> None:
    with pytest.raises(ServeError, match=r"cannot bind port \d+ on 192\.0\.2\.1"):
        check_port("192.0.2.1", busy_port)  # TEST-NET-1: not an address of this host
