"""Changes the freeze stops that were let through (``freeze.rules`` F3, ``rollout`` D10; R24, R33).

The file of a published target (``PUT /api/v1/targets/<path>``), the first
import (``fwserver import``) and a fleet set to take the newest release
(API and CLI) each make devices able to take firmware no deployment
assigned. While frozen each is refused (423, or the CLI's error), nothing
changes, and the refusal is audited with the freeze's message, as every
other frozen refusal; a fleet set back to ``assigned`` is not refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select

from tests.update_server.deployments_helpers import fresh, manager
from tests.update_server.devices_helpers import audit_entries, detail
from tests.update_server.repo_world import FakeOtp, World, repository_files
from update_server.audit.actions import Action
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.deployments.models import FleetSetting
from update_server.freeze import state as freeze_state
from update_server.freeze.rules import Freeze, Mode
from update_server.models import Role
from update_server.publication.bootstrap import import_repository

PATH = "pump-x100/fw-2.4.0.bin"
REASON = "investigating a suspected signing key leak"


def _freeze(world: World) -> None:
    """Frozen by olga, through the freeze's own state module (F1's rules are tested there)."""
    with transaction(world.services.sessions) as db:
        row = freeze_state.locked(db, now=world.now)
        freeze_state.write(
            row, Freeze(Mode.FROZEN, since=world.now, frozen_by="olga", reason=REASON)
        )


def _frozen_refusals(world: World, action: str) -> list[dict[str, str]]:
    return [detail(e) for e in audit_entries(world.app, action) if e.outcome == "refused"]


def _says_frozen(text: str) -> None:
    assert "the system is frozen by olga since " in text
    assert REASON in text


# -- the offline repository, imported or not -------------------------------------------


@pytest.fixture
def offline(app: Flask, config: ServerConfig, clock: object, tmp_path: Path) -> World:
    """The server, and an offline repository with 2.4.0 signed, not imported yet."""
    world = World(app, config, clock, tmp_path, FakeOtp())
    world.make_offline()
    return world


def test_f3_fwserver_import_is_refused_while_frozen_nothing_published(offline: World) -> None:
    """R24, R33: the first publication waits for the freeze to be lifted, like any other."""
    _path, data = offline.add_release("2.4.0")
    targets = offline.tmp / "build" / PATH
    targets.parent.mkdir(parents=True)
    targets.write_bytes(data)
    _freeze(offline)
    argv = ["import", "--data-dir", str(offline.config.data_dir),
            "--targets-dir", str(offline.tmp / "build"), str(offline.offline)]  # fmt: skip

    refused = CliRunner().invoke(main, argv, obj=CommandClock(offline.clock))

    assert refused.exit_code == 1
    _says_frozen(refused.stderr)
    assert repository_files(offline.repository) == {}
    [entry] = _frozen_refusals(offline, Action.PUBLISH)
    assert entry["rule"] == "freeze-F3"
    _says_frozen(entry["reason"])
    assert not any(e.outcome == "success" for e in audit_entries(offline.app, Action.PUBLISH))


def test_f3_the_file_of_a_published_target_is_refused_while_frozen(offline: World) -> None:
    """R24, R33: no target becomes downloadable while frozen; the upload is refused, audited."""
    _path, data = offline.add_release("2.4.0")
    import_repository(
        offline.config, offline.services.signer, offline.offline, offline.now,
        allow_missing_files=True,
    )  # fmt: skip
    before = repository_files(offline.repository)
    _freeze(offline)
    headers = {**offline.as_("alice", Role.RELEASE_ENGINEER),
               "Content-Type": "application/octet-stream"}  # fmt: skip

    answer = offline.client.put(f"/api/v1/targets/{PATH}", data=data, headers=headers)

    assert answer.status_code == 423, answer.get_json()
    _says_frozen(answer.get_json()["detail"])
    assert repository_files(offline.repository) == before
    incoming = offline.config.incoming_dir
    assert not incoming.exists() or list(incoming.iterdir()) == []
    [entry] = _frozen_refusals(offline, Action.UPLOAD_TARGET)
    assert entry["rule"] == "freeze-F3"
    _says_frozen(entry["reason"])


# -- a fleet set to take the newest release (D10) --------------------------------------


def _fleet_install(world: World) -> str | None:
    with transaction(world.services.sessions) as db:
        return db.scalar(
            select(FleetSetting.install).where(FleetSetting.hardware_model == "pump-x100")
        )


def test_d10_a_fleet_is_not_set_to_newest_while_frozen_api(world: World) -> None:
    """R24, R9: newest would move a fleet on with no deployment; back to assigned is allowed."""
    _freeze(world)
    url = "/api/v1/fleets/pump-x100"
    headers = manager(world, "manager1")

    refused = world.client.put(url, json={"install": "newest"}, headers=fresh(world, headers))
    narrowed = world.client.put(url, json={"install": "assigned"}, headers=fresh(world, headers))

    assert refused.status_code == 423, refused.get_json()
    _says_frozen(refused.get_json()["detail"])
    assert narrowed.status_code == 200, narrowed.get_json()
    assert _fleet_install(world) == "assigned"
    entries = [(e.outcome, detail(e)) for e in audit_entries(world.app, Action.FLEET_INSTALL)]
    [(outcome, said), changed] = entries
    assert outcome == "refused"
    _says_frozen(said["reason"])
    assert changed == ("success", {"from": "assigned", "to": "assigned"})


def test_d10_a_fleet_is_not_set_to_newest_while_frozen_cli(world: World) -> None:
    """R24: the same on the server's host (``fwserver fleet install``)."""
    _freeze(world)
    argv = ["fleet", "install", "--data-dir", str(world.config.data_dir), "pump-x100", "newest"]

    refused = CliRunner().invoke(main, argv, obj=CommandClock(world.clock))

    assert refused.exit_code == 1
    _says_frozen(refused.output)
    assert _fleet_install(world) is None
    [entry] = audit_entries(world.app, Action.FLEET_INSTALL)
    assert entry.outcome == "refused"
    _says_frozen(json.loads(entry.detail)["reason"])
