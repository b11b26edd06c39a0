"""The failsafe freeze's page (FP1, FP2 of ``web.freeze_pages``; ``freeze.rules`` F1-F3).

Two security officers, each in their own browser (cookie jar), drive the
page as a browser does (CSRF token from the page, same-site Referer): one
freezes with a reason and a fresh code, the same one cannot lift it alone,
a second lifts it. Other roles see the mode and no form.
"""

from __future__ import annotations

from flask import Flask

from tests.clocks import FakeClock
from tests.update_server.people import otp_at
from tests.web.pages import Browser, WebPerson, web_person
from update_server.db import transaction
from update_server.freeze import state
from update_server.freeze.rules import Mode
from update_server.models import Role

REASON = "suspected leak of the timestamp key"


def _logged_in(app: Flask, browser: Browser, clock: FakeClock, name: str, role: Role) -> WebPerson:
    person = web_person(app, browser, clock, name, role)
    assert browser.log_in(name, person.password, otp_at(person.totp, clock)).status_code == 302
    return person


def _next_code(person: WebPerson, clock: FakeClock) -> str:
    clock.advance(seconds=30)
    return otp_at(person.totp, clock)


def _mode(app: Flask) -> Mode:
    with transaction(app.extensions["fw"].sessions) as db:
        return state.current_mode(db)


def test_fp2_frozen_by_one_officer_and_lifted_by_two(app: Flask, clock: FakeClock) -> None:
    olga_browser, paul_browser = Browser(app.test_client()), Browser(app.test_client())
    olga = _logged_in(app, olga_browser, clock, "olga", Role.SECURITY_OFFICER)
    paul = _logged_in(app, paul_browser, clock, "paul", Role.SECURITY_OFFICER)
    olga_browser.get("/")
    assert 'href="/freeze"' in olga_browser.last_page
    olga_browser.get("/freeze")
    assert 'data-mode="normal"' in olga_browser.last_page
    done = olga_browser.post("/freeze/enter", {"reason": REASON, "otp": _next_code(olga, clock)})
    assert done.status_code == 303, olga_browser.last_page
    olga_browser.get("/freeze")
    assert 'data-mode="frozen"' in olga_browser.last_page
    assert REASON in olga_browser.last_page
    assert 'id="lift-form"' in olga_browser.last_page
    assert _mode(app) is Mode.FROZEN
    # The first vote: recorded, still frozen.
    assert olga_browser.post("/freeze/lift", {"otp": _next_code(olga, clock)}).status_code == 303
    olga_browser.get("/freeze")
    assert "a different security officer must confirm" in olga_browser.last_page
    # The same officer again: refused, the page says why, nothing changes.
    again = olga_browser.post("/freeze/lift", {"otp": _next_code(olga, clock)})
    assert again.status_code == 409
    assert "different security officer" in olga_browser.last_page
    assert _mode(app) is Mode.FROZEN
    # A second officer lifts it.
    paul_browser.get("/freeze")
    lifted = paul_browser.post("/freeze/lift", {"otp": _next_code(paul, clock)})
    assert lifted.status_code == 303, paul_browser.last_page
    paul_browser.get("/freeze")
    assert "The freeze is lifted by olga and paul" in paul_browser.last_page
    assert 'data-mode="normal"' in paul_browser.last_page
    assert _mode(app) is Mode.NORMAL


def test_fp2_a_refused_code_shows_the_page_again_and_nothing_changes(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    _logged_in(app, browser, clock, "olga", Role.SECURITY_OFFICER)
    browser.get("/freeze")
    refused = browser.post("/freeze/enter", {"reason": REASON, "otp": "000000"})
    assert refused.status_code == 401
    assert 'id="error"' in browser.last_page
    assert 'id="freeze-form"' in browser.last_page
    assert _mode(app) is Mode.NORMAL


def test_fp2_a_missing_reason_is_refused_on_the_page(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    olga = _logged_in(app, browser, clock, "olga", Role.SECURITY_OFFICER)
    browser.get("/freeze")
    refused = browser.post("/freeze/enter", {"reason": " ", "otp": _next_code(olga, clock)})
    assert refused.status_code == 400
    assert "give the reason" in browser.last_page
    assert _mode(app) is Mode.NORMAL


def test_fp1_other_roles_see_the_mode_and_no_form(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    _logged_in(app, browser, clock, "ada", Role.ADMIN)
    browser.get("/freeze")
    assert 'data-mode="normal"' in browser.last_page
    assert "freeze-form" not in browser.last_page
    assert "lift-form" not in browser.last_page
    assert browser.post("/freeze/enter", {"reason": REASON, "otp": "123456"}).status_code == 403
    assert _mode(app) is Mode.NORMAL
