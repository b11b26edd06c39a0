"""Devices leave a withdrawn release: the poll offers its successor (R56, R57; poll P6, WD1-WD4).

On the real app: releases published and withdrawn through the server's own
upload and publication (``fwsign revoke-release`` offline, as in
``deployments_helpers.withdraw``), devices polling and reporting with
their own keys.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.update_server.deployments_helpers import (
    Pump,
    add_pump,
    create,
    fresh,
    manager,
    publish,
    withdraw,
)
from tests.update_server.devices_helpers import audit_entries, detail
from tests.update_server.repo_world import World
from update_server.audit.actions import Action
from update_server.db import transaction
from update_server.devices.models import Device
from update_server.freeze import state as freeze_state
from update_server.freeze.rules import Freeze, Mode
from update_server.models import Role

OLD, NEXT = "pump-x100/fw-2.0.0.bin", "pump-x100/fw-2.1.0.bin"


@pytest.fixture
def fleet(world: World) -> dict[str, Pump]:
    """pump-a on 2.0.0 (published, then withdrawn), pump-b on a factory 1.0.0; 2.1.0 signed."""
    publish(world, "2.0.0")
    pumps = {name: add_pump(world, name, running="1.0.0") for name in ("pump-a", "pump-b")}
    pumps["pump-a"].report(running="2.0.0")
    withdraw(world, OLD)
    publish(world, "2.1.0")
    return pumps


def assignment(pump: Pump) -> Any:
    answer = pump.poll()
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["assignment"]


def flags(world: World) -> dict[str, Any]:
    admin = world.as_("root", Role.ADMIN)
    listed = world.client.get("/api/v1/devices", headers=admin).get_json()["devices"]
    return {row["device_id"]: row["running_withdrawn"] for row in listed}


def test_p6_a_device_on_a_withdrawn_release_is_offered_its_successor_without_a_deployment(
    world: World, fleet: dict[str, Pump]
) -> None:
    offered = assignment(fleet["pump-a"])
    assert offered["deployment"] is None
    assert (offered["target_path"], offered["version"]) == (NEXT, "2.1.0")
    assert (
        offered["sha256"]
        == world.role_json("pump-x100")["signed"]["targets"][NEXT]["hashes"]["sha256"]
    )
    # An assigned fleet otherwise installs only what a deployment assigns: the
    # factory 1.0.0 was never signed here, so pump-b is only behind (WD2).
    assert assignment(fleet["pump-b"]) is None


def test_p6_the_first_offer_is_audited_once_per_device_and_successor(
    world: World, fleet: dict[str, Pump]
) -> None:
    pump = fleet["pump-a"]
    assignment(pump)
    assignment(pump)
    [offer] = audit_entries(world.app, Action.DEPLOYMENT_ASSIGN)
    assert offer.object == "device:pump-a"
    assert detail(offer) == {
        "device": "pump-a",
        "target": NEXT,
        "version": "2.1.0",
        "running": "2.0.0",
        "reason": "withdrawn",
    }
    publish(world, "2.2.0")  # a newer successor is a new offer, audited too
    assert assignment(pump)["version"] == "2.2.0"
    assert [detail(e)["version"] for e in audit_entries(world.app, Action.DEPLOYMENT_ASSIGN)] == [
        "2.1.0",
        "2.2.0",
    ]


def test_wd3_the_inventory_flags_the_device_until_it_reports_running_the_successor(
    world: World, fleet: dict[str, Pump]
) -> None:
    assert (flags(world)["pump-a"], flags(world)["pump-b"]) == (True, False)
    fleet["pump-a"].report(running="2.1.0")
    assert flags(world)["pump-a"] is False
    assert assignment(fleet["pump-a"]) is None  # left it: nothing more to offer


def test_wd4_no_successor_below_the_devices_floor_the_device_stays_flagged(
    world: World, fleet: dict[str, Pump]
) -> None:
    with transaction(world.services.sessions) as db:
        device = db.get(Device, "pump-a")
        assert device is not None
        device.security_floor = 2  # every signed release here has security version 1
    assert assignment(fleet["pump-a"]) is None
    assert flags(world)["pump-a"] is True
    assert audit_entries(world.app, Action.DEPLOYMENT_ASSIGN) == []


def test_p6_a_deployment_assignment_comes_first(world: World, fleet: dict[str, Pump]) -> None:
    made = create(world, "manager1", target_path=NEXT, fleets=["pump-x100"],
                  success_percent=50, failure_percent=50)  # fmt: skip
    assert made.status_code == 201, made.get_json()
    number = made.get_json()["id"]
    headers = fresh(world, manager(world, "manager2"))
    approved = world.client.post(f"/api/v1/deployments/{number}/approve", headers=headers)
    assert approved.status_code == 200, approved.get_json()
    assert assignment(fleet["pump-a"])["deployment"] == number


def test_p6_a_newest_fleet_takes_the_successor_itself_no_offer(
    world: World, fleet: dict[str, Pump]
) -> None:
    url = "/api/v1/fleets/pump-x100"
    changed = world.client.put(
        url, json={"install": "newest"}, headers=fresh(world, manager(world, "manager1"))
    )
    assert changed.status_code == 200, changed.get_json()
    answer = fleet["pump-a"].poll().get_json()
    assert (answer["install"], answer["assignment"]) == ("newest", None)


def test_p1_p6_frozen_no_successor_is_offered(world: World, fleet: dict[str, Pump]) -> None:
    with transaction(world.services.sessions) as db:
        row = freeze_state.locked(db, now=world.now)
        freeze_state.write(
            row, Freeze(Mode.FROZEN, since=world.now, frozen_by="officer1", reason="test")
        )
    answer = fleet["pump-a"].poll().get_json()
    assert (answer["mode"], answer["assignment"]) == ("frozen", None)
    assert audit_entries(world.app, Action.DEPLOYMENT_ASSIGN) == []
