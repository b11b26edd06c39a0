"""``fwserver status`` on the server's host (R38): what it prints and its exit status."""

from __future__ import annotations

import json
from datetime import datetime

from click.testing import CliRunner, Result

from tests.clocks import FakeClock
from tests.update_server.repo_world import World
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.cli_status import NOT_READY, OK, WARNINGS
from update_server.config import ServerConfig


def _status(config: ServerConfig, now: datetime, *flags: str) -> Result:
    return CliRunner().invoke(
        main,
        ["status", "--data-dir", str(config.data_dir), *flags],
        obj=CommandClock(lambda: now),
    )


def test_a_published_ready_server_prints_its_status_and_exits_0(
    world: World, config: ServerConfig, clock: FakeClock
) -> None:
    result = _status(config, clock.now)
    assert result.exit_code == OK, result.output
    assert "ready: yes" in result.output
    assert "mode: normal" in result.output
    snapshot = world.services.signer("snapshot").public_key.keyid
    assert f"keyid {snapshot} (trusted by root)" in result.output
    assert "timestamp" in result.output and "fleet: 0 device(s)" in result.output
    assert "deployments in progress: none" in result.output
    assert "alert webhooks: none configured (alerts go to syslog only)" in result.output


def test_the_json_status_is_the_apis(world: World, config: ServerConfig, clock: FakeClock) -> None:
    result = _status(config, clock.now, "--json")
    assert result.exit_code == OK, result.output
    body = json.loads(result.stdout)
    assert body["ready"]["ready"] is True
    assert body["mode"]["mode"] == "normal"


def test_a_server_with_no_repository_is_not_ready_exit_2(
    config: ServerConfig, clock: FakeClock
) -> None:
    result = _status(config, clock.now)
    assert result.exit_code == NOT_READY, result.output
    assert "ready: NO (repository failed)" in result.output
    assert "not ready: repository" in result.stderr


def test_an_overdue_renewal_is_a_warning_exit_3(
    world: World, config: ServerConfig, clock: FakeClock
) -> None:
    later = clock.advance(hours=13)
    result = _status(config, later)
    assert result.exit_code == WARNINGS, result.output
    assert "warning: timestamp" in result.stderr
    assert "fwserver renew" in result.stderr
