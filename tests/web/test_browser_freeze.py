"""The failsafe freeze in a real browser: Chromium at 390 x 844, the real server over TLS.

Issue 11's story on a phone (R24, R33, R9; ``freeze.rules`` F1, F2; the
page's FP1, FP2): officer olga freezes the system with a reason and a fresh
code on ``/freeze``; her vote to lift it is accepted as the first vote; her
second vote, with yet another fresh code, is refused with the reason on the
page and changes nothing; officer paul's vote lifts it and the page shows
the system normal. Each page is checked as ``test_browser_pages.seen``
checks it (CSP header, no CSP violation, no sideways scrolling) and saved as
``docs/screenshots/freeze-*.png`` with ``FW_SCREENSHOTS=1``.

The server is a real ``fwserver serve`` with its own clock: a fresh code is
one of a later TOTP step than the officer's last, so the test waits for the
real step to come (``next_code``, at most one step per code).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.people import step_now
from tests.web.browser import chromium
from tests.web.test_browser_pages import PASSWORD, _enrolled, fill, seen, submit, text
from update_server.mfa.totp import INTERVAL, code_at

REASON = "the timestamp key may have leaked"
#: The longest a fresh code is waited for: one TOTP step and a margin.
STEP_WAIT = INTERVAL + 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(new_data_dir(tmp_path_factory.mktemp("freeze-web"))) as running:
        yield running


@pytest.fixture
def driver(server: RunningServer, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A new browser, its logs emptied of its own start page."""
    for browser in chromium(server.url, server.ca, tmp_path / "chromium"):
        browser.get_log("performance")
        browser.get_log("browser")
        yield browser


class Officer:
    """A security officer enrolled over the API; ``code()`` is a code the server takes now."""

    def __init__(self, server: RunningServer, name: str) -> None:
        self.name = name
        self.secret, self.last = _enrolled(server, name, role="security_officer", api_login=False)

    def code(self) -> str:
        """A code of a step after the last one used, once the server's window reaches it.

        The server takes the steps one either side of its own and refuses a
        step already used (R25): the code is of ``max(last + 1, now)``, and
        the wait (at most one step) is for the real clock to reach its step
        minus one.
        """
        step = max(self.last + 1, step_now())
        deadline = time.monotonic() + STEP_WAIT
        while step_now() < step - 1:
            assert time.monotonic() < deadline, "the TOTP step did not come"
            time.sleep(min(1.0, INTERVAL - time.time() % INTERVAL + 0.05))
        self.last = step
        return code_at(self.secret, step)


def _log_in(driver: webdriver.Chrome, server: RunningServer, officer: Officer) -> None:
    driver.get(f"{server.url}/login")
    fill(driver, username=officer.name, password=PASSWORD, otp=officer.code())
    assert driver.current_url == f"{server.url}/", text(driver)


def _mode(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.ID, "mode").get_attribute("data-mode"))


def test_a_freeze_entered_by_one_officer_and_lifted_by_two_on_a_phone_r24_r33(
    server: RunningServer, driver: webdriver.Chrome
) -> None:
    url = server.url
    olga, paul = Officer(server, "olga"), Officer(server, "paul")

    _log_in(driver, server, olga)
    seen(driver, "freeze-home")
    driver.find_element(By.LINK_TEXT, "The failsafe freeze: freeze, or vote to lift").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url == f"{url}/freeze")
    seen(driver, "freeze-normal")
    assert _mode(driver) == "normal"

    fill(driver, **{"reason-field": REASON, "otp": olga.code()})
    seen(driver, "freeze-frozen")
    assert "The system is frozen" in driver.find_element(By.ID, "notice").text
    assert _mode(driver) == "frozen"
    assert driver.find_element(By.ID, "frozen-by").text == "olga"
    assert driver.find_element(By.ID, "reason").text == REASON

    fill(driver, otp=olga.code())
    seen(driver, "freeze-first-vote")
    assert "Your vote to lift the freeze is recorded" in driver.find_element(By.ID, "notice").text
    pending = driver.find_element(By.ID, "pending-vote").text
    assert "olga voted to lift it" in pending
    assert "a different security officer must confirm" in pending

    fill(driver, otp=olga.code())  # F2: the same officer again, with a fresh code
    seen(driver, "freeze-same-officer-refused")
    refused = driver.find_element(By.ID, "error").text
    assert refused.startswith("Nothing was changed: your vote to lift the freeze is already")
    assert "a different security officer must confirm it" in refused
    assert _mode(driver) == "frozen"

    submit(driver, "header form button")
    _log_in(driver, server, paul)
    driver.get(f"{url}/freeze")
    seen(driver, "freeze-second-officer")
    assert "olga voted to lift it" in driver.find_element(By.ID, "pending-vote").text
    fill(driver, otp=paul.code())
    seen(driver, "freeze-lifted")
    notice = driver.find_element(By.ID, "notice").text
    assert "The freeze is lifted by olga and paul" in notice
    assert _mode(driver) == "normal"
    assert "lifted by olga and paul" in driver.find_element(By.ID, "lifted-by").text
