"""The technician's pages (T1-T3 of ``web.technician_pages``), driven as a browser drives them.

R9 (a fresh code confirms; the login's cannot), R6 (a technician sees their
sites only), R58 (who authorized what). The published repository is the
server's own (``World``: signed in the test, published with a stand-in code
for the release engineer); the technician's codes are real TOTP codes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.people import otp_at
from tests.update_server.repo_world import make_world
from tests.web.pages import Browser, WebPerson, web_person
from update_server.audit.actions import Action
from update_server.authorizations import issuing
from update_server.authorizations.models import IssuedAuthorization
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.models import AuditEntry, Role, User
from update_server.web.technician_pages import seconds_until_next_code

TARGET = "pump-x100/fw-2.0.0.bin"
DEVICES = "/technician/devices"
AUTHORIZE = "/technician/authorizations"


@pytest.fixture
def published(app: Flask, config: ServerConfig, clock: FakeClock, tmp_path: Path) -> Iterator[None]:
    """Release 2.0.0 of the pump line, requiring an authorization, published by alice."""
    with pytest.MonkeyPatch.context() as patch:  # alice's code is a stand-in; tom's are real
        world = make_world(app, config, clock, tmp_path, patch)
        upload = world.release("alice", "2.0.0", requires_authorization=True)
        assert world.publish("alice", upload).status_code == 200
    yield


def add_device(app: Flask, clock: FakeClock, device_id: str, site: str, **fields: Any) -> None:
    with transaction(app.extensions["fw"].sessions) as db:
        db.add(
            Device(
                id=device_id,
                hardware_model="pump-x100",
                site=site,
                state=fields.pop("state", "accepted"),
                public_key={"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00"}},
                key_id="00" * 32,
                registered_at=clock.now,
                running_version=fields.pop("running_version", "1.0.0"),
                **fields,
            )
        )


@pytest.fixture
def ward(app: Flask, clock: FakeClock, published: None) -> None:
    """Two pumps of ward 3 (one pending), one of another hospital."""
    add_device(app, clock, "pump-1", "ward-3")
    add_device(app, clock, "pump-2", "ward-3")
    add_device(app, clock, "pump-new", "ward-3", state="pending")
    add_device(app, clock, "pump-far", "other-hospital")


def logged_in(app: Flask, browser: Browser, clock: FakeClock, name: str, role: Role) -> WebPerson:
    """``name`` through first login, then logged in with the code of ``clock``'s step."""
    person = web_person(app, browser, clock, name, role)
    if role == Role.TECHNICIAN:
        with transaction(app.extensions["fw"].sessions) as db:
            user = db.scalars(select(User).where(User.name == name)).one()
            scope.set_sites(db, user, ["ward-3"])
    assert browser.log_in(name, person.password, otp_at(person.totp, clock)).status_code == 302
    return person


def authorize(
    browser: Browser, clock: FakeClock, person: WebPerson, *devices: str, code: str | None = None
) -> Any:
    browser.get(DEVICES)
    if code is None:
        clock.advance(seconds=30)
        code = otp_at(person.totp, clock)
    form = {"target_path": TARGET, "minutes": "15", "otp": code}
    data = {**form, "device_ids": list(devices)}
    return browser.client.post(
        AUTHORIZE,
        data={"csrf_token": _token(browser.last_page), **data},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/"},
    )


def issued(app: Flask) -> list[IssuedAuthorization]:
    with transaction(app.extensions["fw"].sessions) as db:
        return list(db.scalars(select(IssuedAuthorization).order_by(IssuedAuthorization.id)))


def audit(app: Flask, action: str) -> list[AuditEntry]:
    with transaction(app.extensions["fw"].sessions) as db:
        return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found is not None, page[:2000]
    return found.group(1)


def test_a_technician_sees_the_devices_of_their_sites_and_what_each_is_offered_r6_t1(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    home = browser.get("/")
    assert DEVICES in browser.last_page and AUTHORIZE in browser.last_page, home
    assert browser.get(DEVICES).status_code == 200
    page = browser.last_page
    assert 'id="device-pump-1"' in page and 'id="device-pump-2"' in page
    assert "pump-far" not in page
    assert 'id="pick-pump-1"' in page and 'id="pick-pump-2"' in page
    assert 'id="pick-pump-new"' not in page, "a pending device gets no checkbox"
    assert "Authorize version 2.0.0" in page
    assert TARGET in page


def test_an_admin_sees_every_device_and_the_list_but_authorizes_nothing_t1(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    logged_in(app, browser, clock, "ada", Role.ADMIN)
    browser.get("/")
    assert DEVICES in browser.last_page and AUTHORIZE in browser.last_page
    assert browser.get(DEVICES).status_code == 200
    assert 'id="device-pump-far"' in browser.last_page
    assert "2.0.0" in browser.last_page
    assert 'name="device_ids"' not in browser.last_page
    assert browser.get(AUTHORIZE).status_code == 200
    clock.advance(seconds=30)
    refused = browser.post(AUTHORIZE, {"target_path": TARGET, "device_ids": "pump-1"})
    assert refused.status_code == 403
    assert issued(app) == []


def test_one_fresh_code_authorizes_the_checked_devices_each_its_own_document_r9_t2(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    answer = authorize(browser, clock, tom, "pump-1", "pump-2")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 201, page
    rows = issued(app)
    assert [(row.device_id, row.target_path, row.technician) for row in rows] == [
        ("pump-1", TARGET, "tom"),
        ("pump-2", TARGET, "tom"),
    ]
    assert len({row.nonce for row in rows}) == 2
    for row in rows:
        assert f'href="/technician/authorizations/{row.id}.json"' in page
        assert f'id="authorization-{row.id}"' in page
    assert "2 authorizations issued" in page
    assert [entry.actor for entry in audit(app, Action.AUTHORIZATION_ISSUE)] == ["tom", "tom"]


def test_the_login_code_cannot_confirm_and_nothing_is_issued_r9_t2(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    login_code = otp_at(tom.totp, clock)
    answer = authorize(browser, clock, tom, "pump-1", code=login_code)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 401
    assert answer.mimetype == "text/html"
    assert "Nothing was authorized: one-time code refused" in page
    assert "not the one used to log in" in page
    assert re.search(r'id="pick-pump-1"[^>]* checked', page), "the device stays checked"
    assert "Your next code can be used in 30 s" in page
    assert issued(app) == []
    assert audit(app, Action.AUTHORIZATION_ISSUE) == []
    missing = authorize(browser, clock, tom, "pump-1", code="")
    assert missing.status_code == 401
    assert "needs a fresh one-time code" in missing.get_data(as_text=True)
    assert issued(app) == []


def test_a_refused_request_issues_nothing_and_says_why_t2(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    out_of_scope = authorize(browser, clock, tom, "pump-1", "pump-far")
    assert out_of_scope.status_code == 404
    assert "Nothing was authorized: no device pump-far" in out_of_scope.get_data(as_text=True)
    pending = authorize(browser, clock, tom, "pump-new")
    assert pending.status_code == 409
    assert "only an accepted device" in pending.get_data(as_text=True)
    none = authorize(browser, clock, tom)
    assert none.status_code == 400
    assert "name at least one device" in none.get_data(as_text=True)
    assert issued(app) == []


def test_the_code_of_a_refused_request_stays_spent_and_the_refusal_is_audited_i5(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    """R9, R25: a code confirms one attempt; a refused one cannot be tried again elsewhere."""
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    clock.advance(seconds=30)
    code = otp_at(tom.totp, clock)
    assert authorize(browser, clock, tom, "pump-far", code=code).status_code == 404
    again = authorize(browser, clock, tom, "pump-1", code=code)
    assert again.status_code == 401
    assert issued(app) == []
    outcomes = [e.outcome for e in audit(app, "authorization.issue")]
    assert outcomes == ["refused"]


def test_a_form_without_its_csrf_token_is_refused_and_nothing_is_issued_w3(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    browser.get(DEVICES)
    clock.advance(seconds=30)
    form = {"target_path": TARGET, "device_ids": "pump-1", "otp": otp_at(tom.totp, clock)}
    forged = browser.post(AUTHORIZE, form, token="forged")
    assert forged.status_code == 400
    assert "did not come from this site" in browser.last_page
    assert issued(app) == []
    # Checked before the code: the forged form spent nothing, counted nothing.
    assert audit(app, "otp.confirm") == []
    assert authorize(browser, clock, tom, "pump-1", code=form["otp"]).status_code == 201


def test_a_forged_form_with_a_wrong_code_counts_no_failure_against_the_person_w3(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    """A same-site page cannot lock a technician out by posting wrong codes for them."""
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    browser.get(DEVICES)
    form = {"target_path": TARGET, "device_ids": "pump-1", "otp": "000000"}
    for _ in range(6):
        assert browser.post(AUTHORIZE, form, token="forged").status_code == 400
    assert audit(app, "otp.confirm") == []
    assert authorize(browser, clock, tom, "pump-1").status_code == 201


def test_the_document_downloads_as_a_file_to_hand_over_in_scope_only_t3(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    assert authorize(browser, clock, tom, "pump-1").status_code == 201
    [row] = issued(app)
    download = browser.get(f"/technician/authorizations/{row.id}.json")
    assert download.status_code == 200
    assert download.mimetype == "application/json"
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="authorization-pump-1-{row.id}.json"'
    )
    assert download.headers["Cache-Control"] == "no-store"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(download.get_data()) == json.loads(row.document)
    other = Browser(app.test_client())
    logged_in(app, other, clock, "una", Role.TECHNICIAN)
    with transaction(app.extensions["fw"].sessions) as db:
        una = db.scalars(select(User).where(User.name == "una")).one()
        scope.set_sites(db, una, ["other-hospital"])
    assert other.get(f"/technician/authorizations/{row.id}.json").status_code == 404
    assert other.get("/technician/authorizations/999.json").status_code == 404
    other.get(AUTHORIZE)
    assert "pump-1" not in other.last_page


def test_the_list_shows_each_authorization_and_what_the_device_did_with_it_i6(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    assert authorize(browser, clock, tom, "pump-1", "pump-2").status_code == 201
    first, second = issued(app)
    browser.get(AUTHORIZE)
    assert browser.last_page.count(">pending</span>") == 2
    with transaction(app.extensions["fw"].sessions) as db:
        pump = db.get(Device, "pump-1")
        assert pump is not None
        entries = [
            {"type": kind, "detail": {"nonce": first.nonce}}
            for kind in ("authorization_accepted", "authorization_used")
        ]
        issuing.note_outcomes(db, pump, entries, now=clock.now, source="test")
    browser.get(AUTHORIZE)
    page = browser.last_page
    assert re.search(rf'id="status-{first.id}">used<', page)
    assert "used: the device installed with it" in page
    assert re.search(rf'id="status-{second.id}">pending<', page)
    for _ in range(2):  # past the expiry, the session kept alive
        clock.advance(minutes=8)
        browser.get(AUTHORIZE)
    assert re.search(rf'id="status-{second.id}">expired<', browser.last_page)
    assert re.search(rf'id="status-{first.id}">used<', browser.last_page)


def test_the_wait_for_the_next_code_counts_to_the_next_step_after_the_last_used_t2() -> None:
    step_start = datetime.fromtimestamp(1_000 * 30, UTC)
    assert seconds_until_next_code(1_000, now=step_start) == 30
    assert seconds_until_next_code(1_000, now=step_start + timedelta(seconds=10)) == 20
    assert seconds_until_next_code(1_000, now=step_start + timedelta(seconds=29.5)) == 1
    assert seconds_until_next_code(999, now=step_start) == 0
    assert seconds_until_next_code(998, now=step_start) == 0


def test_without_a_session_each_page_leads_to_the_login_page_w5(browser: Browser) -> None:
    for path in (DEVICES, AUTHORIZE, "/technician/authorizations/1.json"):
        answer = browser.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].endswith("/login")
    browser.get("/login")
    answer = browser.post(AUTHORIZE, {"target_path": TARGET, "device_ids": "x", "otp": "123456"})
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/login")


def test_another_role_sees_no_device_page_but_reads_the_list_as_the_api_t1(
    app: Flask, browser: Browser, clock: FakeClock, ward: None
) -> None:
    logged_in(app, browser, clock, "ava", Role.AUDITOR)
    assert browser.get(DEVICES).status_code == 403
    assert browser.get(AUTHORIZE).status_code == 200
    assert "No authorization issued yet." in browser.last_page


@pytest.mark.parametrize("minutes", ["0", "61", "99999999999999"])
def test_a_lifetime_out_of_range_is_a_400_never_a_500(
    app: Flask, browser: Browser, clock: FakeClock, ward: None, minutes: str
) -> None:
    tom = logged_in(app, browser, clock, "tom", Role.TECHNICIAN)
    browser.get(DEVICES)
    clock.advance(seconds=30)
    form = {"target_path": TARGET, "minutes": minutes, "otp": otp_at(tom.totp, clock)}
    answer = browser.client.post(
        AUTHORIZE,
        data={"csrf_token": _token(browser.last_page), **form, "device_ids": ["pump-1"]},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/"},
    )
    assert answer.status_code == 400
    assert "1 to 60 minutes" in answer.get_data(as_text=True)
    assert issued(app) == []
