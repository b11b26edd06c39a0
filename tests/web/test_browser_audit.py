"""The auditor's pages in a real browser: Chromium at 390 x 844, the real server over TLS.

Issue 11's read-only pages on a phone (R27, R28, R31, R32): mallory's
password is guessed until the account locks (a critical event). Auditor
audrey logs in, searches the log for the failed logins, checks the chain
against its signed checkpoint (intact), downloads the export and it
verifies offline with the audit public key, and finds the lockout on the
alerts page. Then someone with the database rewrites one entry: the check
names that entry and why. Each page is checked as
``test_browser_pages.seen`` checks it (CSP header, no CSP violation, no
sideways scrolling) and saved as ``docs/screenshots/audit-*.png`` with
``FW_SCREENSHOTS=1``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait
from sqlalchemy import create_engine, select, update

from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.people import call
from tests.web.browser import chromium
from tests.web.test_browser_pages import PASSWORD, _enrolled, add_person, fill, seen, submit, text
from update_server.audit.export import verify_export
from update_server.audit.public_key import audit_public_key
from update_server.config import ServerConfig
from update_server.mfa.totp import code_at
from update_server.models import AuditEntry

DOWNLOAD_WAIT = 15


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(new_data_dir(tmp_path_factory.mktemp("audit-web"))) as running:
        yield running


@pytest.fixture
def driver(server: RunningServer, tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A new browser, its logs emptied of its own start page."""
    for browser in chromium(server.url, server.ca, tmp_path / "chromium"):
        browser.get_log("performance")
        browser.get_log("browser")
        yield browser


def _lock_out(server: RunningServer, name: str) -> None:
    """Wrong passwords until the account locks: the lockout alert (R9, R31)."""
    add_person(server, name)
    config = ServerConfig.load(server.data_dir)
    for _ in range(config.max_failed_logins):
        body = {"username": name, "password": "a wrong guess of the password"}
        status, _, _ = call(server, "POST", "/api/v1/auth/login", body)
        assert status in {401, 429}


def _downloaded(folder: Path) -> Path:
    deadline = time.monotonic() + DOWNLOAD_WAIT
    while time.monotonic() < deadline:
        done = [path for path in folder.glob("*.jsonl") if path.stat().st_size]
        if done:
            return done[0]
        time.sleep(0.2)
    pytest.fail(f"no export downloaded into {folder}")


def _rewrite(server: RunningServer, seq: int) -> None:
    """What someone with the database could do: one entry's object changed, nothing else."""
    engine = create_engine(ServerConfig.load(server.data_dir).database_url)
    with engine.begin() as db:
        db.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(object="someone-else"))
    engine.dispose()


def _first_locked(server: RunningServer) -> int:
    engine = create_engine(ServerConfig.load(server.data_dir).database_url)
    with engine.connect() as db:
        query = select(AuditEntry.seq).where(AuditEntry.action == "login.locked")
        seq = int(db.execute(query.order_by(AuditEntry.seq)).scalar_one())
    engine.dispose()
    return seq


def test_an_auditor_searches_checks_exports_and_reads_the_alerts_on_a_phone_r27_r28(
    server: RunningServer, driver: webdriver.Chrome, tmp_path: Path
) -> None:
    url = server.url
    _lock_out(server, "mallory")
    secret, step = _enrolled(server, "audrey", role="auditor", api_login=False)
    driver.get(f"{url}/login")
    fill(driver, username="audrey", password=PASSWORD, otp=code_at(secret, step + 1))
    assert driver.current_url == f"{url}/", text(driver)
    seen(driver, "audit-home")

    driver.find_element(By.LINK_TEXT, "Search the audit log").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url == f"{url}/audit")
    seen(driver, "audit-search")
    Select(driver.find_element(By.ID, "outcome")).select_by_value("failure")
    fill(driver, action="login", object="mallory")
    seen(driver, "audit-search-results")
    found = driver.find_element(By.ID, "entries").text
    assert "login.locked" in found, found
    assert "mallory" in found

    driver.find_element(By.LINK_TEXT, "Check the log against its signed checkpoint").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url == f"{url}/audit/verify")
    seen(driver, "audit-verify")
    result = driver.find_element(By.ID, "result")
    assert result.get_attribute("data-ok") == "yes", result.text
    key = audit_public_key(ServerConfig.load(server.data_dir))
    assert key.keyid in driver.find_element(By.ID, "key").text

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.get(f"{url}/audit/export")
    seen(driver, "audit-export")
    driver.find_element(By.CSS_SELECTOR, "#export-form button[type=submit]").click()
    report = verify_export(_downloaded(downloads), key)
    assert report.ok, report.reason
    assert report.checkpoint is not None
    assert report.checkpoint.seq == report.head_seq, "signed to its end"

    driver.get(f"{url}/alerts")
    seen(driver, "audit-alerts")
    alerts = driver.find_element(By.ID, "alerts").text
    assert "lockout" in alerts
    assert "mallory" in alerts

    locked = _first_locked(server)
    _rewrite(server, locked)
    driver.get(f"{url}/audit/verify")
    seen(driver, "audit-verify-broken")
    assert driver.find_element(By.ID, "result").get_attribute("data-ok") == "no"
    where = driver.find_element(By.ID, "first-bad").text
    assert where.startswith(f"It breaks at entry {locked}: content altered"), where
    submit(driver, "#bad-entries")
    assert driver.find_element(By.ID, "entries").text.split()[0] == f"#{locked}"
