"""A browser's requests in Flask's test client: HTTPS, cookies, CSRF token, Referer.

``Browser.post(page, form, data)`` reads the CSRF token from ``form``'s page
as a browser would (the hidden field), and sends the same-site Referer.
``web_person`` walks a new person through first login on the pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.clocks import FakeClock
from tests.update_server.people import create_user, new_password, otp_at
from update_server.access import SESSION_COOKIE
from update_server.models import Role

BASE = "https://localhost"
_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
_SECRET = re.compile(r'id="secret">([A-Z2-7 ]+)<')


def csrf_token(page: str) -> str:
    found = _TOKEN.search(page)
    if found is None:
        raise AssertionError(f"no CSRF token in the page:\n{page[:2000]}")
    return found.group(1)


@dataclass
class Browser:
    client: FlaskClient
    last_page: str = field(default="")

    def get(self, path: str) -> TestResponse:
        response = self.client.get(path, base_url=BASE)
        self.last_page = response.get_data(as_text=True)
        return response

    def post(
        self, path: str, data: dict[str, str], *, token: str | None = None, referer: str = BASE
    ) -> TestResponse:
        """POST ``data`` with the CSRF token of the last page read (or ``token``)."""
        form = {"csrf_token": token if token is not None else csrf_token(self.last_page), **data}
        headers = {"Referer": f"{referer}/"} if referer else {}
        response = self.client.post(path, data=form, base_url=BASE, headers=headers)
        self.last_page = response.get_data(as_text=True)
        return response

    def session_token(self) -> str:
        cookie = self.client.get_cookie(SESSION_COOKIE, domain="localhost")
        return cookie.value if cookie is not None else ""

    def log_in(self, name: str, password: str, code: str = "") -> TestResponse:
        self.get("/login")
        return self.post("/login", {"username": name, "password": password, "otp": code})


@dataclass(frozen=True)
class WebPerson:
    name: str
    password: str
    totp: pyotp.TOTP


def web_person(
    app: Flask, browser: Browser, clock: FakeClock, name: str, role: Role = Role.TECHNICIAN
) -> WebPerson:
    """``name`` added, first login done on the pages (code of the step before ``clock``)."""
    initial = create_user(app, clock, name, role)
    assert browser.log_in(name, initial).status_code == 302
    page = browser.get("/first-login")
    assert page.status_code == 200, browser.last_page
    secret = _SECRET.search(browser.last_page)
    assert secret is not None, browser.last_page
    code_source = pyotp.TOTP(secret.group(1).replace(" ", ""))
    password = new_password(name)
    done = browser.post(
        "/first-login",
        {
            "current_password": initial,
            "new_password": password,
            "new_password_again": password,
            "otp": otp_at(code_source, clock, steps_ahead=-1),
        },
    )
    assert done.status_code == 302, browser.last_page
    assert done.headers["Location"].endswith("/login")
    return WebPerson(name, password, code_source)
