"""Snapshot and timestamp are renewed before they expire, without anyone acting.

TUF freeze attack: a device refuses expired metadata, so a server that let
its timestamp lapse would stop every update. The renewal runs at
``renew_at_fraction`` (half) of each role's lifetime (timestamp 1 day,
snapshot 7 days), in a background thread of every worker, one at a time.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.repo_world import FakeOtp, World, repository_files
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.checkpoint import verify_database
from update_server.audit.public_key import audit_public_key
from update_server.config import ServerConfig
from update_server.models import AuditEntry
from update_server.publication import switch
from update_server.publication.renewal import RenewalThread, renew_if_due, start_renewal_thread


def _signed(world: World, name: str) -> dict[str, Any]:
    signed: dict[str, Any] = json.loads((world.repository / "metadata" / name).read_bytes())[
        "signed"
    ]
    return signed


def _expires(world: World, name: str) -> datetime:
    return datetime.fromisoformat(str(_signed(world, name)["expires"]).replace("Z", "+00:00"))


def test_nothing_is_renewed_before_half_its_lifetime(world: World, clock: FakeClock) -> None:
    clock.advance(hours=11, minutes=59)
    assert renew_if_due(world.services, clock()) == []
    assert _signed(world, "timestamp.json")["version"] == 1


def test_timestamp_is_renewed_at_half_its_lifetime(world: World, clock: FakeClock) -> None:
    clock.advance(hours=12)
    assert renew_if_due(world.services, clock()) == ["timestamp"]
    timestamp = _signed(world, "timestamp.json")
    assert timestamp["version"] == 2
    assert _expires(world, "timestamp.json") == clock() + timedelta(days=1)
    assert "2.snapshot.json" not in {p.name for p in (world.repository / "metadata").iterdir()}


def test_snapshot_is_renewed_at_half_its_lifetime_with_a_timestamp(
    world: World, clock: FakeClock
) -> None:
    clock.advance(days=3, hours=12)
    assert renew_if_due(world.services, clock()) == ["snapshot", "timestamp"]
    assert _signed(world, "2.snapshot.json")["version"] == 2
    assert _expires(world, "2.snapshot.json") == clock() + timedelta(days=7)
    listed = _signed(world, "timestamp.json")["meta"]
    data = (world.repository / "metadata" / "2.snapshot.json").read_bytes()
    assert listed == {
        "snapshot.json": {
            "version": 2,
            "length": len(data),
            "hashes": {"sha256": hashlib.sha256(data).hexdigest()},
        }
    }


def test_a_server_left_alone_for_thirty_days_never_serves_expired_metadata(
    world: World, clock: FakeClock, tmp_path: Path
) -> None:
    """The freeze attack by neglect: hourly ticks keep both roles fresh."""
    renewal = RenewalThread(world.services)
    for _hour in range(30 * 24):
        clock.advance(hours=1)
        renewal.tick()
        assert _expires(world, "timestamp.json") > clock() + timedelta(hours=11)
        snapshot = _signed(world, "timestamp.json")["meta"]["snapshot.json"]
        assert _expires(world, f"{snapshot['version']}.snapshot.json") > clock() + timedelta(days=3)
    world.updater(tmp_path / "device").refresh()


def test_renewal_is_audited_with_key_use(world: World, clock: FakeClock) -> None:
    clock.advance(days=4)
    renew_if_due(world.services, clock())
    with world.services.sessions() as db:
        rows = [(r.action, r.object, r.outcome, r.actor) for r in db.query(AuditEntry)]
    assert ("repository.renew", "repository", "success", "fwserver") in rows
    assert ("key.use", "key:snapshot", "success", "fwserver") in rows
    assert ("key.use", "key:timestamp", "success", "fwserver") in rows


def test_an_interrupted_renewal_changes_nothing_and_the_next_one_works(
    world: World, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.advance(days=4)
    before = repository_files(world.repository)

    def crash(step: str) -> None:
        if step == "metadata/2.snapshot.json":
            raise OSError("disk full")

    monkeypatch.setattr(switch, "_reached", crash)
    assert RenewalThread(world.services).tick() == []
    assert repository_files(world.repository) == before
    monkeypatch.setattr(switch, "_reached", lambda _step: None)
    assert RenewalThread(world.services).tick() == ["snapshot", "timestamp"]


def test_the_background_thread_renews_by_itself(world: World, clock: FakeClock) -> None:
    clock.advance(hours=13)
    thread = start_renewal_thread(world.app, interval=0.02)
    try:
        deadline = time.monotonic() + 10
        while _signed(world, "timestamp.json")["version"] == 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert _signed(world, "timestamp.json")["version"] == 2


def test_a_server_without_a_repository_has_nothing_to_renew(
    app: Flask, config: ServerConfig, clock: FakeClock, tmp_path: Path
) -> None:
    world = World(app, config, clock, tmp_path, FakeOtp())
    clock.advance(days=30)
    assert renew_if_due(world.services, clock()) == []
    assert repository_files(world.repository) == {}


def _unauthenticated_refusals(app: Flask) -> list[tuple[int, int]]:
    """(seq, count) of each audited refusal of a request without a session."""
    with app.extensions["fw"].sessions() as db:
        rows = db.scalars(
            select(AuditEntry).where(AuditEntry.action == "access.refused").order_by(AuditEntry.seq)
        )
        return [(row.seq, json.loads(row.detail)["count"]) for row in rows]


def test_a_refusal_flood_on_a_quiet_server_reaches_the_log_at_the_next_tick_r27(
    app: Flask, config: ServerConfig, clock: FakeClock
) -> None:
    """R27: with no request after it, a flood's count is audited by the renewal thread.

    Chained and anchored like any entry: ``fwserver audit verify`` reads it.
    """
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/audit").status_code == 401
    renewal = RenewalThread(app.extensions["fw"])
    renewal.tick()
    assert [count for _seq, count in _unauthenticated_refusals(app)] == [1]  # window still open
    clock.advance(seconds=config.refusal_audit_window.total_seconds())
    renewal.tick()
    counts = _unauthenticated_refusals(app)
    assert [count for _seq, count in counts] == [1, 4]
    anchored = read_anchor(anchor_file(config.data_dir))
    assert anchored is not None
    assert anchored.seq == counts[-1][0]
    with app.extensions["fw"].sessions() as db:
        every = config.audit_checkpoint_every
        report = verify_database(db, audit_public_key(config), anchor=anchored, every=every)
    assert (report.ok, report.head_seq, report.warnings) == (True, counts[-1][0], ())
