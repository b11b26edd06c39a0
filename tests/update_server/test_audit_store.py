"""Appending to the audit log and the checkpoint cadence (R27, R28), on both databases."""

from __future__ import annotations

import itertools
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from flask import Flask
from securesystemslib.signer import Signer
from sqlalchemy import select

from hsm_mock.errors import PurposeMismatchError
from tests.clocks import FakeClock
from tests.update_server.audit_events import append_events
from update_server.app import create_app
from update_server.audit import Event, append
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.chain import canonical_time, entry_hash, stored_fields, verify_chain
from update_server.audit.checkpoint import (
    PAYLOAD_TYPE,
    checkpoint_now,
    load_checkpoints,
    sign_head,
    verify_database,
)
from update_server.audit.errors import AnchorError, CheckpointError
from update_server.audit.public_key import audit_public_key
from update_server.audit.recording import install
from update_server.audit.store import iter_entries
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.keys import signer_loader
from update_server.models import AuditCheckpoint, AuditEntry

EVERY = 5


@pytest.fixture
def config(config: ServerConfig) -> ServerConfig:
    return config.with_changes(audit_checkpoint_every=EVERY)


def event(number: int, *, time: datetime, **changes: str) -> Event:
    fields = {
        "actor": "alice",
        "role": "release_engineer",
        "action": "release.publish",
        "object": f"line-a/fw-{number}.bin",
        "outcome": "success",
        "source": "192.0.2.7",
    }
    return Event(time=time, detail={"n": number}, **{**fields, **changes})


def fill(app: Flask, count: int) -> None:
    append_events(app, range(count), lambda number, now: event(number, time=now))


def test_hash_is_stable_through_the_database_round_trip_r28(app: Flask) -> None:
    """SQLite gives naive datetimes back, PostgreSQL aware ones: same hash either way."""
    paris_summer = timezone(timedelta(hours=2))
    moment = datetime(2026, 7, 14, 11, 30, 5, 123456, tzinfo=paris_summer)
    sessions = app.extensions["fw"].sessions
    with transaction(sessions) as db:
        append(db, event(1, time=moment, actor="zoë", object="line-é/fw.bin"))
    with sessions() as db:
        stored = db.scalars(select(AuditEntry)).one()
        assert canonical_time(stored.time) == "2026-07-14T09:30:05.123456Z"
        recomputed = entry_hash(
            seq=stored.seq,
            prev_hash=stored.prev_hash,
            time=stored.time,
            fields=stored_fields(stored),
        )
        assert recomputed == stored.hash
        assert verify_chain(iter_entries(db)).ok


def test_entries_are_numbered_without_gaps_and_chained_r27(app: Flask) -> None:
    fill(app, 7)
    with app.extensions["fw"].sessions() as db:
        entries = list(iter_entries(db))
    assert [entry.seq for entry in entries] == list(range(1, 8))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert json.loads(entries[3].detail) == {"n": 3}


def test_concurrent_appends_never_fork_or_skip_a_number(app: Flask) -> None:
    """Four writers at once: the lock (BEGIN IMMEDIATE / LOCK TABLE) serialises them."""
    services = app.extensions["fw"]

    def writer(worker: int) -> None:
        for number in range(10):
            with transaction(services.sessions) as db:
                append(db, event(number, time=services.clock(), actor=f"worker{worker}"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(writer, range(4)))
    with services.sessions() as db:
        assert verify_chain(iter_entries(db)).head_seq == 40
        assert [cp.seq for cp in load_checkpoints(db)] == list(range(EVERY, 41, EVERY))


def test_hostile_field_lengths_and_nul_are_fitted_not_refused(app: Flask, clock: FakeClock) -> None:
    """A 10 kB user name with a NUL must not make the refusal's own entry fail (PostgreSQL)."""
    with transaction(app.extensions["fw"].sessions) as db:
        append(db, event(1, time=clock(), actor="x\x00" * 5000, outcome="refused"))
    with app.extensions["fw"].sessions() as db:
        stored = db.scalars(select(AuditEntry)).one()
        assert len(stored.actor) == 64
        assert "\x00" not in stored.actor
        assert verify_chain(iter_entries(db)).ok


def test_checkpoint_every_n_entries_signed_by_the_audit_key_r28(
    app: Flask, config: ServerConfig
) -> None:
    fill(app, 2 * EVERY + 2)
    key = audit_public_key(config)
    with app.extensions["fw"].sessions() as db:
        checkpoints = load_checkpoints(db)
        heads = {entry.seq: entry.hash for entry in iter_entries(db)}
    assert [cp.seq for cp in checkpoints] == [EVERY, 2 * EVERY]
    for checkpoint in checkpoints:
        checkpoint.verify(key)
        assert checkpoint.head_hash == heads[checkpoint.seq]
        payload = json.loads(checkpoint.payload())
        assert payload == {
            "_type": PAYLOAD_TYPE,
            "seq": checkpoint.seq,
            "head_hash": checkpoint.head_hash,
            "time": canonical_time(checkpoint.time),
            "server": key.keyid,
        }


def test_checkpoint_commits_with_its_entry_or_not_at_all(app: Flask) -> None:
    fill(app, EVERY - 1)
    services = app.extensions["fw"]
    with services.sessions() as db:
        append(db, event(EVERY, time=services.clock()))
        assert db.scalars(select(AuditCheckpoint)).one().seq == EVERY
        db.rollback()
    with services.sessions() as db:
        assert db.scalars(select(AuditCheckpoint)).all() == []


def test_a_key_that_cannot_sign_fails_closed_r27_r28(
    config: ServerConfig, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """R27/R28: no action is reported done while its entry cannot be anchored.

    The first entry of an empty log commits, but its commit is reported as
    failed; the next append finds the head unanchored, cannot anchor it,
    and is refused with nothing committed. Verify does not call the log intact.
    """

    def no_key(role: str) -> Signer:
        raise CheckpointError(f"the {role} key is unavailable")

    app = create_app(config, clock=clock, signer_loader=no_key)
    sessions = app.extensions["fw"].sessions
    try:
        with caplog.at_level(logging.ERROR):
            with (
                pytest.raises(AnchorError, match="could not be anchored"),
                transaction(sessions) as db,
            ):
                append(db, event(1, time=clock()))
            with (
                pytest.raises(AnchorError, match="cannot be anchored"),
                transaction(sessions) as db,
            ):
                append(db, event(2, time=clock()))
        assert "audit head at entry 1 not anchored: the audit key is unavailable" in caplog.text
        assert read_anchor(anchor_file(config.data_dir)) is None
        with sessions() as db:
            assert [entry.seq for entry in iter_entries(db)] == [1]
            report = verify_database(db, audit_public_key(config), anchor=None, every=EVERY)
        assert (report.ok, report.head_seq, report.first_bad) == (False, 1, 1)
        assert "no head is anchored outside the database" in report.reason
    finally:
        app.extensions["fw"].engine.dispose()


def test_on_demand_checkpoint_signs_the_head_once(app: Flask, config: ServerConfig) -> None:
    fill(app, 3)
    services = app.extensions["fw"]
    signer = services.signer("audit")
    with transaction(services.sessions) as db:
        first = checkpoint_now(db, signer, now=services.clock())
    with transaction(services.sessions) as db:
        again = checkpoint_now(db, signer, now=services.clock() + timedelta(hours=1))
    assert first == again
    assert first.seq == 3
    first.verify(audit_public_key(config))


def test_on_demand_checkpoint_of_an_empty_log_is_refused(app: Flask) -> None:
    services = app.extensions["fw"]
    with transaction(services.sessions) as db, pytest.raises(CheckpointError, match="empty"):
        checkpoint_now(db, services.signer("audit"), now=services.clock())


def test_only_the_audit_key_signs_checkpoints_r47(config: ServerConfig) -> None:
    """One key, one use: the token refuses a checkpoint from the timestamp key."""
    timestamp_signer = signer_loader(config)("timestamp")
    with pytest.raises(PurposeMismatchError):
        sign_head(timestamp_signer, seq=1, head_hash="ab" * 32, now=datetime.now(UTC))


def test_sessions_made_after_install_share_the_sink(app: Flask) -> None:
    """``install`` is idempotent: registering twice does not double checkpoints."""
    install(app)
    fill(app, EVERY)
    with app.extensions["fw"].sessions() as db:
        assert len(load_checkpoints(db)) == 1
