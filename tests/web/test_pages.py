"""The pages' security without a browser: CSRF, cookies, W1 (cookie vs bearer), CSP.

Each test names the rule of ``update_server.web`` (W1-W5) or the
requirement it checks, and the threat it answers.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import update_server.web
from tests.clocks import FakeClock
from tests.update_server.people import bearer, create_user, otp_at
from tests.web.pages import BASE, Browser, web_person
from update_server.access import SESSION_COOKIE
from update_server.audit.actions import Action
from update_server.config import ServerConfig
from update_server.models import AuditEntry, Role
from update_server.setup import web_secret_key
from update_server.web.views import PAGE_CSP

ME = "/api/v1/auth/me"


def _logged_in(app: Flask, browser: Browser, clock: FakeClock, name: str = "tess") -> str:
    person = web_person(app, browser, clock, name)
    answer = browser.log_in(person.name, person.password, otp_at(person.totp, clock))
    assert answer.status_code == 302, browser.last_page
    assert answer.headers["Location"] == "/"
    return browser.session_token()


def test_a_post_without_a_csrf_token_is_refused_and_logs_no_one_in_w3(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    initial = create_user(app, clock, "tess", Role.TECHNICIAN)
    browser.get("/login")
    answer = browser.post("/login", {"username": "tess", "password": initial}, token="")
    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert "did not come from this site" in browser.last_page
    assert browser.session_token() == ""


def test_a_forged_csrf_token_is_refused_w3(app: Flask, browser: Browser, clock: FakeClock) -> None:
    initial = create_user(app, clock, "tess", Role.TECHNICIAN)
    browser.get("/login")
    answer = browser.post("/login", {"username": "tess", "password": initial}, token="x.y.z")
    assert answer.status_code == 400
    assert browser.session_token() == ""


def test_a_post_referred_by_another_site_is_refused_w3(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    initial = create_user(app, clock, "tess", Role.TECHNICIAN)
    browser.get("/login")
    answer = browser.post(
        "/login", {"username": "tess", "password": initial}, referer="https://evil.example"
    )
    assert answer.status_code == 400
    assert browser.session_token() == ""


def test_logout_without_a_csrf_token_keeps_the_session_w3(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    token = _logged_in(app, browser, clock)
    assert browser.post("/logout", {}, token="").status_code == 400
    assert browser.get("/").status_code == 200
    assert browser.session_token() == token


def test_the_session_cookie_never_opens_an_api_route_w1(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    token = _logged_in(app, browser, clock)
    # The browser sends its cookie by itself: the API must not take it (CSRF).
    assert browser.client.get(ME, base_url=BASE).status_code == 401
    assert browser.client.get(ME, base_url=BASE, headers=bearer(token)).status_code == 200


def test_pages_take_the_cookie_and_need_no_bearer_token_w1(
    app: Flask, browser: Browser, clock: FakeClock, client: FlaskClient
) -> None:
    token = _logged_in(app, browser, clock)
    home = browser.get("/")
    assert home.status_code == 200
    assert "Hello, tess" in browser.last_page
    # A bearer token alone opens no page: pages read the cookie only.
    answer = client.get("/", base_url=BASE, headers=bearer(token))
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/login"


def test_a_page_without_a_session_redirects_to_login_w5(client: FlaskClient) -> None:
    for path in ("/", "/first-login"):
        answer = client.get(path, base_url=BASE)
        assert answer.status_code == 302, path
        assert answer.headers["Location"] == "/login"


def test_the_session_cookie_is_secure_httponly_samesite_strict_w2(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    person = web_person(app, browser, clock, "tess")
    browser.get("/login")
    answer = browser.post(
        "/login",
        {"username": "tess", "password": person.password, "otp": otp_at(person.totp, clock)},
    )
    cookies = answer.headers.getlist("Set-Cookie")
    session = [c for c in cookies if c.startswith(f"{SESSION_COOKIE}=")]
    assert len(session) == 1
    flags = {part.strip().lower() for part in session[0].split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    assert not any(flag.startswith(("domain", "expires", "max-age")) for flag in flags)
    for cookie in cookies:  # the CSRF cookie too
        lowered = cookie.lower()
        assert "secure" in lowered
        assert "httponly" in lowered
        assert "samesite=strict" in lowered


def test_each_login_rotates_the_session_and_ends_the_old_one_w2(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    person = web_person(app, browser, clock, "tess")
    browser.log_in(person.name, person.password, otp_at(person.totp, clock))
    first = browser.session_token()
    clock.advance(seconds=30)
    browser.log_in(person.name, person.password, otp_at(person.totp, clock))
    second = browser.session_token()
    assert first
    assert second
    assert first != second
    assert browser.client.get(ME, base_url=BASE, headers=bearer(first)).status_code == 401
    assert browser.client.get(ME, base_url=BASE, headers=bearer(second)).status_code == 200


def test_logout_revokes_the_session_w2(app: Flask, browser: Browser, clock: FakeClock) -> None:
    token = _logged_in(app, browser, clock)
    browser.get("/")
    answer = browser.post("/logout", {})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/login"
    assert browser.session_token() == ""
    # The token itself is ended, not only forgotten by this browser.
    assert browser.client.get(ME, base_url=BASE, headers=bearer(token)).status_code == 401
    browser.client.set_cookie(SESSION_COOKIE, token, domain="localhost", secure=True)
    assert browser.get("/").headers["Location"] == "/login"


def test_login_shows_the_previous_login_and_failures_since_r11(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    person = web_person(app, browser, clock, "tess")
    browser.log_in(person.name, person.password, otp_at(person.totp, clock))
    clock.advance(seconds=30)
    wrong = browser.log_in(person.name, "not the password", otp_at(person.totp, clock))
    assert wrong.status_code == 401
    assert "login failed" in browser.last_page
    clock.advance(seconds=30)
    browser.log_in(person.name, person.password, otp_at(person.totp, clock))
    browser.get("/")
    assert "1 failed login attempt since then" in browser.last_page
    assert "127.0.0.1" in browser.last_page


def test_failed_page_logins_lock_the_name_for_the_api_too_one_lockout_r9(
    app: Flask, browser: Browser, clock: FakeClock, config: ServerConfig, client: FlaskClient
) -> None:
    person = web_person(app, browser, clock, "tess")
    for _ in range(config.max_failed_logins):
        assert browser.log_in(person.name, "wrong password here").status_code == 401
    clock.advance(seconds=30)
    body = {"username": "tess", "password": person.password, "otp": otp_at(person.totp, clock)}
    assert client.post("/api/v1/auth/login", json=body).status_code == 401


def test_every_page_carries_the_csp_and_the_api_keeps_its_own_w4(
    app: Flask, browser: Browser, clock: FakeClock, client: FlaskClient
) -> None:
    browser.get("/login")
    login_page = browser.client.get("/login", base_url=BASE)
    assert login_page.headers["Content-Security-Policy"] == PAGE_CSP
    _logged_in(app, browser, clock)
    for path in ("/", "/static/style.css", "/first-login"):
        answer = browser.client.get(path, base_url=BASE, follow_redirects=True)
        answer.close()
        assert answer.headers["Content-Security-Policy"] == PAGE_CSP, path
    assert "unsafe" not in PAGE_CSP
    api = client.get("/api/v1/health")
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "Set-Cookie" not in api.headers


def test_templates_hold_no_inline_script_or_style_w4() -> None:
    templates = Path(update_server.web.__file__).parent / "templates"
    for page in templates.glob("*.html"):
        text = page.read_text().lower()
        assert "<script" not in text, page
        assert "<style" not in text, page
        assert " style=" not in text, page
        assert re.search(r"\son[a-z]+\s*=", text) is None, page  # no event handler
        assert "javascript:" not in text, page


def test_first_login_shows_a_qr_code_drawn_here_and_a_wrong_code_changes_nothing(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    initial = create_user(app, clock, "tess", Role.TECHNICIAN)
    browser.log_in("tess", initial)
    browser.get("/first-login")
    assert 'src="data:image/svg+xml' in browser.last_page
    password = "violet-harbour-4-lantern-quietly"
    answer = browser.post(
        "/first-login",
        {
            "current_password": initial,
            "new_password": password,
            "new_password_again": password,
            "otp": "000000",
        },
    )
    assert answer.status_code == 422
    assert "does not match the secret being enrolled" in browser.last_page
    # The password did not change: the initial one still logs in (to first login).
    other = Browser(app.test_client())
    assert other.log_in("tess", initial).headers["Location"] == "/first-login"


def test_the_web_secret_key_is_0600_and_made_when_absent(config: ServerConfig) -> None:
    key = config.web_secret_key_file.read_bytes()
    assert len(key) == 32
    assert stat.S_IMODE(config.web_secret_key_file.stat().st_mode) == 0o600
    config.web_secret_key_file.unlink()  # a data directory made by an older init
    made = web_secret_key(config)
    assert made != key
    assert web_secret_key(config) == made
    assert stat.S_IMODE(config.web_secret_key_file.stat().st_mode) == 0o600


def _audit(app: Flask) -> list[AuditEntry]:
    with app.extensions["fw"].sessions() as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def test_page_logins_logouts_and_refusals_are_audited_as_the_apis_r27(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    person = web_person(app, browser, clock, "tess")
    clock.advance(seconds=30)
    browser.log_in("tess", "not the password", otp_at(person.totp, clock))
    clock.advance(seconds=30)  # that code was spent, the password wrong or not
    again = browser.log_in("tess", person.password, otp_at(person.totp, clock))
    assert again.status_code == 302
    browser.get("/")
    browser.post("/logout", {})
    browser.get("/")  # no session any more: refused, then to the login page
    seen = [(entry.action, entry.actor, entry.outcome) for entry in _audit(app)]
    assert (Action.LOGIN, "tess", "failure") in seen
    assert (Action.LOGIN, "tess", "success") in seen
    assert (Action.LOGOUT, "tess", "success") in seen
    assert (Action.TOTP_ENROL, "tess", "success") in seen
    assert (Action.PASSWORD_CHANGE, "tess", "success") in seen
    refusals = [entry for entry in _audit(app) if entry.action == Action.ACCESS_REFUSED]
    assert any(entry.object == "GET /" for entry in refusals)


def test_a_refusal_other_than_no_session_is_an_html_page_with_its_status_w5(
    browser: Browser,
) -> None:
    answer = browser.get("/static/no-such-file.css")
    assert answer.status_code == 404
    assert answer.mimetype == "text/html"
    assert answer.headers["Content-Security-Policy"] == PAGE_CSP
    assert "<h1>Not Found</h1>" in browser.last_page


def test_a_source_over_its_login_limit_gets_429_with_retry_after_on_the_page_r9(
    browser: Browser, config: ServerConfig
) -> None:
    for number in range(config.max_failed_logins_per_source):
        assert browser.log_in(f"nobody-{number}", "wrong password here").status_code == 401
    throttled = browser.log_in("nobody-else", "wrong password here")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "too many failed logins from your address" in browser.last_page


def test_first_login_half_done_through_the_api_asks_only_for_the_password(
    app: Flask, browser: Browser, clock: FakeClock, client: FlaskClient
) -> None:
    initial = create_user(app, clock, "tess", Role.TECHNICIAN)
    first = client.post("/api/v1/auth/login", json={"username": "tess", "password": initial})
    token = first.get_json()["token"]
    secret = client.post("/api/v1/auth/totp/enroll", headers=bearer(token)).get_json()["secret"]
    code_source = pyotp.TOTP(secret)
    confirm = {"otp": otp_at(code_source, clock, steps_ahead=-1)}
    confirmed = client.post("/api/v1/auth/totp/confirm", json=confirm, headers=bearer(token))
    assert confirmed.status_code == 200
    answer = browser.log_in("tess", initial, otp_at(code_source, clock))
    assert answer.headers["Location"] == "/first-login"
    browser.get("/first-login")
    assert 'id="qr"' not in browser.last_page
    password = "violet-harbour-4-lantern-quietly"
    form = {"current_password": initial, "new_password": password, "new_password_again": password}
    done = browser.post("/first-login", form)
    assert done.headers["Location"] == "/login"
    clock.advance(seconds=30)
    assert browser.log_in("tess", password, otp_at(code_source, clock)).headers["Location"] == "/"
