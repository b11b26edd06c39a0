"""The alerts page (AL1-AL3 of ``web.alert_pages``; R31, R38), on real deliveries.

Two webhooks: ``siem`` is a real receiver on loopback (its own HMAC check),
``pager`` is down (connection refused). A lockout raised while only
``siem`` was configured has no row for ``pager``; one raised after has
both. The worker the server runs delivers them; the page shows each
alert's class, severity and delivery per webhook, and the backlog.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.alerts_helpers import lock_out, server, with_webhooks, worker, write_secret
from tests.update_server.webhook_receiver import WebhookReceiver
from tests.web.pages import Browser
from tests.web.test_audit_pages import add_entry, logged_in
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.models import AuditEntry, Role
from update_server.web import alert_pages


@pytest.fixture
def siem(tmp_path: Path, clock: FakeClock) -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(write_secret(tmp_path / "siem.key"), now=clock.monotonic)
    hook.start()
    yield hook
    hook.stop()


@pytest.fixture
def app(
    config: ServerConfig, clock: FakeClock, siem: WebhookReceiver, tmp_path: Path
) -> Iterator[Flask]:
    """The server with both webhooks, after a lockout raised when only ``siem`` was there."""
    write_secret(tmp_path / "pager.key")
    siem_hook = ("siem", siem.url, tmp_path / "siem.key")
    with server(with_webhooks(config, siem_hook), clock) as before:
        lock_out(before.test_client(), "mallory")
    pager_hook = ("pager", "http://127.0.0.1:9/alerts", tmp_path / "pager.key")  # nobody listens
    with server(with_webhooks(config, siem_hook, pager_hook), clock) as made:
        yield made


def _seq(app: Flask, action: str, object_end: str) -> int:
    with transaction(app.extensions["fw"].sessions) as db:
        rows = db.scalars(select(AuditEntry).where(AuditEntry.action == action))
        return next(row.seq for row in rows if row.object.endswith(object_end))


def _delivery(page: str, seq: int, hook: str) -> str:
    return page.split(f'id="delivery-{seq}-{hook}">', 1)[1].split("</dd>", 1)[0]


def test_al2_al3_recent_alerts_newest_first_with_their_delivery_per_webhook_r31(
    app: Flask, browser: Browser, clock: FakeClock, siem: WebhookReceiver
) -> None:
    lock_out(app.test_client(), "eve")
    quiet = add_entry(app, clock, "release.publish", object="pump-x100/fw-2.0.0.bin")
    worker(app).drain()  # siem takes both; pager refuses the connection
    mallory, eve = _seq(app, "login.locked", "mallory"), _seq(app, "login.locked", "eve")
    assert {alert["class"] for alert in siem.alerts.values()} == {"lockout"}
    logged_in(app, browser, clock, "audrey", Role.AUDITOR)

    assert browser.get("/alerts").status_code == 200
    page = browser.last_page
    assert page.index(f'id="alert-{eve}"') < page.index(f'id="alert-{mallory}"')
    assert f'id="alert-{quiet}"' not in page, "a publication without root is no alert"
    card = page.split(f'id="alert-{eve}"', 1)[1].split("</li>", 1)[0]
    assert "lockout" in card
    assert "severity-warning" in card
    assert _delivery(page, eve, "siem").startswith("delivered ")
    assert _delivery(page, mallory, "siem").startswith("delivered ")
    waiting = _delivery(page, eve, "pager")
    assert waiting.startswith("waiting: 1 attempt, next ")
    assert "last error" in waiting
    assert _delivery(page, mallory, "pager").startswith("not queued")


def test_al3_the_backlog_per_webhook_is_the_status_one_r38(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    lock_out(app.test_client(), "eve")
    worker(app).drain()
    logged_in(app, browser, clock, "olga", Role.SECURITY_OFFICER)
    browser.get("/alerts")
    page = browser.last_page
    assert 'data-undelivered="1"' in page
    pager = page.split('id="backlog-pager">', 1)[1].split("</li>", 1)[0]
    assert "1 waiting" in pager
    assert "failed" in pager
    siem = page.split('id="backlog-siem">', 1)[1].split("</li>", 1)[0]
    assert "0 waiting" in siem
    assert "delivered" in siem


def test_al2_older_alerts_page_by_sequence_number(
    app: Flask, browser: Browser, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_out(app.test_client(), "eve")
    monkeypatch.setattr(alert_pages, "PAGE", 1)
    mallory, eve = _seq(app, "login.locked", "mallory"), _seq(app, "login.locked", "eve")
    logged_in(app, browser, clock, "audrey", Role.AUDITOR)
    browser.get("/alerts")
    assert f'id="alert-{eve}"' in browser.last_page
    assert f'id="alert-{mallory}"' not in browser.last_page
    assert f'href="/alerts?before={eve}"' in browser.last_page
    browser.get(f"/alerts?before={eve}")
    assert f'id="alert-{mallory}"' in browser.last_page
    assert f'id="alert-{eve}"' not in browser.last_page
    assert browser.get("/alerts?before=x").status_code == 400


def test_al1_reading_the_alerts_is_audited_r27(
    app: Flask, browser: Browser, clock: FakeClock
) -> None:
    logged_in(app, browser, clock, "audrey", Role.AUDITOR)
    browser.get("/alerts")
    with transaction(app.extensions["fw"].sessions) as db:
        reads = list(
            db.scalars(
                select(AuditEntry).where(
                    AuditEntry.action == "audit.read", AuditEntry.object == "alerts"
                )
            )
        )
    assert [(row.actor, json.loads(row.detail)["returned"]) for row in reads] == [("audrey", 1)]
