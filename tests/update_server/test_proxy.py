"""Trusted proxies (``update_server.proxy`` P1 to P4; R9, R27, R31).

The source a failed login is audited with, and counted against, is the
client's: the TCP peer with no proxy configured, the address the outermost
of exactly ``trusted_proxy_hops`` proxies saw otherwise. A client that writes
its own ``X-Forwarded-For`` changes neither. The real nginx in front of the
real server is in ``tests/production``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import FakeClock
from update_server.app import create_app
from update_server.config import CONFIG_FILE, ConfigError, ServerConfig
from update_server.keys import signer_loader
from update_server.models import AuditEntry

LOGIN = "/api/v1/auth/login"
PROXY = "127.0.0.1"  # nginx on the server's host
FORGED = "203.0.113.66"

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def behind(config: ServerConfig, clock: FakeClock) -> Iterator[dict[int, FlaskClient]]:
    """A client of the server for 0, 1 and 2 trusted hops, 3 failed logins a source."""
    apps: list[Flask] = []
    clients = {}
    for hops in (0, 1, 2):
        changed = config.with_changes(trusted_proxy_hops=hops, max_failed_logins_per_source=3)
        app = create_app(changed, clock=clock, signer_loader=signer_loader(changed))
        app.testing = True
        apps.append(app)
        clients[hops] = app.test_client()
    yield clients
    for app in apps:
        app.extensions["fw"].engine.dispose()


def failed_login(client: FlaskClient, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    response = client.post(
        LOGIN,
        json={"username": "nobody-here", "password": "a wrong password"},
        headers=headers,
        environ_base={"REMOTE_ADDR": PROXY},
    )
    return response.status_code


def audited_sources(client: FlaskClient) -> list[str]:
    app = client.application
    with app.extensions["fw"].sessions() as db:
        query = select(AuditEntry.source).where(AuditEntry.action == "login")
        return list(db.scalars(query.order_by(AuditEntry.seq)))


def test_with_no_trusted_proxy_a_forwarded_for_header_is_ignored_p1(
    behind: dict[int, FlaskClient],
) -> None:
    assert failed_login(behind[0], forwarded=FORGED) == 401
    assert audited_sources(behind[0]) == [PROXY]


def test_one_trusted_proxy_gives_the_address_it_saw_not_what_the_client_wrote_p2(
    behind: dict[int, FlaskClient],
) -> None:
    """nginx appends the peer it saw; a client's own entries are to the left of it."""
    assert failed_login(behind[1], forwarded="198.51.100.7") == 401
    assert failed_login(behind[1], forwarded=f"{FORGED}, 198.51.100.7") == 401
    assert failed_login(behind[1], forwarded=f"10.0.0.1,{FORGED} ,198.51.100.7") == 401
    assert audited_sources(behind[1]) == ["198.51.100.7"] * 3


def test_two_trusted_proxies_give_the_address_the_outer_one_saw_p2(
    behind: dict[int, FlaskClient],
) -> None:
    """A load balancer appends the client, nginx appends the load balancer."""
    assert failed_login(behind[2], forwarded=f"{FORGED}, 198.51.100.7, 10.0.0.2") == 401
    assert audited_sources(behind[2]) == ["198.51.100.7"]


def test_a_request_that_did_not_pass_every_trusted_proxy_keeps_its_peer_p3(
    behind: dict[int, FlaskClient],
) -> None:
    assert failed_login(behind[1]) == 401
    assert failed_login(behind[2], forwarded="198.51.100.7") == 401
    assert audited_sources(behind[1])[-2:] == [PROXY, PROXY]


def test_the_per_source_login_limit_counts_the_client_behind_the_proxy_r9(
    behind: dict[int, FlaskClient],
) -> None:
    """A client that rewrites X-Forwarded-For each time is still one source; others are not."""
    for forged in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert failed_login(behind[1], forwarded=f"{forged}, 198.51.100.7") == 401
    assert failed_login(behind[1], forwarded="203.0.113.4, 198.51.100.7") == 429
    assert failed_login(behind[1], forwarded="198.51.100.8") == 401


def test_the_host_is_never_taken_from_a_forwarding_header_p4(
    behind: dict[int, FlaskClient],
) -> None:
    """An untrusted Host stays refused whatever X-Forwarded-Host claims."""
    response = behind[1].get(
        "/api/v1/health",
        headers={"Host": "evil.example", "X-Forwarded-Host": "localhost"},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    assert response.status_code == 400


@pytest.mark.parametrize("value", [-1, 6, "one", True, 1.5, ""])
def test_a_bad_trusted_proxy_hops_stops_the_server_naming_the_setting(
    tmp_path: Path, value: object
) -> None:
    with pytest.raises(ConfigError, match="trusted_proxy_hops"):
        ServerConfig.from_json({"data_dir": str(tmp_path), "trusted_proxy_hops": value})


def test_trusted_proxy_hops_is_read_from_the_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text('{"trusted_proxy_hops": 1}')
    assert ServerConfig.load(tmp_path, env={}).trusted_proxy_hops == 1
    env = {"FWSERVER_TRUSTED_PROXY_HOPS": "2"}
    assert ServerConfig.load(tmp_path, env=env).trusted_proxy_hops == 2
    assert ServerConfig(data_dir=tmp_path).trusted_proxy_hops == 0
