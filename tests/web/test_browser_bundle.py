"""The technician's offline bundle in a real browser: Chromium at 390 x 844, the real server.

Issue 13 on a phone (R9, R13, R25, R52): release 2.0.0 requires an
authorization and pump 2 of ward 3 has no route to the server. Tom, a
technician of ward 3, logs in, opens the pump's card, follows "Offline
bundle for this device"; the code he logged in with is refused (nothing is
issued, the page says why and when the next code comes); a fresh code
downloads the file. The file is the bundle: the pump's release, and an
authorization bound to this pump and to the SHA-256 the published metadata
signs; the pump, with no network, installs from it. Pages are checked as
``test_browser_pages.seen`` checks them and saved as
``docs/screenshots/bundle-*.png`` with ``FW_SCREENSHOTS=1``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from fwcommon.bundle import AUTHORIZATION, Bundle
from repo_metadata.authorization import SignedAuthorization
from tests.e2e.conftest import fwclient
from tests.e2e.ward import TARGET, Ward, fwserver_cli, pump, serve_ward
from tests.web.browser import chromium
from tests.web.test_browser_pages import PASSWORD, _enrolled, fill, seen, text
from update_server.mfa.totp import code_at

BOUND = 64 * 1024 * 1024
DOWNLOAD_WAIT = 30.0


@pytest.fixture(scope="module")
def ward(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    """The server publishing 2.0.0 (requires an authorization), its key listed in root."""
    with serve_ward(tmp_path_factory.mktemp("bundle-browser"), image_size=16 * 1024) as served:
        yield served


@pytest.fixture
def driver(ward: Ward, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A new browser that saves downloads to ``tmp_path/downloads``, its logs emptied."""
    for browser in chromium(ward.server.url, ward.server.ca, tmp_path / "chromium"):
        browser.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(tmp_path / "downloads")},
        )
        browser.get_log("performance")
        browser.get_log("browser")
        yield browser


def downloaded(directory: Path) -> Path:
    """The one file the browser finished saving in ``directory`` (waits for it)."""
    deadline = time.monotonic() + DOWNLOAD_WAIT
    while time.monotonic() < deadline:
        done = [f for f in directory.glob("*") if not f.name.endswith(".crdownload")]
        if done and not list(directory.glob("*.crdownload")):
            (file,) = done
            return file
        time.sleep(0.2)  # polling a download, no timing asserted
    pytest.fail(f"no download finished in {directory} within {DOWNLOAD_WAIT} s")


def test_a_technician_downloads_a_pumps_bundle_on_a_phone_after_a_fresh_code_r9_r13(
    ward: Ward, driver: webdriver.Chrome, tmp_path: Path
) -> None:
    url = ward.server.url
    device = pump(ward, "pump-0002")
    secret, step = _enrolled(ward.server, "tom", api_login=False)
    fwserver_cli(ward.server, "user", "scope", "tom", "--site", "ward-3")

    driver.get(f"{url}/login")
    login_code = code_at(secret, step + 1)
    fill(driver, username="tom", password=PASSWORD, otp=login_code)
    assert driver.current_url == f"{url}/", text(driver)
    driver.get(f"{url}/technician/devices")
    driver.find_element(By.ID, "bundle-pump-0002").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/pump-0002/bundle"))
    seen(driver, "bundle-device")
    assert "2.0.0" in driver.find_element(By.ID, "release").text
    assert "required" in driver.find_element(By.ID, "needs").text

    fill(driver, otp=login_code)
    seen(driver, "bundle-code-refused")
    assert "No bundle was made: one-time code refused" in driver.find_element(By.ID, "error").text
    assert "code can be used" in driver.find_element(By.ID, "next-code").text

    field = driver.find_element(By.ID, "otp")
    field.clear()
    field.send_keys(code_at(secret, step + 2))
    driver.find_element(By.CSS_SELECTOR, "#bundle-form button[type=submit]").click()
    file = downloaded(tmp_path / "downloads")

    assert file.name == "bundle-pump-0002-2.0.0.tar"
    image = (ward.work / "pump-fw-2.0.0.bin").read_bytes()
    with Bundle.open(file, max_bytes=BOUND) as bundle:
        manifest = bundle.manifest
        document = bundle.read(AUTHORIZATION, limit=16 * 1024)
        (firmware,) = [name for name in bundle.names() if name.endswith(".pump-fw-2.0.0.bin")]
        carried = bundle.read(firmware, limit=BOUND)
    signed = SignedAuthorization.from_bytes(document).authorization
    sha256 = hashlib.sha256(image).hexdigest()
    assert (signed.device_id, signed.target_path, signed.sha256) == ("pump-0002", TARGET, sha256)
    assert signed.technician == "tom"
    assert (manifest.device, manifest.release) == ("pump-0002", TARGET)
    assert carried == image

    driver.get(f"{url}/technician/authorizations")
    listed = driver.find_element(By.ID, "authorizations").text
    assert "pump-0002" in listed and "pending" in listed, "issued as the authorize form does"
    assert json.loads(document)["signed"]["nonce"] == signed.nonce

    # The pump, with no network, installs from the file (the "done when").
    state = device[device.index("--state") + 1]
    installed = fwclient("update", "--state", state, "--bundle", str(file))
    assert installed.returncode == 0, installed.stderr
    assert "in slot b" in installed.stdout
