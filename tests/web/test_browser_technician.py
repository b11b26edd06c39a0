"""The technician's whole flow in a real browser: Chromium at 390 x 844, the real server over TLS.

Issue 10's story on a phone (R9, R58): release 2.0.0 requires an
authorization and pump 1 of ward 3 waits for one. Tom, a technician of
ward 3, logs in with password and code, sees the pump with the release it
is offered, checks it; the code he logged in with is refused (nothing is
issued, the page says when the next code comes); a fresh code authorizes
it. Pump 1 (``fwclient update``, its own key, signed requests) picks the
document up at its next update, installs, boots, reports, and the list
shows it used and what the pump now runs. Each page is checked as
``test_browser_pages.seen`` checks it (CSP header, no CSP violation, no
sideways scrolling) and saved as ``docs/screenshots/technician-*.png``
with ``FW_SCREENSHOTS=1``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.conftest import fwclient
from tests.e2e.ward import TARGET, Ward, fwserver_cli, pump, serve_ward
from tests.web.browser import chromium
from tests.web.test_browser_pages import PASSWORD, _enrolled, fill, seen, text
from update_server.mfa.totp import code_at


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    """The server publishing 2.0.0 (requires an authorization), its key listed in root."""
    with serve_ward(tmp_path_factory.mktemp("technician-browser"), image_size=16 * 1024) as served:
        yield served


@pytest.fixture
def driver(ward: Ward, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A new browser, its logs emptied of its own start page."""
    for browser in chromium(ward.server.url, ward.server.ca, tmp_path / "chromium"):
        browser.get_log("performance")
        browser.get_log("browser")
        yield browser


def test_a_technician_authorizes_a_pump_on_a_phone_and_sees_it_used_r9_r58(
    ward: Ward, driver: webdriver.Chrome
) -> None:
    url = ward.server.url
    device = pump(ward, "pump-0001")
    waiting = fwclient("update", *device)
    assert waiting.returncode == 0, waiting.stderr
    assert "needs a technician's authorization" in waiting.stdout
    secret, step = _enrolled(ward.server, "tom", api_login=False)
    fwserver_cli(ward.server, "user", "scope", "tom", "--site", "ward-3")

    driver.get(f"{url}/login")
    seen(driver, "technician-login")
    login_code = code_at(secret, step + 1)
    fill(driver, username="tom", password=PASSWORD, otp=login_code)
    assert driver.current_url == f"{url}/", text(driver)
    seen(driver, "technician-home")
    driver.find_element(By.LINK_TEXT, "Your devices: authorize an update").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/technician/devices"))
    seen(driver, "technician-devices")
    card = driver.find_element(By.ID, "device-pump-0001").text
    assert "2.0.0" in card and TARGET in card and "ward-3" in card

    driver.find_element(By.ID, "pick-pump-0001").click()
    fill(driver, **{"otp-1": login_code})
    seen(driver, "technician-code-refused")
    assert "one-time code refused" in driver.find_element(By.ID, "error").text
    assert "code can be used" in driver.find_element(By.ID, "next-code").text
    assert driver.find_element(By.ID, "pick-pump-0001").is_selected()

    fill(driver, **{"otp-1": code_at(secret, step + 2)})
    seen(driver, "technician-authorized")
    assert "1 authorization issued" in driver.find_element(By.ID, "notice").text
    issued = driver.find_element(By.ID, "issued").text
    assert "pump-0001" in issued and TARGET in issued
    link = driver.find_element(By.CSS_SELECTOR, "#issued a.download").get_attribute("href")
    assert link is not None and link.endswith(".json")

    driver.get(f"{url}/technician/authorizations")
    seen(driver, "technician-authorizations")
    assert "pending" in driver.find_element(By.ID, "authorizations").text

    installed = fwclient("update", *device)
    assert installed.returncode == 0, installed.stderr
    assert "in slot b" in installed.stdout
    booted = fwclient("boot", "--state", device[1])
    assert booted.returncode == 0, booted.stderr
    assert fwclient("report", *device).returncode == 0
    driver.refresh()
    WebDriverWait(driver, 15).until(
        lambda d: "used" in d.find_element(By.ID, "authorizations").text
    )
    seen(driver, "technician-authorizations-used")
    listed = driver.find_element(By.ID, "authorizations").text
    assert "used: the device installed with it" in listed
    assert "tom from 127.0.0.1" in listed
    assert "2.0.0" in listed.split("Device runs")[1], "what the pump now runs"
