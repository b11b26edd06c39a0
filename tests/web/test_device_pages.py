"""Device pages (P1, P2 of ``web.device_pages``): pending devices, enrolment tokens.

The devices register through the device API, signed with keys made in the
test (``FakeDevice``); the pages are driven as a browser drives them.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.clocks import FakeClock
from tests.update_server.devices_helpers import FakeDevice, audit_entries, detail
from tests.update_server.people import otp_at
from tests.web.pages import Browser, WebPerson, web_person
from update_server.audit.actions import Action
from update_server.db import transaction
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.models import Role, User

_TOKEN = re.compile(r'id="token">([^<]+)<')


def _logged_in(app: Flask, browser: Browser, clock: FakeClock, name: str, role: Role) -> WebPerson:
    person = web_person(app, browser, clock, name, role)
    assert browser.log_in(name, person.password, otp_at(person.totp, clock)).status_code == 302
    return person


def _issue(browser: Browser, person: WebPerson, clock: FakeClock, **fields: str) -> str:
    """An enrolment token issued on the page, confirmed with the next code (P2)."""
    browser.get("/devices/enrolment-token")
    clock.advance(seconds=30)
    form = {"hardware_model": "pump-x100", "hours": "24", "otp": otp_at(person.totp, clock)}
    answer = browser.post("/devices/enrolment-token", {**form, **fields})
    assert answer.status_code == 201, browser.last_page
    found = _TOKEN.search(browser.last_page)
    assert found is not None
    return found.group(1)


def _state(app: Flask, device_id: str) -> str:
    with transaction(app.extensions["fw"].sessions) as db:
        device = db.get(Device, device_id)
        assert device is not None
        return device.state


def test_an_admin_issues_a_token_with_a_fresh_code_and_accepts_or_rejects_pending_devices_p1_p2(
    app: Flask, browser: Browser, clock: FakeClock, client: FlaskClient
) -> None:
    ada = _logged_in(app, browser, clock, "ada", Role.ADMIN)
    home = browser.get("/")
    assert home.status_code == 200
    assert "/devices/pending" in browser.last_page
    pumps = [FakeDevice("pump-1"), FakeDevice("pump-2")]
    for pump in pumps:
        token = _issue(browser, ada, clock, site="ward-3")
        assert pump.register(client, token, now=clock.now).status_code == 201
    browser.get("/devices/pending")
    assert 'id="device-pump-1"' in browser.last_page
    assert 'id="device-pump-2"' in browser.last_page
    accepted = browser.post("/devices/pump-1/accept", {})
    assert accepted.status_code == 303
    browser.get("/devices/pending")
    assert "Device pump-1 accepted." in browser.last_page
    browser.post("/devices/pump-2/reject", {})
    assert (_state(app, "pump-1"), _state(app, "pump-2")) == ("accepted", "rejected")
    browser.get("/devices/pending")
    assert "No device is waiting." in browser.last_page
    changes = [detail(entry)["change"] for entry in audit_entries(app, Action.DEVICE_CHANGE)]
    assert changes == ["accept", "reject"]
    issued = audit_entries(app, Action.ENROLMENT_TOKEN)
    assert [entry.actor for entry in issued] == ["ada", "ada"]


def test_an_enrolment_token_needs_a_fresh_code_not_the_logins_r9_p2(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    ada = _logged_in(app, browser, clock, "ada", Role.ADMIN)
    browser.get("/devices/enrolment-token")
    login_code = otp_at(ada.totp, clock)
    form = {"hardware_model": "pump-x100", "hours": "24", "otp": login_code}
    answer = browser.post("/devices/enrolment-token", form)
    assert answer.status_code == 401
    assert answer.mimetype == "text/html"
    assert "one-time code refused" in browser.last_page
    assert 'id="token"' not in browser.last_page
    assert audit_entries(app, Action.ENROLMENT_TOKEN) == []
    browser.get("/devices/enrolment-token")
    missing = browser.post("/devices/enrolment-token", {"hardware_model": "pump-x100"})
    assert missing.status_code == 401
    assert audit_entries(app, Action.ENROLMENT_TOKEN) == []


def test_a_technician_decides_only_on_devices_of_their_sites_p1(
    app: Flask, clock: FakeClock, client: FlaskClient
) -> None:
    admin_browser = Browser(app.test_client())
    ada = _logged_in(app, admin_browser, clock, "ada", Role.ADMIN)
    here, there = FakeDevice("pump-here"), FakeDevice("pump-there")
    for pump, site in ((here, "ward-3"), (there, "other-hospital")):
        token = _issue(admin_browser, ada, clock, site=site)
        assert pump.register(client, token, now=clock.now).status_code == 201
    browser = Browser(app.test_client())
    _logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    with transaction(app.extensions["fw"].sessions) as db:
        tom = db.query(User).filter_by(name="tom").one()
        scope.set_sites(db, tom, ["ward-3"])
    browser.get("/devices/pending")
    assert 'id="device-pump-here"' in browser.last_page
    assert "pump-there" not in browser.last_page
    refused = browser.post("/devices/pump-there/accept", {})
    assert refused.status_code == 303
    browser.get("/devices/pending")
    assert "Nothing was changed: no device pump-there" in browser.last_page
    assert _state(app, "pump-there") == "pending"
    assert browser.get("/devices/enrolment-token").status_code == 403
    assert "role technician may not do this" in browser.last_page


@pytest.mark.parametrize("hours", ["0", "721", "99999999999999"])
def test_a_token_lifetime_out_of_range_is_a_400_never_a_500(
    app: Flask, browser: Browser, clock: FakeClock, hours: str
) -> None:
    admin = _logged_in(app, browser, clock, "ada", Role.ADMIN)
    browser.get("/devices/enrolment-token")
    clock.advance(seconds=30)
    form = {"hardware_model": "pump-x100", "hours": hours, "otp": otp_at(admin.totp, clock)}
    answer = browser.post("/devices/enrolment-token", form)
    assert answer.status_code == 400
    assert "1 to 720 hours" in browser.last_page
