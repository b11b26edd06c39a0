"""``verify`` against every kind of tampering with the stored log (R27, R28).

Someone with write access to the database edits, deletes, inserts,
reorders or cuts entries, or forges checkpoints; each test names the kind
and checks the first bad sequence number reported. The log has 17 entries,
checkpoints at 5, 10 and 15 in the database, and its head (17) anchored in
the data directory, outside the database.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from flask import Flask
from securesystemslib.signer import CryptoSigner, Key
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tests.update_server.audit_events import append_events
from update_server.audit import Event
from update_server.audit.anchor import anchor_file, read_anchor
from update_server.audit.chain import entry_hash, stored_fields
from update_server.audit.checkpoint import (
    AuditReport,
    SignedCheckpoint,
    sign_head,
    verify_database,
)
from update_server.audit.public_key import audit_public_key
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.models import AuditCheckpoint, AuditEntry

EVERY, ENTRIES = 5, 17


@pytest.fixture
def config(config: ServerConfig) -> ServerConfig:
    return config.with_changes(audit_checkpoint_every=EVERY)


def _event(number: int, now: datetime) -> Event:
    return Event(
        time=now,
        actor=f"user{number % 3}",
        role="release_engineer",
        action="release.upload",
        object=f"line-a/fw-{number}.bin",
        outcome="success",
        source="192.0.2.10",
    )


@pytest.fixture
def log(app: Flask) -> Flask:
    append_events(app, range(1, ENTRIES + 1), _event)
    return app


def verify(app: Flask, config: ServerConfig) -> AuditReport:
    anchor = read_anchor(anchor_file(config.data_dir))
    with app.extensions["fw"].sessions() as db:
        return verify_database(db, audit_public_key(config), anchor=anchor, every=EVERY)


def sql(app: Flask, *statements: str) -> None:
    with app.extensions["fw"].engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def entry(db: Session, seq: int) -> AuditEntry:
    return db.scalars(select(AuditEntry).where(AuditEntry.seq == seq)).one()


def rechain(db: Session, start: int) -> None:
    """What a careful attacker does next: recompute every hash from ``start`` on."""
    prev = entry(db, start - 1).hash
    for row in db.scalars(select(AuditEntry).where(AuditEntry.seq >= start).order_by("seq")):
        row.prev_hash = prev
        row.hash = entry_hash(seq=row.seq, prev_hash=prev, time=row.time, fields=stored_fields(row))
        prev = row.hash
    db.flush()


def replace_checkpoint(app: Flask, seq: int, forged: SignedCheckpoint) -> None:
    with transaction(app.extensions["fw"].sessions) as db:
        db.execute(
            update(AuditCheckpoint)
            .where(AuditCheckpoint.seq == seq)
            .values(head_hash=forged.head_hash, keyid=forged.keyid, signature=forged.signature)
        )


def test_intact_log_verifies(log: Flask, config: ServerConfig) -> None:
    report = verify(log, config)
    assert report.ok, report.reason
    assert report.head_seq == ENTRIES
    assert report.checkpoint is not None
    assert report.checkpoint.seq == 15
    assert report.anchor is not None
    assert report.anchor.seq == ENTRIES
    assert report.warnings == ()


def test_edited_entry_is_named(log: Flask, config: ServerConfig) -> None:
    sql(log, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 7")
    report = verify(log, config)
    assert (report.first_bad, report.head_seq) == (7, 6)
    assert "content altered" in report.reason


def test_deleted_entry_is_named(log: Flask, config: ServerConfig) -> None:
    sql(log, "DELETE FROM audit_log WHERE seq = 7")
    report = verify(log, config)
    assert report.first_bad == 7
    assert "expected entry 7 but found entry 8" in report.reason


def test_deleted_entry_with_renumbered_successors_is_named(
    log: Flask, config: ServerConfig
) -> None:
    sql(
        log,
        "DELETE FROM audit_log WHERE seq = 7",
        "UPDATE audit_log SET seq = -seq WHERE seq > 7",
        "UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0",
    )
    report = verify(log, config)
    assert report.first_bad == 7
    assert "does not follow entry 6" in report.reason


def test_inserted_entry_is_named(log: Flask, config: ServerConfig) -> None:
    """A well-formed forged entry at 7, later entries shifted up to make room."""
    sql(
        log,
        "UPDATE audit_log SET seq = -seq WHERE seq >= 7",
        "UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0",
    )
    with transaction(log.extensions["fw"].sessions) as db:
        before, after = entry(db, 6), entry(db, 8)
        fields = {**stored_fields(after), "actor": "mallory", "action": "user.change"}
        forged_hash = entry_hash(seq=7, prev_hash=before.hash, time=after.time, fields=fields)
        db.add(
            AuditEntry(seq=7, time=after.time, prev_hash=before.hash, hash=forged_hash, **fields)
        )
    report = verify(log, config)
    assert (report.first_bad, report.head_seq) == (7, 6)
    assert "inserted" in report.reason


def test_reordered_entries_are_named(log: Flask, config: ServerConfig) -> None:
    sql(
        log,
        "UPDATE audit_log SET seq = -1 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = 8",
        "UPDATE audit_log SET seq = 8 WHERE seq = -1",
    )
    report = verify(log, config)
    assert report.first_bad == 7


def test_truncated_tail_beyond_last_checkpoint_is_named(log: Flask, config: ServerConfig) -> None:
    """Cutting entries 13 to 17 removes the head signed at 15."""
    sql(log, "DELETE FROM audit_log WHERE seq >= 13")
    report = verify(log, config)
    assert (report.first_bad, report.head_seq) == (13, 12)
    assert "truncated" in report.reason
    assert "checkpoint at entry 15" in report.reason


def test_rewritten_chain_with_recomputed_hashes_is_caught_by_the_checkpoint(
    log: Flask, config: ServerConfig
) -> None:
    """The chain is internally valid again; the signed head at 10 no longer matches."""
    with transaction(log.extensions["fw"].sessions) as db:
        entry(db, 7).actor = "mallory"
        rechain(db, 7)
    report = verify(log, config)
    assert report.first_bad == 6  # entries 6..10 lie between the good head 5 and the bad one
    assert "rewritten" in report.reason
    assert "entry 10" in report.reason


def test_forged_checkpoint_signature_is_named(log: Flask, config: ServerConfig) -> None:
    with log.extensions["fw"].sessions() as db:
        row = db.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq == 10)).one()
        genuine = SignedCheckpoint.from_row(row)
    flipped = ("0" if genuine.signature[0] != "0" else "1") + genuine.signature[1:]
    replace_checkpoint(log, 10, dataclasses.replace(genuine, signature=flipped))
    report = verify(log, config)
    assert report.first_bad == 10
    assert "does not verify with the audit key" in report.reason


def test_rewritten_chain_with_forged_checkpoints_is_named(log: Flask, config: ServerConfig) -> None:
    """Recomputed chain, and the checkpoints re-signed by a key that is not the audit key."""
    with transaction(log.extensions["fw"].sessions) as db:
        entry(db, 7).actor = "mallory"
        rechain(db, 7)
        heads = {seq: entry(db, seq) for seq in (10, 15)}
    foreign = CryptoSigner.generate_ed25519()
    for seq, head in heads.items():
        forged = sign_head(foreign, seq=seq, head_hash=head.hash, now=head.time)
        replace_checkpoint(log, seq, forged)
    report = verify(log, config)
    assert report.first_bad == 10
    assert "not by the audit key" in report.reason


def test_checkpoint_claiming_the_audit_keyid_but_signed_by_another_key(
    log: Flask, config: ServerConfig
) -> None:
    key: Key = audit_public_key(config)
    foreign = CryptoSigner.generate_ed25519()
    with log.extensions["fw"].sessions() as db:
        head = entry(db, 10)
        forged = sign_head(foreign, seq=10, head_hash=head.hash, now=head.time)
    forged_as_audit = SignedCheckpoint(
        seq=10, head_hash=head.hash, time=head.time, keyid=key.keyid, signature=forged.signature
    )
    replace_checkpoint(log, 10, forged_as_audit)
    report = verify(log, config)
    assert report.first_bad == 10
    assert "does not verify with the audit key" in report.reason


def test_deleted_checkpoints_are_flagged(log: Flask, config: ServerConfig) -> None:
    """The anchored head still covers the log; the missing checkpoints are named."""
    sql(log, "DELETE FROM audit_checkpoints WHERE seq >= 10")
    report = verify(log, config)
    assert report.ok
    assert report.checkpoint is not None
    assert report.checkpoint.seq == 5
    assert "entries 6 to 17" in report.warnings[0]
    assert "checkpoints were deleted" in report.warnings[0]


@pytest.mark.parametrize(
    ("cut_from", "with_checkpoints"),
    [(17, False), (16, False), (11, True)],
    ids=["newest-entry", "all-after-the-last-checkpoint", "tail-and-its-checkpoints"],
)
def test_cut_tail_is_named_against_the_anchored_head_r27_r28(
    log: Flask, config: ServerConfig, cut_from: int, with_checkpoints: bool
) -> None:
    """R27/R28: deleting the newest entries (and their checkpoints) is a cut tail.

    Before the anchor, a log cut after its last stored checkpoint, or cut
    together with the checkpoints in the cut, was a shorter log that
    verified as intact.
    """
    tables = ("audit_log", "audit_checkpoints") if with_checkpoints else ("audit_log",)
    sql(log, *(f"DELETE FROM {table} WHERE seq >= {cut_from:d}" for table in tables))  # noqa: S608
    report = verify(log, config)
    assert (report.first_bad, report.head_seq) == (cut_from, cut_from - 1)
    assert "log truncated" in report.reason
    assert f"the head anchored outside the database at entry {ENTRIES}" in report.reason
    missing = "entry 17 is missing" if cut_from == 17 else f"entries {cut_from} to 17 are missing"
    assert missing in report.reason


def test_a_cut_tail_stays_named_after_the_server_appends_again_r27_r28(
    log: Flask, config: ServerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's next entries must not cover a cut: the anchor never moves past it.

    Entries 16 and 17 are deleted, then the server goes on and writes new
    entries 16 to 19 on top of entry 15. Were the anchor to follow the new
    head, the log would verify again and the deletion would be lost.
    """
    sql(log, "DELETE FROM audit_log WHERE seq >= 16")
    services = log.extensions["fw"]
    with caplog.at_level("CRITICAL", logger="update_server.audit.anchor"):
        append_events(log, range(116, 120), _event)
    assert "no longer holds the head anchored at entry 17" in caplog.text
    anchored = read_anchor(anchor_file(config.data_dir))
    assert anchored is not None
    assert anchored.seq == ENTRIES
    report = verify(log, config)
    assert report.first_bad == 16
    assert (
        "rewritten: the chain no longer holds the head anchored outside the database at entry 17"
        in report.reason
    )
    with services.sessions() as db:
        assert entry(db, 19).seq == 19


def test_a_rewritten_chain_after_the_last_checkpoint_is_caught_by_the_anchor(
    log: Flask, config: ServerConfig
) -> None:
    """Entry 16 edited and 16 to 17 re-hashed: no stored checkpoint covers them; the anchor does."""
    with transaction(log.extensions["fw"].sessions) as db:
        entry(db, 16).actor = "mallory"
        rechain(db, 16)
    report = verify(log, config)
    assert report.first_bad == 16
    assert "anchored outside the database at entry 17" in report.reason


def test_a_missing_anchor_is_not_intact(log: Flask, config: ServerConfig) -> None:
    """Without its anchor nothing shows a cut after entry 15: verify does not say intact."""
    sql(log, "DELETE FROM audit_log WHERE seq >= 16")
    anchor_file(config.data_dir).unlink()
    report = verify(log, config)
    assert not report.ok
    assert report.first_bad == 16
    assert "no head is anchored outside the database" in report.reason
