"""The pages in a real browser: Chromium at 390 x 844 against the real server over TLS.

One server (``fwserver serve``: gunicorn, TLS from its own CA) and one
browser for the module; each test starts with no cookies. Every page
visited is checked by ``seen``: the document carried ``PAGE_CSP`` (read
from the browser's own network log), the browser reported no CSP violation
(the pages obey their policy: nothing inline), and the page does not scroll
sideways on a phone. ``FW_SCREENSHOTS=1`` saves each page for the README.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from fwcommon.message_signatures import new_nonce, public_key_dict, signed_headers
from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.people import call, step_now
from tests.unprivileged import invoke_fwserver
from tests.web.browser import PHONE, chromium, screenshot
from update_server.access import SESSION_COOKIE
from update_server.mfa.totp import INTERVAL, code_at
from update_server.web import CSRF_COOKIE
from update_server.web.views import PAGE_CSP

PASSWORD = "a long passphrase nobody guesses 42"
ME = "/api/v1/auth/me"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(new_data_dir(tmp_path_factory.mktemp("web"))) as running:
        yield running


@pytest.fixture(scope="module")
def driver(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[webdriver.Chrome]:
    yield from chromium(server.url, server.ca, tmp_path_factory.mktemp("chromium"))


@pytest.fixture
def browser(driver: webdriver.Chrome, server: RunningServer) -> webdriver.Chrome:
    """The module's browser with no cookies and an empty network log."""
    driver.get(f"{server.url}/login")
    driver.delete_all_cookies()
    driver.get_log("performance")
    driver.get_log("browser")
    return driver


def steady_step() -> int:
    """The current TOTP step, with at least 5 s of it left: no step ends mid-flow.

    The flows spend the code of the step before (enrolment) and of this one
    (login); the server accepts one step either side of its own.
    """
    left = INTERVAL - time.time() % INTERVAL
    if left < 5:
        time.sleep(left)
    return step_now()


def add_person(server: RunningServer, name: str, role: str = "technician") -> str:
    """``fwserver user add``; returns the one-time initial password."""
    added = invoke_fwserver(
        ["user", "add", "--data-dir", str(server.data_dir), "--role", role, name]
    )
    assert added.exit_code == 0, added.output
    return str(added.output.strip().split()[-1])


def seen(driver: webdriver.Chrome, page: str) -> None:
    """The checks of every page visited (module docstring), then its screenshot."""
    documents = _documents(driver)
    assert documents, f"{page}: no document loaded"
    for url, headers in documents:
        assert headers.get("content-security-policy") == PAGE_CSP, url
    violations = [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert violations == [], page
    width = driver.execute_script("return window.innerWidth")
    assert width == PHONE[0]
    scroll = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= width, f"{page} scrolls sideways on a phone: {scroll} > {width} px"
    screenshot(driver, page)


def _documents(driver: webdriver.Chrome) -> list[tuple[str, dict[str, str]]]:
    """The documents the server sent since the last call (the browser's own pages, such as a
    ``chrome://`` new-tab page it may load in the background, are not the server's)."""
    found = []
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message.get("method") == "Network.responseReceived" and params["type"] == "Document":
            response = params["response"]
            if not response["url"].startswith("https://"):
                continue
            headers = {name.lower(): value for name, value in response["headers"].items()}
            found.append((response["url"], headers))
    return found


def fill(driver: webdriver.Chrome, **fields: str) -> None:
    for field_id, value in fields.items():
        element = driver.find_element(By.ID, field_id)
        element.clear()
        element.send_keys(value)
    submit(driver, "main form button[type=submit]")


def submit(driver: webdriver.Chrome, button: str) -> None:
    """Click ``button`` and wait until the next page has replaced this one and loaded.

    The mark is a variable of this page's window, which the next document
    does not have (WebDriver's scripts are not the page's: the CSP does not
    apply to them). A script run mid-navigation may fail: the wait retries.
    """
    driver.execute_script("window.fwPageBeforeSubmit = true")
    driver.find_element(By.CSS_SELECTOR, button).click()
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return !window.fwPageBeforeSubmit && document.readyState === 'complete'"
        )
    )


def text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.TAG_NAME, "main").text)


def log_in(
    driver: webdriver.Chrome, server: RunningServer, name: str, password: str, code: str
) -> None:
    driver.get(f"{server.url}/login")
    seen(driver, "login")
    fill(driver, username=name, password=password, otp=code)


def test_first_login_of_a_new_person_new_password_qr_code_then_logged_in(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    initial = add_person(server, "tina")
    log_in(browser, server, "tina", initial, "")
    assert browser.current_url == f"{server.url}/first-login", text(browser)
    seen(browser, "first-login")
    qr = browser.find_element(By.ID, "qr")
    assert browser.execute_script("return arguments[0].naturalWidth", qr) > 0, "QR not drawn"
    secret = browser.find_element(By.ID, "secret").text.replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32,}", secret)
    step = steady_step()
    fill(
        browser,
        current_password=initial,
        new_password=PASSWORD,
        new_password_again=PASSWORD,
        otp=code_at(secret, step - 1),
    )
    assert browser.current_url == f"{server.url}/login"
    seen(browser, "login-after-first-login")
    assert "log in with them now" in text(browser)
    fill(browser, username="tina", password=PASSWORD, otp=code_at(secret, step))
    assert browser.current_url == f"{server.url}/"
    seen(browser, "home")
    assert "Hello, tina" in text(browser)
    assert "technician" in browser.find_element(By.ID, "role").text


def test_login_with_password_and_code_shows_the_last_login_and_failures_r11(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    secret, step = _enrolled(server, "lena")
    right = code_at(secret, max(step + 1, step_now()))
    log_in(browser, server, "lena", PASSWORD, "000000" if right != "000000" else "111111")
    assert browser.current_url == f"{server.url}/login"
    seen(browser, "login-refused")
    assert "login failed" in browser.find_element(By.ID, "error").text
    log_in(browser, server, "lena", PASSWORD, right)
    assert browser.current_url == f"{server.url}/"
    seen(browser, "home-after-login")
    last = browser.find_element(By.ID, "last-login").text
    assert "from 127.0.0.1" in last
    assert "1 failed login attempt since then" in last


def test_the_cookies_are_secure_httponly_samesite_strict_and_logout_revokes(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    secret, step = _enrolled(server, "owen")
    log_in(browser, server, "owen", PASSWORD, code_at(secret, max(step + 1, step_now())))
    cookies = {cookie["name"]: cookie for cookie in browser.get_cookies()}
    assert set(cookies) == {SESSION_COOKIE, CSRF_COOKIE}
    for cookie in cookies.values():
        assert cookie["secure"] is True
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert "expiry" not in cookie  # ends with the browser
    token = cookies[SESSION_COOKIE]["value"]
    assert call(server, "GET", ME, headers={"Authorization": f"Bearer {token}"})[0] == 200
    submit(browser, "header form button")
    assert browser.current_url == f"{server.url}/login"
    seen(browser, "logged-out")
    assert "You are logged out." in text(browser)
    assert call(server, "GET", ME, headers={"Authorization": f"Bearer {token}"})[0] == 401
    browser.get(f"{server.url}/")
    assert browser.current_url == f"{server.url}/login"


def _enrolled(
    server: RunningServer, name: str, *, role: str = "technician", api_login: bool = True
) -> tuple[str, int]:
    """``name`` through first login over the API (then logged in once); (secret, last step)."""
    initial = add_person(server, name, role)
    status, first, _ = call(
        server, "POST", "/api/v1/auth/login", {"username": name, "password": initial}
    )
    assert status == 200, first
    bearer = {"Authorization": f"Bearer {first['token']}"}
    status, enrol, _ = call(server, "POST", "/api/v1/auth/totp/enroll", None, bearer)
    assert status == 200, enrol
    step = steady_step()
    confirm = {
        "otp": code_at(enrol["secret"], step - 1),
        "current_password": initial,
        "new_password": PASSWORD,
    }
    status, answer, _ = call(server, "POST", "/api/v1/auth/totp/confirm", confirm, bearer)
    assert status == 200, answer
    if not api_login:
        return str(enrol["secret"]), step - 1
    body = {"username": name, "password": PASSWORD, "otp": code_at(enrol["secret"], step)}
    status, answer, _ = call(server, "POST", "/api/v1/auth/login", body)
    assert status == 200, answer
    return str(enrol["secret"]), step


def test_an_admin_issues_an_enrolment_token_and_accepts_the_device_that_registers_with_it(
    browser: webdriver.Chrome, server: RunningServer
) -> None:
    secret, step = _enrolled(server, "ada", role="admin", api_login=False)
    log_in(browser, server, "ada", PASSWORD, code_at(secret, step + 1))
    assert browser.current_url == f"{server.url}/"
    seen(browser, "home-admin")
    browser.find_element(By.LINK_TEXT, "Issue an enrolment token").click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.endswith("/enrolment-token"))
    seen(browser, "enrolment-token")
    browser.find_element(By.ID, "site").send_keys("ward-3")
    fill(browser, hardware_model="pump-x100", otp=code_at(secret, step + 2))
    seen(browser, "enrolment-token-issued")
    token = browser.find_element(By.ID, "token").text
    _register(server, "pump-7", token)
    browser.get(f"{server.url}/devices/pending")
    seen(browser, "pending-devices")
    assert "pump-7" in browser.find_element(By.ID, "device-pump-7").text
    submit(browser, "#device-pump-7 button.accept")
    seen(browser, "pending-devices-accepted")
    assert "Device pump-7 accepted." in browser.find_element(By.ID, "notice").text
    status, device, _ = call(server, "GET", "/api/v1/devices/pump-7", headers=_api_login(server))
    assert status == 200
    assert device["state"] == "accepted"


def _register(server: RunningServer, device_id: str, token: str) -> None:
    """A device registers with ``token``: its own key, the request signed (RFC 9421)."""
    signer = CryptoSigner.generate_ed25519()
    path = "/api/v1/devices/register"
    body = {
        "device_id": device_id,
        "hardware_model": "pump-x100",
        "public_key": public_key_dict(signer.public_key),
        "token": token,
    }
    data = json.dumps(body).encode()
    headers = signed_headers(
        "POST",
        f"{server.url}{path}",
        body=data,
        signer=signer,
        key_id=device_id,
        created=datetime.now(UTC),
        nonce=new_nonce(),
        headers={"Content-Type": "application/json"},
    )
    with server.pool() as pool:
        answer = pool.request("POST", f"{server.url}{path}", body=data, headers=headers)
    assert answer.status == 201, answer.data


def _api_login(server: RunningServer) -> dict[str, str]:
    """A second administrator's bearer session, to read the inventory through the API."""
    secret, step = _enrolled(server, "adam", role="admin", api_login=False)
    body = {"username": "adam", "password": PASSWORD, "otp": code_at(secret, step + 1)}
    status, answer, _ = call(server, "POST", "/api/v1/auth/login", body)
    assert status == 200, answer
    return {"Authorization": f"Bearer {answer['token']}"}
