"""The alert outbox (R31, ``alerts.outbox`` O1-O4): written with its audit entry, or not at all.

On both database legs. The webhook is never reached here (no worker runs):
what is checked is what the database holds after each transaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from client.events import EventLog, EventType
from tests.clocks import FakeClock
from tests.update_server.alerts_helpers import lock_out, outbox, server, with_webhooks, write_secret
from tests.update_server.devices_helpers import FakeDevice, issue_token
from tests.update_server.people import enrolled_user
from update_server.alerts import backlog
from update_server.alerts.critical import alert_id
from update_server.alerts.models import AlertDelivery
from update_server.alerts.outbox import DELIVERED_KEPT, prune
from update_server.audit import Actor, append, audit_event
from update_server.audit.chain import entry_hash
from update_server.audit.vocabulary import FIELD_NAMES
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.models import AuditEntry, Role

pytestmark = pytest.mark.usefixtures("fast_hashing")

URL = "http://127.0.0.1:9/alerts"  # discard port: nothing is sent in these tests
SYSTEM = Actor("fwserver", "system", "-")


@pytest.fixture
def alerting(config: ServerConfig, tmp_path: Path) -> ServerConfig:
    return with_webhooks(
        config,
        ("siem", URL, _secret(tmp_path / "siem.key")),
        ("pager", URL, _secret(tmp_path / "pager.key")),
    )


def _secret(path: Path) -> Path:
    write_secret(path)
    return path


def test_o1_a_critical_request_commits_one_row_per_webhook_with_its_entry(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    with server(alerting, clock) as app:
        lock_out(app.test_client(), "mallory")
        rows = outbox(app)
        with app.extensions["fw"].sessions() as db:
            entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "login.locked")).one()
    assert sorted(row.webhook for row in rows) == ["pager", "siem"]
    assert {row.alert_id for row in rows} == {alert_id(entry.seq, entry.hash)}
    assert {row.seq for row in rows} == {entry.seq}
    body = json.loads(rows[0].payload)
    assert body["class"] == "lockout"
    assert body["severity"] == "warning"
    assert body["audit"]["action"] == "login.locked"
    assert body["audit"]["hash"] == entry.hash
    assert rows[0].payload == rows[1].payload  # O2: one body for every attempt and webhook
    assert all(row.delivered_at is None and row.attempts == 0 for row in rows)


def test_o2_the_alert_carries_its_whole_entry_whose_hash_a_receiver_can_check(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    with server(alerting, clock) as app:
        lock_out(app.test_client(), "mallory")
        stored = outbox(app)[0]
    sent = json.loads(stored.payload)["audit"]
    time = datetime.strptime(sent["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    fields = {name: sent[name] for name in FIELD_NAMES}
    digest = entry_hash(seq=sent["seq"], prev_hash=sent["prev_hash"], time=time, fields=fields)
    assert digest == sent["hash"]
    assert json.loads(stored.payload)["detail"] == json.loads(sent["detail"])


def test_o1_a_rolled_back_action_leaves_neither_entry_nor_alert(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    with server(alerting, clock) as app:
        sessions = app.extensions["fw"].sessions
        with pytest.raises(RuntimeError, match="action failed"), transaction(sessions) as db:
            append(
                db,
                audit_event(
                    "login.locked", actor=SYSTEM, object="user:x", outcome="failure", time=clock()
                ),
            )
            assert len(db.scalars(select(AuditEntry)).all()) >= 1  # flushed, in the transaction
            raise RuntimeError("action failed")
        assert outbox(app) == []
        with sessions() as db:
            assert (
                db.scalars(select(AuditEntry).where(AuditEntry.action == "login.locked")).all()
                == []
            )


def test_o1_a_routine_entry_has_no_alert(alerting: ServerConfig, clock: FakeClock) -> None:
    with server(alerting, clock) as app:
        with transaction(app.extensions["fw"].sessions) as db:
            append(
                db,
                audit_event(
                    "login", actor=SYSTEM, object="user:x", outcome="success", time=clock()
                ),
            )
        assert outbox(app) == []


def test_o1_without_webhooks_nothing_is_queued(config: ServerConfig, clock: FakeClock) -> None:
    with server(config.with_changes(max_failed_logins=1), clock) as app:
        lock_out(app.test_client(), "mallory")
        assert outbox(app) == []


def test_alerts_committed_before_a_restart_are_still_there_after_it(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    """Durability: a server that stops before delivering loses nothing (the rows are the queue)."""
    with server(alerting, clock) as app:
        lock_out(app.test_client(), "mallory", "trudy")
    with server(alerting, clock) as restarted, restarted.extensions["fw"].sessions() as db:
        waiting = backlog(db, webhooks=["siem", "pager"], now=clock())
    assert waiting.undelivered == 4
    assert [hook.undelivered for hook in waiting.webhooks] == [2, 2]


def test_backlog_shows_each_webhook_its_count_and_oldest_age(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    with server(alerting, clock) as app:
        raised = clock.now
        lock_out(app.test_client(), "mallory")
        clock.advance(minutes=5)
        lock_out(app.test_client(), "trudy")
        with app.extensions["fw"].sessions() as db:
            shown = backlog(db, webhooks=["siem", "pager", "spare"], now=clock.advance(minutes=1))
    siem = shown.webhooks[0]
    assert (siem.webhook, siem.undelivered, siem.oldest) == ("siem", 2, raised)
    assert siem.oldest_age_seconds == 360
    assert siem.last_error is None  # no attempt yet
    spare = shown.webhooks[2]
    assert (spare.webhook, spare.undelivered, spare.oldest_age_seconds) == ("spare", 0, None)
    assert shown.to_json()["undelivered"] == 4


def test_backlog_names_a_webhook_removed_from_the_configuration_that_still_has_rows(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    with server(alerting, clock) as app:
        lock_out(app.test_client(), "mallory")
        with app.extensions["fw"].sessions() as db:
            shown = backlog(db, webhooks=["siem"], now=clock())
    assert [(hook.webhook, hook.undelivered) for hook in shown.webhooks] == [
        ("siem", 1),
        ("pager", 1),
    ]


def test_a3_a_device_reporting_an_attack_refused_raises_its_alert(
    alerting: ServerConfig, clock: FakeClock, tmp_path: Path
) -> None:
    """R31: the device's own log says it refused a bad hash; the report's entry is the alert."""
    log = EventLog(tmp_path / "events.log")
    log.append(EventType.CHECKED, "checked", now=clock.now)
    log.append(EventType.BAD_HASH, "target hash mismatch", now=clock.now)
    with server(alerting, clock) as app:
        client = app.test_client()
        admin = enrolled_user(app, client, clock, "alice", Role.ADMIN)
        device = FakeDevice("pump-1")
        device.register(client, issue_token(client, admin, clock, accept=True), now=clock.now)
        assert device.report(client, now=clock.now, entries=list(log.entries())).status_code == 200
        rows = outbox(app)
    assert {row.alert_class for row in rows} == {"device_attack_refused"}
    sent = json.loads(rows[0].payload)
    assert sent["detail"]["events"] == ["bad_hash", "checked"]
    assert sent["audit"]["object"] == "device:pump-1"


def test_o6_rows_delivered_long_ago_are_pruned_undelivered_ones_never(
    alerting: ServerConfig, clock: FakeClock
) -> None:
    """O6: the outbox holds what waits; a delivered row goes after DELIVERED_KEPT."""
    with server(alerting, clock) as app:
        lock_out(app.test_client(), "mallory")
        with transaction(app.extensions["fw"].sessions) as db:
            siem = db.scalars(select(AlertDelivery).where(AlertDelivery.webhook == "siem")).one()
            siem.delivered_at = clock()
        clock.advance(seconds=(DELIVERED_KEPT - timedelta(minutes=1)).total_seconds())
        with transaction(app.extensions["fw"].sessions) as db:
            assert prune(db, now=clock(), keep=DELIVERED_KEPT) == 0
        clock.advance(minutes=2)
        with transaction(app.extensions["fw"].sessions) as db:
            assert prune(db, now=clock(), keep=DELIVERED_KEPT) == 1
        assert [row.webhook for row in outbox(app)] == ["pager"]  # still waiting: kept
