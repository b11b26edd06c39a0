"""Alerts that no request raises (R31, ``alerts.watch`` K1-K3; a failed renewal).

Metadata within 12 h of its expiry, a TLS certificate within 30 days of
its, and a timestamp/snapshot renewal that fails are critical events of
issue 11: each becomes an audit entry (and so an alert) once, raised by the
alert worker's watch or by the renewal thread, with no request to carry it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.alerts_helpers import worker
from tests.update_server.repo_world import World
from update_server.alerts.critical import AlertClass, classify, detail_of
from update_server.audit.actions import Action
from update_server.models import AuditEntry
from update_server.publication import renewal
from update_server.publication.renewal import RenewalThread


def _entries(world: World, action: Action) -> list[AuditEntry]:
    with world.services.sessions() as db:
        query = select(AuditEntry).where(AuditEntry.action == action.value)
        return list(db.scalars(query.order_by(AuditEntry.seq)))


def _alert(entry: AuditEntry) -> AlertClass | None:
    found = classify(entry.action, entry.outcome, detail_of(entry.detail))
    return None if found is None else found.alert_class


def test_k1_k3_metadata_close_to_expiry_alerts_once_per_role_version(
    world: World, clock: FakeClock
) -> None:
    """K1, K3: a timestamp nobody renewed, within 12 h of its expiry, alerts once."""
    watcher = worker(world.app)
    assert watcher.watch() == 0  # all fresh: nothing to say
    clock.advance(hours=13)  # the renewal is due at 12 h; none ran: 11 h left

    raised = watcher.watch()
    clock.advance(minutes=2)  # the next watch is due: the same timestamp, said already
    again = watcher.watch()

    entries = _entries(world, Action.EXPIRY_WARNING)
    assert (raised, again) == (1, 0)
    assert [entry.object for entry in entries] == ["metadata:timestamp:v1"]
    assert _alert(entries[0]) is AlertClass.METADATA_EXPIRING
    assert "renewal" in detail_of(entries[0].detail)["message"]


def test_k1_a_renewed_timestamp_is_a_new_item(world: World, clock: FakeClock) -> None:
    """K3: once for a version; the next version that is let lapse alerts again."""
    watcher = worker(world.app)
    clock.advance(hours=13)
    watcher.watch()
    assert renewal.renew_if_due(world.services, clock()) == ["timestamp"]
    clock.advance(minutes=2)
    assert watcher.watch() == 0  # v2 is fresh
    clock.advance(hours=13)
    assert watcher.watch() == 1
    objects = [entry.object for entry in _entries(world, Action.EXPIRY_WARNING)]
    assert objects == ["metadata:timestamp:v1", "metadata:timestamp:v2"]


def test_k2_a_tls_certificate_within_30_days_of_its_expiry_alerts_once(
    world: World, clock: FakeClock
) -> None:
    """K2: the served certificate (90 days) read as it is, 61 days on: once, its fingerprint."""
    watcher = worker(world.app)
    clock.advance(days=61)
    watcher.watch()
    clock.advance(days=1)
    watcher.watch()

    tls = [e for e in _entries(world, Action.EXPIRY_WARNING) if e.object.startswith("tls:")]
    assert len(tls) == 1
    assert tls[0].object.startswith("tls:served:")
    assert _alert(tls[0]) is AlertClass.TLS_EXPIRING
    assert "expires on" in detail_of(tls[0].detail)["message"]


def test_a_failing_renewal_is_audited_once_until_it_succeeds(
    world: World, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R31: "timestamp/snapshot renewal failed" alerts once per run of failures."""
    thread = RenewalThread(world.services)
    real = renewal.renew_if_due

    def broken(*args: object, **kwargs: object) -> list[str]:
        raise OSError("disk full")

    monkeypatch.setattr(renewal, "renew_if_due", broken)
    clock.advance(hours=12)
    thread.tick()
    thread.tick()
    assert [e.outcome for e in _entries(world, Action.RENEW)] == ["failure"]
    failure = _entries(world, Action.RENEW)[0]
    assert _alert(failure) is AlertClass.RENEWAL_FAILED
    assert detail_of(failure.detail) == {"error": "OSError: disk full"}

    monkeypatch.setattr(renewal, "renew_if_due", real)
    assert thread.tick() == ["timestamp"]
    monkeypatch.setattr(renewal, "renew_if_due", broken)
    clock.advance(hours=12, minutes=1)
    thread.tick()
    outcomes = [e.outcome for e in _entries(world, Action.RENEW)]
    assert outcomes == ["failure", "success", "failure"]
