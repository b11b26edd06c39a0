"""Deployments on the real app (update_server.deployments: D1-D8, P1-P5, S1-S4, GR1-GR5).

R9 (four eyes), R56/R57 (a withdrawn release), issue 11's deployments in
waves with pause, resume, abort and an automatic stop; the device poll's
contract; per-device status fed by the device's signed reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.update_server.deployments_helpers import (
    DEPLOYMENTS,
    Pump,
    act,
    add_pump,
    create,
    fresh,
    in_waves,
    manager,
    publish,
    shown,
    withdraw,
)
from tests.update_server.devices_helpers import audit_entries, detail
from tests.update_server.repo_world import World
from update_server.audit.actions import Action
from update_server.db import transaction
from update_server.deployments.models import Deployment
from update_server.freeze import state as freeze_state
from update_server.freeze.rules import Freeze, Mode
from update_server.models import Role

PATH = "pump-x100/fw-2.0.0.bin"


@pytest.fixture
def fleet(world: World) -> dict[str, Pump]:
    """Ten pumps on 1.0.0 and release 2.0.0 published."""
    publish(world, "2.0.0")
    return {f"pump-{n:02}": add_pump(world, f"pump-{n:02}") for n in range(10)}


def _running(world: World, **body: Any) -> int:
    """A deployment of 2.0.0 made by manager1 and approved by manager2."""
    made = create(world, "manager1", target_path=PATH, **body)
    assert made.status_code == 201, made.get_json()
    number: int = made.get_json()["id"]
    approved = act(world, "manager2", number, "approve")
    assert approved.status_code == 200, approved.get_json()
    return number


def _assignment(pump: Pump) -> Any:
    answer = pump.poll()
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["assignment"]


def test_r9_the_creators_own_approval_is_refused_audited_and_changes_nothing(
    world: World, fleet: dict[str, Pump]
) -> None:
    made = create(
        world, "manager1", target_path=PATH, fleets=["pump-x100"], success_percent=90,
        failure_percent=10,
    )  # fmt: skip
    assert made.status_code == 201, made.get_json()
    number = made.get_json()["id"]
    assert made.get_json()["state"] == "awaiting_approval"

    own = act(world, "manager1", number, "approve")

    assert own.status_code == 403
    assert "another release manager" in own.get_json()["detail"]
    [refused] = audit_entries(world.app, Action.DEPLOYMENT_APPROVE)
    assert (refused.actor, refused.outcome) == ("manager1", "refused")
    assert shown(world, number)["state"] == "awaiting_approval"
    assert _assignment(fleet["pump-00"]) is None  # nothing is served before approval
    approved = act(world, "manager2", number, "approve")
    assert approved.status_code == 200
    assert (approved.get_json()["state"], approved.get_json()["approved_by"]) == (
        "running",
        "manager2",
    )


def test_r9_approval_needs_a_fresh_code_and_a_release_manager(
    world: World, fleet: dict[str, Pump]
) -> None:
    made = create(
        world, "manager1", target_path=PATH, fleets=["pump-x100"], success_percent=90,
        failure_percent=10,
    )  # fmt: skip
    number = made.get_json()["id"]
    assert act(world, "manager2", number, "approve", code=False).status_code == 401
    engineer = world.as_("alice", Role.RELEASE_ENGINEER)
    answer = world.client.post(f"{DEPLOYMENTS}/{number}/approve", headers=fresh(world, engineer))
    assert answer.status_code == 403
    assert shown(world, number)["state"] == "awaiting_approval"


def test_p1_p5_the_poll_answers_the_contract_and_records_the_check_in(
    world: World, fleet: dict[str, Pump]
) -> None:
    pumps = {**fleet, "pump-99": add_pump(world, "pump-99", site="south")}
    number = _running(
        world, groups=[], fleets=["pump-x100"], success_percent=90, failure_percent=10,
        waves=[{"count": 3}],
    )  # fmt: skip
    first, second = in_waves(world, number)
    assert (len(first), len(second)) == (3, 8)  # pump-99 too: the whole fleet

    body = pumps[first[0]].poll().get_json()

    assert set(body) == {"mode", "install", "assignment", "window"}
    published = world.role_json("pump-x100")["signed"]["targets"][PATH]["hashes"]["sha256"]
    assert body == {
        "mode": "normal",
        "install": "assigned",
        "assignment": {
            "deployment": number,
            "target_path": PATH,
            "sha256": published,
            "version": "2.0.0",
        },
        "window": None,
    }
    device = next(row for row in shown(world, number)["devices"] if row["device_id"] == first[0])
    assert device["checked_in_at"] == world.now.isoformat()
    [assigned] = audit_entries(world.app, Action.DEPLOYMENT_ASSIGN)
    assert assigned.actor == f"device:{first[0]}"
    # A device in a wave not started yet, or in no deployment, is assigned nothing.
    assert _assignment(pumps[second[0]]) is None
    lonely = add_pump(world, "pump-77")
    assert lonely.poll().get_json() == {
        "mode": "normal",
        "install": "assigned",
        "assignment": None,
        "window": None,
    }


def test_a_wave_starts_when_the_previous_one_reaches_its_success_threshold(
    world: World, fleet: dict[str, Pump]
) -> None:
    number = _running(
        world, fleets=["pump-x100"], success_percent=50, failure_percent=50,
        waves=[{"count": 2}, {"percent": 30}],
    )  # fmt: skip
    first, second, rest = in_waves(world, number)
    assert (len(first), len(second), len(rest)) == (2, 3, 5)
    fleet[first[0]].logs("updated", version="2.0.0", slot="b").report(running="2.0.0")

    after = shown(world, number)
    assert [wave["started"] for wave in after["waves"]] == [True, True, False]
    assert _assignment(fleet[second[0]])["target_path"] == PATH
    waves_started = audit_entries(world.app, Action.DEPLOYMENT_WAVE)
    assert [detail(entry)["wave"] for entry in waves_started] == [1, 2]
    assert waves_started[1].actor == "fwserver"


def test_a_wave_past_its_failure_threshold_stops_the_deployment_itself_audited(
    world: World, fleet: dict[str, Pump]
) -> None:
    number = _running(
        world, fleets=["pump-x100"], success_percent=100, failure_percent=30,
        waves=[{"count": 4}],
    )  # fmt: skip
    first, _rest = in_waves(world, number)
    fleet[first[0]].logs("rolled_back", "health check failed", version="2.0.0").report()
    assert shown(world, number)["state"] == "running"  # 1 of 4: 25%, not past 30%

    fleet[first[1]].logs("bad_hash", "not the signed bytes", target=PATH).report()

    after = shown(world, number)
    assert after["state"] == "stopped"
    assert after["reason"].startswith("failures: wave 1: 2 of 4 devices")
    [stopped] = audit_entries(world.app, Action.DEPLOYMENT_STOPPED)
    assert (stopped.actor, detail(stopped)["reason"]) == ("fwserver", "failures")
    assert _assignment(fleet[first[2]]) is None  # a stopped deployment assigns nothing
    assert [wave["started"] for wave in after["waves"]] == [True, False]


def test_pause_resume_and_abort_each_by_a_release_manager_abort_with_a_fresh_code(
    world: World, fleet: dict[str, Pump]
) -> None:
    number = _running(world, fleets=["pump-x100"], success_percent=90, failure_percent=10)
    pump = fleet["pump-00"]
    assert _assignment(pump) is not None

    assert act(world, "manager1", number, "pause", code=False).get_json()["state"] == "paused"
    assert _assignment(pump) is None  # D8: paused serves nothing
    assert act(world, "manager1", number, "pause", code=False).status_code == 409
    assert act(world, "manager2", number, "resume", code=False).get_json()["state"] == "running"
    assert _assignment(pump) is not None
    assert act(world, "manager1", number, "abort", code=False).status_code == 401
    aborted = act(world, "manager1", number, "abort")
    assert (aborted.get_json()["state"], aborted.get_json()["reason"]) == (
        "aborted",
        "aborted by manager1",
    )
    assert _assignment(pump) is None
    assert act(world, "manager1", number, "resume", code=False).status_code == 409
    actions = [Action.DEPLOYMENT_PAUSE, Action.DEPLOYMENT_RESUME, Action.DEPLOYMENT_ABORT]
    outcomes = {a: [e.outcome for e in audit_entries(world.app, a)] for a in actions}
    assert outcomes == {
        Action.DEPLOYMENT_PAUSE: ["success", "refused"],
        Action.DEPLOYMENT_RESUME: ["success", "refused"],
        Action.DEPLOYMENT_ABORT: ["success"],
    }


def test_s1_s4_each_devices_status_is_fed_by_its_reports(
    world: World, fleet: dict[str, Pump]
) -> None:
    number = _running(world, fleets=["pump-x100"], success_percent=100, failure_percent=100)
    pumps = [fleet[f"pump-0{n}"] for n in range(5)]
    pumps[0].logs("checked", target=PATH, version="2.0.0").report()
    pumps[1].logs("deferred_window", "outside the maintenance window", target=PATH).report()
    pumps[2].logs("firmware_downgrade", "below this device's floor 3", target=PATH).report()
    pumps[3].logs("rolled_back", "its health check failed", version="2.0.0").report()
    pumps[4].logs("updated", version="2.0.0").report(running="2.0.0")

    rows = {row["device_id"]: row for row in shown(world, number)["devices"]}

    seen = [(rows[p.id]["status"], rows[p.id]["event"], rows[p.id]["reason"]) for p in pumps]
    assert seen == [
        ("downloading", "checked", None),
        ("deferred", "deferred_window", "outside the maintenance window"),
        ("refused", "firmware_downgrade", "below this device's floor 3"),
        ("failed", "rolled_back", "its health check failed"),
        ("installed", "updated", None),
    ]
    assert rows["pump-05"]["status"] == "assigned"
    counts = shown(world, number)["statuses"]
    assert (counts["installed"], counts["failed"], counts["refused"], counts["assigned"]) == (
        1,
        1,
        1,
        5,
    )


def test_r56_r57_a_withdrawn_target_stops_its_deployment_and_is_never_assigned(
    world: World, fleet: dict[str, Pump]
) -> None:
    number = _running(world, fleets=["pump-x100"], success_percent=90, failure_percent=10)
    pump = fleet["pump-00"]
    assert _assignment(pump)["target_path"] == PATH

    withdraw(world, PATH)

    assert _assignment(pump) is None
    after = shown(world, number)
    assert (after["state"], after["reason"]) == (
        "stopped",
        "withdrawn: the published metadata no longer signs the target",
    )
    [stopped] = audit_entries(world.app, Action.DEPLOYMENT_STOPPED)
    assert detail(stopped)["reason"] == "withdrawn"
    # Nor can a new deployment name it.
    again = create(world, "manager1", target_path=PATH, fleets=["pump-x100"],
                   success_percent=90, failure_percent=10)  # fmt: skip
    assert again.status_code == 404


def test_r56_a_device_running_a_withdrawn_release_shows_it_in_the_inventory(
    world: World, fleet: dict[str, Pump]
) -> None:
    """WD1: on a release no longer signed, with nothing newer signed; not if only behind."""
    publish(world, "1.5.0")
    fleet["pump-00"].report(running="2.0.0")
    admin = world.as_("root", Role.ADMIN)

    def flags() -> dict[str, Any]:
        listed = world.client.get("/api/v1/devices", headers=admin).get_json()["devices"]
        return {row["device_id"]: row["running_withdrawn"] for row in listed}

    assert (flags()["pump-00"], flags()["pump-01"]) == (False, False)
    withdraw(world, PATH)
    assert (flags()["pump-00"], flags()["pump-01"]) == (True, False)  # 1.5.0 is newer than 1.0.0


def test_d1_d2_what_a_deployment_may_name_refusals_audited(
    world: World, fleet: dict[str, Pump]
) -> None:
    body = {"fleets": ["pump-x100"], "success_percent": 90, "failure_percent": 10}
    unknown = create(world, "manager1", target_path="pump-x100/fw-9.9.9.bin", **body)
    assert unknown.status_code == 404
    nobody = create(world, "manager1", target_path=PATH, **{**body, "fleets": ["monitor-m20"]})
    assert nobody.status_code == 409
    assert "no device" in nobody.get_json()["detail"]
    no_policy = create(world, "manager1", target_path=PATH, fleets=["pump-x100"])
    assert no_policy.status_code == 400  # thresholds are required
    assert create(world, "manager1", target_path=PATH, **body).status_code == 201
    busy = create(world, "manager1", target_path=PATH, **body)
    assert busy.status_code == 409
    assert "another open deployment" in busy.get_json()["detail"]
    outcomes = [e.outcome for e in audit_entries(world.app, Action.DEPLOYMENT_CREATE)]
    assert outcomes == ["refused", "refused", "success", "refused"]
    with transaction(world.services.sessions) as db:
        assert len(db.scalars(select(Deployment)).all()) == 1


def test_d1_devices_already_running_the_release_or_newer_are_left_out(
    world: World, fleet: dict[str, Pump]
) -> None:
    fleet["pump-00"].report(running="2.0.0")
    fleet["pump-01"].report(running="3.1.0")
    made = create(world, "manager1", target_path=PATH, fleets=["pump-x100"],
                  success_percent=90, failure_percent=10)  # fmt: skip
    devices = {row["device_id"] for row in made.get_json()["devices"]}
    assert devices == {f"pump-0{n}" for n in range(2, 10)}


def test_gr1_gr2_static_and_dynamic_groups_name_the_devices_of_a_deployment(
    world: World, fleet: dict[str, Pump]
) -> None:
    add_pump(world, "pump-s1", site="south")
    add_pump(world, "pump-s2", site="south")
    editor = manager(world, "manager1")
    made = world.client.post(
        "/api/v1/groups", json={"name": "canary", "kind": "static"}, headers=editor
    )
    assert made.status_code == 201, made.get_json()
    added = world.client.post(
        "/api/v1/groups/canary/members", json={"device_ids": ["pump-03", "pump-04"]},
        headers=editor,
    )  # fmt: skip
    assert added.get_json()["devices"] == ["pump-03", "pump-04"]
    south = world.client.post(
        "/api/v1/groups",
        json={"name": "south", "kind": "dynamic", "criteria": {"site": "south"}},
        headers=editor,
    )
    assert south.get_json()["devices"] == ["pump-s1", "pump-s2"]
    unknown = world.client.post(
        "/api/v1/groups/canary/members", json={"device_ids": ["pump-nope"]}, headers=editor
    )
    assert unknown.status_code == 404
    made = create(world, "manager1", target_path=PATH, groups=["canary", "south"],
                  success_percent=90, failure_percent=10)  # fmt: skip
    assert {row["device_id"] for row in made.get_json()["devices"]} == {
        "pump-03", "pump-04", "pump-s1", "pump-s2",
    }  # fmt: skip
    changes = [(detail(e)["change"], e.outcome) for e in audit_entries(world.app, "group.change")]
    assert changes == [
        ("create", "success"), ("add", "success"), ("create", "success"), ("add", "refused"),
    ]  # fmt: skip


def test_p4_a_groups_maintenance_window_reaches_its_devices_poll(
    world: World, fleet: dict[str, Pump]
) -> None:
    editor = manager(world, "manager1")
    world.client.post(
        "/api/v1/groups", json={"name": "north", "kind": "dynamic", "criteria": {"site": "north"}},
        headers=editor,
    )  # fmt: skip
    window = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "02:00",
              "duration_minutes": 120, "timezone": "Europe/Paris"}  # fmt: skip
    answer = world.client.put("/api/v1/groups/north/window", json=window, headers=editor)
    assert answer.status_code == 200, answer.get_json()
    wrong = world.client.put(
        "/api/v1/groups/north/window", json={**window, "timezone": "Mars/Olympus"}, headers=editor
    )
    assert wrong.status_code == 400
    assert "IANA" in wrong.get_json()["detail"]

    polled = fleet["pump-00"].poll().get_json()["window"]

    assert polled is not None
    opens, closes = (datetime.fromisoformat(polled[k]) for k in ("opens", "closes"))
    assert (closes - opens).total_seconds() == 7200
    assert closes > world.now


def test_gr4_a_fleet_installs_only_what_is_assigned_unless_newest_is_set_explicitly(
    world: World, fleet: dict[str, Pump]
) -> None:
    pump = fleet["pump-00"]
    assert pump.poll().get_json()["install"] == "assigned"
    editor = manager(world, "manager1")
    url = "/api/v1/fleets/pump-x100"
    assert world.client.put(url, json={"install": "newest"}, headers=editor).status_code == 401
    answer = world.client.put(url, json={"install": "newest"}, headers=fresh(world, editor))
    assert answer.status_code == 200, answer.get_json()
    assert pump.poll().get_json()["install"] == "newest"
    listed = world.client.get("/api/v1/fleets", headers=editor).get_json()
    assert listed["default"] == "assigned"
    assert [row["install"] for row in listed["fleets"]] == ["newest"]
    [changed] = audit_entries(world.app, Action.FLEET_INSTALL)
    assert detail(changed) == {"from": "assigned", "to": "newest"}


def _set_mode(world: World, mode: Mode) -> None:
    """The failsafe freeze entered or left through its own state module (part A's rules)."""
    with transaction(world.services.sessions) as db:
        row = freeze_state.locked(db, now=world.now)
        freeze_state.write(row, Freeze(mode, since=world.now, frozen_by="officer1", reason="test"))


def test_d7_frozen_no_wave_starts_nothing_is_assigned_and_the_poll_says_frozen(
    world: World, fleet: dict[str, Pump]
) -> None:
    made = create(world, "manager1", target_path=PATH, fleets=["pump-x100"],
                  waves=[{"count": 2}], success_percent=50, failure_percent=50)  # fmt: skip
    number = made.get_json()["id"]
    _set_mode(world, Mode.FROZEN)

    refused = act(world, "manager2", number, "approve")

    assert refused.status_code == 423
    assert shown(world, number)["state"] == "awaiting_approval"
    assert fleet["pump-00"].poll().get_json()["mode"] == "frozen"
    _set_mode(world, Mode.NORMAL)
    assert act(world, "manager2", number, "approve").status_code == 200
    first, _rest = in_waves(world, number)
    _set_mode(world, Mode.FROZEN)
    fleet[first[0]].logs("updated", version="2.0.0").report(running="2.0.0")
    polled = fleet[first[1]].poll().get_json()
    assert (polled["mode"], polled["assignment"]) == ("frozen", None)
    assert [wave["started"] for wave in shown(world, number)["waves"]] == [True, False]
    _set_mode(world, Mode.NORMAL)
    assert [wave["started"] for wave in shown(world, number)["waves"]] == [True, True]


def test_p7_a_device_already_past_the_deployments_release_is_not_assigned_it(
    world: World, fleet: dict[str, Pump]
) -> None:
    """P7, R13: a pump that reports a newer release than assigned is told nothing to do.

    It got there another way (a later deployment, since aborted; a
    technician); handing it the older target would be refused as a downgrade
    at every poll. The others still get it.
    """
    _running(world, fleets=["pump-x100"], success_percent=90, failure_percent=10)
    fleet["pump-00"].report(running="2.1.0")
    assert _assignment(fleet["pump-00"]) is None
    assert _assignment(fleet["pump-01"])["target_path"] == PATH
    fleet["pump-01"].report(running="2.0.0")  # installed: what it runs is assigned, up to date
    assert _assignment(fleet["pump-01"])["target_path"] == PATH
