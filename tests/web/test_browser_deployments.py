"""A wave rollout on a phone: Chromium at 390 x 844, the real server over TLS, real pumps.

Issue 11's browser story (R9, four eyes): release 2.0.0 is published and
three real ``fwclient`` pumps are registered (their own keys, signed
requests) on a fleet left at "assigned". manager1 deploys 2.0.0 to the
fleet in waves (1 pump, then the rest) on the create form; their page
offers them no approval. manager2 approves with a fresh code; the page
shows wave 1 started. Wave 1's pump polls, installs, boots and reports
(signed); the page shows wave 2 started and the pump installed. An
administrator's fleet page shows each pump's version and deployment
status. Each page is checked as ``test_browser_pages.seen`` checks it (CSP,
no violation, no sideways scrolling) and saved as
``docs/screenshots/deployments-*.png`` with ``FW_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import fwclient, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.ward import Ward, pump
from tests.web.browser import chromium
from tests.web.test_browser_pages import PASSWORD, _enrolled, fill, log_in, seen, text
from update_server.config import ServerConfig
from update_server.mfa.totp import code_at

TARGET = f"{LINE}/pump-fw-2.0.0.bin"
PUMPS = ("pump-0001", "pump-0002", "pump-0003")


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ward, dict[str, list[str]]]]:
    """The server publishing 2.0.0 (no authorization needed), three pumps registered."""
    work = tmp_path_factory.mktemp("deployments-browser")
    data_dir = new_data_dir(work)
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(16 * 1024))
    offline = work / "offline"
    info = FirmwareInfo(version="2.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(offline, ServerConfig.load(data_dir), image, info, authorization=False)
    import_repository(data_dir, offline, targets_dir=work)
    with start_server(data_dir) as server:
        served = Ward(server, offline / "metadata" / "1.root.json", work)
        yield served, {name: pump(served, name) for name in PUMPS}


@pytest.fixture
def driver(ward: tuple[Ward, dict[str, list[str]]], tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A new browser, its logs emptied of its own start page."""
    server = ward[0].server
    for browser in chromium(server.url, server.ca, tmp_path / "chromium"):
        browser.get_log("performance")
        browser.get_log("browser")
        yield browser


def test_a_manager_deploys_in_waves_another_approves_and_the_waves_follow_the_pumps_r9(
    ward: tuple[Ward, dict[str, list[str]]], driver: webdriver.Chrome
) -> None:
    served, pumps = ward
    _created_by_manager1(served, driver)
    first = _approved_by_manager2(served, driver)
    _wave_1_installs(driver, pumps[first], first)
    secret, step = _enrolled(served.server, "ada", role="admin", api_login=False)
    log_in(driver, served.server, "ada", PASSWORD, code_at(secret, step + 1))
    driver.get(f"{served.server.url}/fleet")
    seen(driver, "deployments-fleet")
    card = driver.find_element(By.ID, f"device-{first}").text
    assert "2.0.0" in card and "1 (running): installed" in card


def _created_by_manager1(served: Ward, driver: webdriver.Chrome) -> None:
    """The form: the published release, the fleet, two waves; no approval for its creator."""
    server = served.server
    secret, step = _enrolled(server, "manager1", role="release_manager", api_login=False)
    log_in(driver, server, "manager1", PASSWORD, code_at(secret, step + 1))
    seen(driver, "deployments-home")
    driver.find_element(By.LINK_TEXT, "Deploy a published release in waves").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/deployments/new"))
    seen(driver, "deployments-new")
    driver.find_element(By.ID, "target-1").click()
    driver.find_element(By.ID, f"fleet-{LINE}").click()
    fill(driver, waves="1, 100%", success_percent="100", failure_percent="0")
    assert driver.current_url == f"{server.url}/deployments/1", text(driver)
    seen(driver, "deployments-created")
    assert "3 devices in 2 waves of 1, 2" in driver.find_element(By.ID, "notice").text
    assert "another release manager approves it" in driver.find_element(By.ID, "own").text
    assert not driver.find_elements(By.ID, "approve-form")
    driver.delete_all_cookies()


def _approved_by_manager2(served: Ward, driver: webdriver.Chrome) -> str:
    """A fresh code approves; wave 1 starts. Returns wave 1's pump."""
    server = served.server
    secret, step = _enrolled(server, "manager2", role="release_manager", api_login=False)
    log_in(driver, server, "manager2", PASSWORD, code_at(secret, step + 1))
    driver.find_element(By.LINK_TEXT, "Deployments: approve, pause, abort, watch the waves").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/deployments"))
    seen(driver, "deployments-list")
    assert "awaiting approval" in driver.find_element(By.ID, "deployment-1").text
    driver.find_element(By.LINK_TEXT, "Deployment 1").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/deployments/1"))
    fill(driver, **{"approve-otp": code_at(secret, step + 2)})
    seen(driver, "deployments-approved")
    assert "You approved deployment 1: it is running." in driver.find_element(By.ID, "notice").text
    assert driver.find_element(By.ID, "wave-1").get_attribute("data-started") == "yes"
    assert driver.find_element(By.ID, "wave-2").get_attribute("data-started") == "no"
    (first,) = [
        str(element.get_attribute("id")).removeprefix("device-")
        for element in driver.find_elements(By.CSS_SELECTOR, "#wave-1 li[id^=device-]")
    ]
    return first


def _wave_1_installs(driver: webdriver.Chrome, device: list[str], name: str) -> None:
    """The pump polls, installs, boots and reports (signed): wave 2 starts."""
    installed = fwclient("update", *device)
    assert installed.returncode == 0, installed.stderr
    assert "in slot b" in installed.stdout, installed.stdout
    booted = fwclient("boot", "--state", device[1])
    assert booted.returncode == 0, booted.stderr
    assert fwclient("report", *device).returncode == 0
    driver.refresh()
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.ID, "wave-2").get_attribute("data-started") == "yes"
    )
    assert driver.find_element(By.ID, "waves-started").text.startswith("2 of 2 started")
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.ID, "waves"))
    seen(driver, "deployments-next-wave")
    wave_1 = driver.find_element(By.ID, "wave-1").text
    assert "1 installed, 0 failed" in wave_1 and f"{name} installed" in wave_1
    assert "assigned" in driver.find_element(By.ID, "wave-2").text
    driver.delete_all_cookies()
