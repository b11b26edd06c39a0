"""The deployment pages and the fleet inventory page, driven as a browser drives them.

``web.deployment_pages`` DP1-DP4 over the deployments' own rules
(``rollout`` D1-D7, R9 four eyes), and ``web.fleet_pages`` FL1-FL3 (R6:
the inventory's readers in their scope; R56, R57: a withdrawn release
flagged). Release 2.0.0 is published by the server (``World``, with a
stand-in code for the release engineer); the release managers' codes are
real TOTP codes; the pumps sign their reports (``deployments_helpers``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.deployments_helpers import Pump, add_pump, publish, withdraw
from tests.update_server.devices_helpers import audit_entries, detail
from tests.update_server.people import otp_at
from tests.update_server.repo_world import World, make_world
from tests.web.pages import Browser, WebPerson, web_person
from update_server.audit.actions import Action
from update_server.auth import otp
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.deployments.models import Deployment, DeploymentDevice
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.errors import BadRequestError
from update_server.freeze import state as freeze_state
from update_server.freeze.rules import Freeze, Mode
from update_server.models import Role, User
from update_server.web import fleet_pages
from update_server.web.deployment_pages import read_percent, read_waves

TARGET = "pump-x100/fw-2.0.0.bin"
PUMPS = ("pump-00", "pump-01", "pump-02", "pump-03")
LIST = "/deployments"
FORM = {
    "target_path": TARGET,
    "fleets": "pump-x100",
    "waves": "1, 50%",
    "success_percent": "100",
    "failure_percent": "0",
}


@pytest.fixture
def world(app: Flask, config: ServerConfig, clock: FakeClock, tmp_path: Path) -> Iterator[World]:
    """2.0.0 published by alice (a stand-in code), then real codes for everyone else."""
    with pytest.MonkeyPatch.context() as patch:
        made = make_world(app, config, clock, tmp_path, patch)
        publish(made, "2.0.0")
    yield made


@pytest.fixture
def pumps(world: World) -> dict[str, Pump]:
    """Four pumps of ward 3 on 1.0.0, accepted."""
    return {name: add_pump(world, name, site="ward-3") for name in PUMPS}


def logged_in(app: Flask, clock: FakeClock, name: str, role: Role) -> tuple[Browser, WebPerson]:
    browser = Browser(app.test_client())
    person = web_person(app, browser, clock, name, role)
    assert browser.log_in(name, person.password, otp_at(person.totp, clock)).status_code == 302
    return browser, person


def next_code(person: WebPerson, clock: FakeClock) -> str:
    """A code later than any used so far: the clock moves to the next step."""
    clock.advance(seconds=30)
    return otp_at(person.totp, clock)


def created(browser: Browser, **changes: str) -> int:
    browser.get(f"{LIST}/new")
    answer = browser.post(LIST, {**FORM, **changes})
    assert answer.status_code == 303, browser.last_page
    found = re.search(r"/deployments/(\d+)$", answer.headers["Location"])
    assert found is not None
    return int(found.group(1))


def deployments(app: Flask) -> list[Deployment]:
    with transaction(app.extensions["fw"].sessions) as db:
        return list(db.scalars(select(Deployment).order_by(Deployment.id)))


def waves_of(app: Flask, number: int) -> dict[int, list[str]]:
    with transaction(app.extensions["fw"].sessions) as db:
        rows = db.scalars(select(DeploymentDevice).where(DeploymentDevice.deployment_id == number))
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(row.wave + 1, []).append(row.device_id)
        return found


def started(page: str, wave: int) -> bool:
    found = re.search(rf'id="wave-{wave}" data-started="(yes|no)"', page)
    assert found is not None, page
    return found.group(1) == "yes"


def set_mode(app: Flask, clock: FakeClock, mode: Mode) -> None:
    with transaction(app.extensions["fw"].sessions) as db:
        row = freeze_state.locked(db, now=clock.now)
        freeze_state.write(
            row, Freeze(mode, since=clock.now, frozen_by="officer1", reason="a key may have leaked")
        )


# -- DP2: reading the form --------------------------------------------------------------


def test_dp2_waves_read_as_percentages_or_counts_in_order() -> None:
    assert read_waves("10%, 50%, 100%") == [{"percent": 10}, {"percent": 50}, {"percent": 100}]
    assert read_waves(" 1 ,5; 20 % ") == [{"count": 1}, {"count": 5}, {"percent": 20}]
    assert read_waves("  ") == []
    for bad in ("ten", "10%%", "-1", "1.5", "5 devices"):
        with pytest.raises(BadRequestError, match="neither a number of devices nor a percentage"):
            read_waves(bad)


def test_dp2_a_threshold_is_a_whole_number_of_percent() -> None:
    assert read_percent(" 90 ", "success threshold") == 90
    assert read_percent("5%", "failure threshold") == 5
    for bad in ("", "ninety", "9.5", "1000"):
        with pytest.raises(BadRequestError, match="success threshold: type a whole number"):
            read_percent(bad, "success threshold")


# -- DP1, DP2: the list and the form ------------------------------------------------------


def test_dp1_dp2_a_release_manager_creates_a_deployment_from_the_published_releases(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    browser, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    browser.get("/")
    assert 'href="/deployments"' in browser.last_page
    assert 'href="/deployments/new"' in browser.last_page
    browser.get(f"{LIST}/new")
    assert f'value="{TARGET}"' in browser.last_page, "the published release to choose"
    assert 'id="fleet-pump-x100"' in browser.last_page

    number = created(browser)

    page = browser.get(f"{LIST}/{number}").get_data(as_text=True)
    assert "Deployment 1 created: 4 devices in 3 waves of 1, 2, 1" in page
    assert "waits for another release manager" in page
    assert 'id="state">awaiting approval' in page
    assert "You created this deployment: another release manager approves it" in page
    assert 'id="approve-form"' not in page, "no approve button for its creator"
    assert not started(page, 1)
    [made] = deployments(app)
    assert (made.state, made.wave_sizes, made.created_by) == (
        "awaiting_approval",
        [1, 2, 1],
        "manager1",
    )
    [entry] = audit_entries(app, Action.DEPLOYMENT_CREATE)
    assert (entry.actor, entry.outcome) == ("manager1", "success")
    listed = browser.get(LIST).get_data(as_text=True)
    assert 'id="deployment-1"' in listed and "0 of 3 started" in listed and "4 assigned" in listed


@pytest.mark.parametrize(
    ("changes", "status", "says"),
    [
        ({"waves": "10%, lots"}, 400, "waves: &#39;lots&#39; is neither a number of devices"),
        ({"waves": "0"}, 400, "wave 1: a count is at least 1"),
        ({"success_percent": "0"}, 400, "the success threshold is a percentage from 1 to 100"),
        ({"failure_percent": "many"}, 400, "failure threshold: type a whole number of percent"),
        ({"fleets": ""}, 400, "name at least one group or fleet"),
        ({"target_path": ""}, 400, "choose the published release to deploy"),
        ({"target_path": "pump-x100/fw-9.9.9.bin"}, 404, "is not a published firmware release"),
    ],
)
def test_dp2_a_refused_form_creates_nothing_and_says_what_to_fix(
    app: Flask,
    clock: FakeClock,
    pumps: dict[str, Pump],
    changes: dict[str, str],
    status: int,
    says: str,
) -> None:
    browser, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    browser.get(f"{LIST}/new")
    form = {**FORM, **changes}
    if not form["fleets"]:
        del form["fleets"]

    answer = browser.post(LIST, form)

    assert answer.status_code == status
    assert "Nothing was created: " in browser.last_page
    assert says in browser.last_page
    assert f'value="{form["waves"]}"' in browser.last_page, "the form as typed"
    assert deployments(app) == []
    [refused] = audit_entries(app, Action.DEPLOYMENT_CREATE)
    assert (refused.actor, refused.outcome) == ("manager1", "refused")


def test_dp2_devices_of_another_open_deployment_are_refused_d2(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    browser, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    created(browser)
    browser.get(f"{LIST}/new")
    again = browser.post(LIST, FORM)
    assert again.status_code == 409
    assert "devices are in another open deployment" in browser.last_page
    assert "abort that one first" in browser.last_page
    assert len(deployments(app)) == 1


# -- DP3: four eyes and the steps ---------------------------------------------------------


def test_dp3_the_creators_own_approval_is_refused_with_the_reason_shown_r9(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    browser, manager1 = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(browser)
    browser.get(f"{LIST}/{number}")
    own = browser.post(f"{LIST}/{number}/approve", {"otp": next_code(manager1, clock)})
    assert own.status_code == 403
    assert "Nothing was changed: you created deployment 1: another release manager" in (
        browser.last_page
    )
    assert deployments(app)[0].state == "awaiting_approval"
    [refused] = audit_entries(app, Action.DEPLOYMENT_APPROVE)
    assert (refused.actor, refused.outcome) == ("manager1", "refused")
    assert "four eyes" in detail(refused)["reason"]


def test_dp3_another_manager_approves_with_a_fresh_code_and_the_waves_follow_the_reports_r9(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    creator, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    browser, manager2 = logged_in(app, clock, "manager2", Role.RELEASE_MANAGER)
    page = browser.get(f"{LIST}/{number}").get_data(as_text=True)
    assert 'id="approve-form"' in page

    login_code = otp_at(manager2.totp, clock)
    refused = browser.post(f"{LIST}/{number}/approve", {"otp": login_code})
    assert refused.status_code == 401
    assert 'id="error"' in browser.last_page and "one-time code refused" in browser.last_page
    assert deployments(app)[0].state == "awaiting_approval"

    approved = browser.post(f"{LIST}/{number}/approve", {"otp": next_code(manager2, clock)})
    assert approved.status_code == 303, browser.last_page
    page = browser.get(f"{LIST}/{number}").get_data(as_text=True)
    assert "You approved deployment 1: it is running." in page
    assert 'id="approved-by">manager2' in page
    assert started(page, 1) and not started(page, 2)

    waves = waves_of(app, number)
    (first,) = waves[1]
    pumps[first].report(running="2.0.0")
    page = browser.get(f"{LIST}/{number}").get_data(as_text=True)
    assert f'id="device-{first}" data-status="installed"' in page
    assert started(page, 2) and not started(page, 3)
    assert "1 installed, 0 failed" in page


def test_dp3_a_failure_shows_its_event_and_the_stop_its_reason(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    creator, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    browser, manager2 = logged_in(app, clock, "manager2", Role.RELEASE_MANAGER)
    browser.get(f"{LIST}/{number}")
    browser.post(f"{LIST}/{number}/approve", {"otp": next_code(manager2, clock)})
    (first,) = waves_of(app, number)[1]
    pumps[first].logs("rolled_back", "health check failed", version="2.0.0").report()

    page = browser.get(f"{LIST}/{number}").get_data(as_text=True)

    assert re.search(rf'id="device-{first}" data-status="failed">.*rolled_back', page)
    assert 'id="state">stopped' in page
    assert "wave 1: 1 of 1 devices failed or refused the target" in page
    assert 'id="abort-form"' not in page, "a stopped deployment has ended"


def test_dp3_pause_and_resume_take_no_code_abort_takes_a_fresh_one(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    creator, manager1 = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    browser, manager2 = logged_in(app, clock, "manager2", Role.RELEASE_MANAGER)
    browser.get(f"{LIST}/{number}")
    browser.post(f"{LIST}/{number}/approve", {"otp": next_code(manager2, clock)})

    creator.get(f"{LIST}/{number}")
    assert creator.post(f"{LIST}/{number}/pause", {}).status_code == 303
    assert "is paused" in creator.get(f"{LIST}/{number}").get_data(as_text=True)
    assert deployments(app)[0].state == "paused"
    assert 'id="resume-form"' in creator.last_page and 'id="pause-form"' not in creator.last_page
    assert creator.post(f"{LIST}/{number}/resume", {}).status_code == 303
    assert deployments(app)[0].state == "running"

    creator.get(f"{LIST}/{number}")
    missing = creator.post(f"{LIST}/{number}/abort", {"otp": ""})
    assert missing.status_code == 401
    assert "needs a fresh one-time code" in creator.last_page
    assert deployments(app)[0].state == "running"
    assert (
        creator.post(f"{LIST}/{number}/abort", {"otp": next_code(manager1, clock)}).status_code
        == 303
    )
    page = creator.get(f"{LIST}/{number}").get_data(as_text=True)
    assert "Deployment 1 is aborted" in page
    assert deployments(app)[0].state == "aborted"

    again = creator.post(f"{LIST}/{number}/pause", {})
    assert again.status_code == 409
    assert "deployment 1 is aborted: it cannot be paused (it has ended)" in creator.last_page
    actions = [(e.action, e.outcome) for e in audit_entries(app, Action.DEPLOYMENT_PAUSE)]
    assert actions == [("deployment.pause", "success"), ("deployment.pause", "refused")]


def test_dp3_dp4_while_frozen_the_pages_say_so_and_an_approval_is_refused_with_the_freeze(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    creator, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    set_mode(app, clock, Mode.FROZEN)
    browser, manager2 = logged_in(app, clock, "manager2", Role.RELEASE_MANAGER)
    listed = browser.get(LIST).get_data(as_text=True)
    assert 'id="frozen"' in listed and "a key may have leaked" in listed

    browser.get(f"{LIST}/{number}")
    refused = browser.post(f"{LIST}/{number}/approve", {"otp": next_code(manager2, clock)})

    assert refused.status_code == 423
    page = browser.last_page
    assert "Nothing was changed: the system is frozen by officer1" in page
    assert "a key may have leaked; two security officers lift it" in page
    assert deployments(app)[0].state == "awaiting_approval"
    [entry] = audit_entries(app, Action.DEPLOYMENT_APPROVE)
    assert entry.outcome == "refused"
    # The code is spent all the same (R25): sent again, it is a replay.
    replayed = browser.post(f"{LIST}/{number}/approve", {"otp": otp_at(manager2.totp, clock)})
    assert replayed.status_code == 401


def test_dp1_other_readers_see_the_deployment_and_no_form_technicians_not_at_all(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    creator, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    auditor, _ = logged_in(app, clock, "audrey", Role.AUDITOR)
    page = auditor.get(f"{LIST}/{number}").get_data(as_text=True)
    assert 'id="plan"' in page and 'id="device-pump-00"' in page
    assert "<form" not in page.split("</header>")[1], "no form but the logout"
    assert auditor.post(f"{LIST}/{number}/pause", {}).status_code == 403
    assert auditor.get(f"{LIST}/new").status_code == 403
    technician, _ = logged_in(app, clock, "tom", Role.TECHNICIAN)
    assert technician.get(LIST).status_code == 403
    assert technician.get(f"{LIST}/{number}").status_code == 403


def test_w3_a_step_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump]
) -> None:
    creator, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    browser, manager2 = logged_in(app, clock, "manager2", Role.RELEASE_MANAGER)
    browser.get(f"{LIST}/{number}")
    code = next_code(manager2, clock)
    forged = browser.post(f"{LIST}/{number}/approve", {"otp": code}, token="forged")
    assert forged.status_code == 400
    assert "did not come from this site" in browser.last_page
    elsewhere = browser.post(LIST, FORM, token="", referer="https://evil.example")
    assert elsewhere.status_code == 400
    assert deployments(app)[0].state == "awaiting_approval" and len(deployments(app)) == 1
    browser.get(f"{LIST}/{number}")
    assert browser.post(f"{LIST}/{number}/approve", {"otp": code}).status_code == 303, (
        "the forged form spent no code"
    )


# -- FL1-FL3: the fleet inventory ---------------------------------------------------------


def test_fl1_fl2_an_admin_sees_each_device_its_version_and_its_deployment(
    app: Flask, clock: FakeClock, world: World, pumps: dict[str, Pump]
) -> None:
    add_pump(world, "pump-far", site="other-hospital", running="2.0.0")
    creator, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    number = created(creator)
    admin, _ = logged_in(app, clock, "ada", Role.ADMIN)
    admin.get("/")
    assert 'href="/fleet"' in admin.last_page

    page = admin.get("/fleet").get_data(as_text=True)

    assert 'id="total">5 devices' in page
    card = _card(page, "pump-00")
    assert "pump-x100" in card and "ward-3" in card and "1.0.0" in card
    assert f'href="/deployments/{number}">{number}</a> (awaiting approval)' in card
    assert "assigned" in card
    assert 'data-withdrawn="no"' in card
    far = _card(page, "pump-far")
    assert "other-hospital" in far and "2.0.0" in far
    assert '<dd class="deployment">none</dd>' in far


def test_fl1_a_technician_sees_the_devices_of_their_sites_only_and_others_none_r6(
    app: Flask, clock: FakeClock, world: World, pumps: dict[str, Pump]
) -> None:
    add_pump(world, "pump-far", site="other-hospital")
    technician, _ = logged_in(app, clock, "tom", Role.TECHNICIAN)
    with transaction(app.extensions["fw"].sessions) as db:
        tom = db.scalars(select(User).where(User.name == "tom")).one()
        scope.set_sites(db, tom, ["ward-3"])
    page = technician.get("/fleet").get_data(as_text=True)
    assert 'id="total">4 devices in your sites' in page
    assert 'id="device-pump-00"' in page and "pump-far" not in page
    manager, _ = logged_in(app, clock, "manager1", Role.RELEASE_MANAGER)
    assert manager.get("/fleet").status_code == 403


def test_fl2_a_device_on_a_withdrawn_release_and_a_log_alert_are_flagged_r56_r57(
    app: Flask, clock: FakeClock, world: World, pumps: dict[str, Pump]
) -> None:
    add_pump(world, "pump-on-2", site="ward-3", running="2.0.0")
    with transaction(app.extensions["fw"].sessions) as db:
        device = db.get(Device, "pump-01")
        assert device is not None
        device.log_alert, device.log_alert_at = "log chain broken at 7", clock.now
    with pytest.MonkeyPatch.context() as patch:  # alice's stand-in code, as when publishing
        patch.setattr(otp, "consume", world.otp)
        withdraw(world, TARGET)
        publish(world, "2.1.0")
    admin, _ = logged_in(app, clock, "ada", Role.ADMIN)

    page = admin.get("/fleet").get_data(as_text=True)

    flagged = _card(page, "pump-on-2")
    assert 'data-withdrawn="yes"' in flagged
    assert "Runs a withdrawn release (2.0.0)" in flagged
    assert 'data-withdrawn="no"' in _card(page, "pump-00"), "1.0.0 is only behind 2.1.0"
    assert "Log alert: log chain broken at 7" in _card(page, "pump-01")


def test_fl3_devices_come_a_page_at_a_time_after_the_last_id_shown(
    app: Flask, clock: FakeClock, pumps: dict[str, Pump], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_pages, "PAGE", 3)
    admin, _ = logged_in(app, clock, "ada", Role.ADMIN)
    first = admin.get("/fleet").get_data(as_text=True)
    assert re.findall(r'id="device-([^"]+)"', first) == ["pump-00", "pump-01", "pump-02"]
    assert 'href="/fleet?after=pump-02"' in first
    second = admin.get("/fleet?after=pump-02").get_data(as_text=True)
    assert re.findall(r'id="device-([^"]+)"', second) == ["pump-03"]
    assert 'id="next"' not in second


def _card(page: str, device: str) -> str:
    found = re.search(rf'<li class="card" id="device-{device}".*?</li>', page, re.S)
    assert found is not None, page
    return found.group(0)
