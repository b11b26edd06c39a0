"""A real browser for the page tests: Debian's Chromium, headless, driven by Selenium.

Nothing is downloaded at test time: the driver is ``/usr/bin/chromedriver``
given explicitly (so Selenium Manager is skipped; ``no_selenium_manager``
makes any call to it fail the test) and the browser is ``/usr/bin/chromium``.
Missing either skips locally and fails under ``CI=true``.

The browser trusts the server through the server's own CA (``tls/ca.crt``,
what devices are given), not by ignoring certificate errors: the harness
fetches the certificate the server presents, verified against that CA
with Python's ``ssl`` (chain and host name), and Chromium is told the
SHA-256 of that verified certificate's public key
(``--ignore-certificate-errors-spki-list``), the one key it then accepts.
(Chromium on Linux reads CAs only from an NSS database, which would need
certutil; the server sends its leaf without the CA, so a pin of the CA's
key is not seen.) The viewport is a phone's: 390 x 844 CSS pixels.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager

from tests.hsm_mock.helpers import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHONE = (390, 844)
#: Set to 1 to save each page to docs/screenshots/ (never on CI).
SCREENSHOTS_ENV = "FW_SCREENSHOTS"
SCREENSHOTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def require_browser() -> None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file() or shutil.which(str(path)) is None:
            skip_or_fail(f"{path} not installed (apt-get install {package})")


def verified_server_key(url: str, ca: Path) -> str:
    """The pin of the key ``url`` serves, once its certificate verifies against ``ca``.

    Base64 SHA-256 of the SubjectPublicKeyInfo (Chromium's format); an
    ``ssl.SSLCertVerificationError`` if the server's chain or name does not
    verify against the CA.
    """
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(ca))
    host, port = parts.hostname or "", parts.port or 443
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    certificate = x509.load_der_x509_certificate(der)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def _refuse_download(*_: object, **__: object) -> dict[str, str]:
    pytest.fail("Selenium Manager was called: tests use /usr/bin/chromedriver, download nothing")


def chromium(url: str, ca: Path, profile: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium at a phone's viewport that trusts ``url``'s CA-verified key only."""
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument("--headless=new")
    options.add_argument(f"--user-data-dir={profile}")
    pin = verified_server_key(url, ca)
    options.add_argument(f"--ignore-certificate-errors-spki-list={pin}")
    options.add_argument(f"--window-size={PHONE[0]},{PHONE[1]}")
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--no-first-run")
    # The network log is how the tests read each page's headers (the CSP).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    if os.geteuid() == 0:  # Chromium refuses to run its sandbox as root (containers)
        options.add_argument("--no-sandbox")
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": PHONE[0], "height": PHONE[1], "pixelRatio": 2}},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        patch.setattr(SeleniumManager, "binary_paths", _refuse_download)
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, page: str) -> None:
    """Save the page to docs/screenshots/<page>.png when FW_SCREENSHOTS=1 (for the README)."""
    if os.environ.get(SCREENSHOTS_ENV) == "1" and os.environ.get("CI") != "true":
        SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOTS_DIR / f"{page}.png"))
