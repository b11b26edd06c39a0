"""The audit log's chain, append hooks, head anchor and checkpoints at their edges (R27, R28, R31).

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36). ``update_server.audit.store`` is driven through a session factory bound
to a sink of our own (a real SQLite file, the server's schema), and
``update_server.audit.anchor`` and ``update_server.audit.checkpoint`` read
anchor files and check the stored log directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from update_server.audit.anchor import MAX_ANCHOR_BYTES, HeadAnchor, read_anchor
from update_server.audit.chain import EntryRecord, Event, parse_canonical_time, verify_chain
from update_server.audit.checkpoint import (
    SignedCheckpoint,
    cadence,
    load_checkpoints,
    sign_head,
    verify_database,
)
from update_server.audit.errors import CheckpointError
from update_server.audit.store import AuditSink, append, bind, count, iter_entries
from update_server.db import Base, make_engine
from update_server.models import AuditEntry

NOW = datetime(2030, 5, 4, 10, 0, tzinfo=UTC)


def event(number: int) -> Event:
    return Event(
        time=NOW,
        actor="alice",
        role="release_engineer",
        action="release.publish",
        object=f"line-a/fw-{number}.bin",
        outcome="success",
        source="192.0.2.7",
        detail={"n": number},
    )


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}", create=True)
    Base.metadata.create_all(engine)
    return sessionmaker(engine)


def test_r31_committed_entries_reach_the_sink_in_order_only_after_the_commit(
    sessions: sessionmaker[Session],
) -> None:
    """R31: syslog (the ``committed`` hook) hears of an entry once it is committed, never before."""
    delivered: list[Sequence[EntryRecord]] = []
    bind(sessions, AuditSink(committed=delivered.append))
    with sessions() as db:
        append(db, event(1))
        append(db, event(2))
        assert delivered == []
        db.commit()
        assert count(db) == 2
    assert [[record.seq for record in batch] for batch in delivered] == [[1, 2]]
    assert delivered[0][1].prev_hash == delivered[0][0].hash


def test_r31_a_rolled_back_entry_is_never_delivered(sessions: sessionmaker[Session]) -> None:
    delivered: list[Sequence[EntryRecord]] = []
    bind(sessions, AuditSink(committed=delivered.append))
    with sessions() as db:
        append(db, event(1))
        db.rollback()
        assert count(db) == 0
    assert delivered == []


def test_r28_an_anchor_file_over_its_limit_is_damaged_not_read(tmp_path: Path) -> None:
    path = tmp_path / "audit-head.json"
    path.write_bytes(b" " * (MAX_ANCHOR_BYTES + 1))
    with pytest.raises(CheckpointError, match="damaged: over"):
        read_anchor(path)


def test_r28_a_damaged_anchor_refuses_the_append_and_says_so(
    tmp_path: Path, sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """R27: with the anchor unreadable, nothing proves the log was not cut: hold nothing."""
    path = tmp_path / "audit-head.json"
    path.write_bytes(b"{not json")
    anchor = HeadAnchor(path, CryptoSigner.generate_ed25519)
    with caplog.at_level(logging.CRITICAL), sessions() as db:
        assert anchor.holds(db, (0, "0" * 64)) is False
    assert "audit head not anchored" in caplog.text
    assert path.read_bytes() == b"{not json"  # left for the operator to look at


# --- checkpoints (update_server.audit.checkpoint) -------------------------------------


def anchored_at(db: Session, signer: CryptoSigner, seq: int) -> SignedCheckpoint:
    head_hash = db.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq))
    assert head_hash is not None
    return sign_head(signer, seq=seq, head_hash=head_hash, now=NOW)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"server": "ab" * 32}, "server is the keyid"),
        ({"seq": 0}, "seq is a positive integer"),
        ({"seq": True}, "seq is a positive integer"),
        ({"signature": 7}, "are strings"),
    ],
    ids=["server-not-its-key", "seq-zero", "seq-boolean", "signature-not-text"],
)
def test_r28_an_anchor_file_that_is_not_a_checkpoint_is_damaged(
    tmp_path: Path, change: dict[str, object], why: str
) -> None:
    good = sign_head(CryptoSigner.generate_ed25519(), seq=3, head_hash="ab" * 32, now=NOW)
    path = tmp_path / "audit-head.json"
    path.write_text(json.dumps({**good.to_json(), **change}))
    with pytest.raises(CheckpointError, match=why):
        read_anchor(path)


def test_r27_a_key_that_cannot_sign_a_checkpoint_does_not_refuse_the_action(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """The failure is logged; no checkpoint is stored; the entry stands."""

    def locked_token() -> CryptoSigner:
        raise RuntimeError("token locked")

    bind(sessions, AuditSink(appended=cadence(1, locked_token)))
    with caplog.at_level(logging.ERROR), sessions() as db:
        append(db, event(1))
        db.commit()
        assert count(db) == 1
        assert load_checkpoints(db) == []
    assert "audit checkpoint at entry 1 not signed: token locked" in caplog.text


@pytest.mark.parametrize(
    ("anchored", "span"), [(1, "entries 2 to 3"), (2, "entry 3")], ids=["two", "one"]
)
def test_r28_entries_after_the_anchored_head_are_reported(
    sessions: sessionmaker[Session], anchored: int, span: str
) -> None:
    """A commit under way or a failed anchor: verify says which entries a cut would hide."""
    signer = CryptoSigner.generate_ed25519()
    with sessions() as db:
        for number in (1, 2, 3):
            append(db, event(number))
        db.commit()
        report = verify_database(db, signer.public_key, anchor=anchored_at(db, signer, anchored))
    assert report.ok
    assert any(w.startswith(f"{span} not anchored outside the database") for w in report.warnings)


# --- the chain (update_server.audit.chain) -----------------------------------------------


def test_r28_an_audit_time_in_another_spelling_is_refused() -> None:
    """One moment, one spelling: the hash covers the text, so no other may pass as it."""
    assert parse_canonical_time("2030-05-04T10:00:00.500000Z") == NOW.replace(microsecond=500000)
    with pytest.raises(ValueError, match="not a canonical audit time"):
        parse_canonical_time("2030-05-04T10:00:00.5Z")


def test_r28_a_chain_checked_against_a_known_head_holds_it_or_names_the_cut(
    sessions: sessionmaker[Session],
) -> None:
    """The head of a genuine checkpoint must still be in the chain, with the same hash."""
    with sessions() as db:
        for number in (1, 2, 3):
            append(db, event(number))
        db.commit()
        second = db.scalar(select(AuditEntry.hash).where(AuditEntry.seq == 2))
        assert second is not None
        assert verify_chain(iter_entries(db), checkpoint=(2, second)).ok
        rewritten = verify_chain(iter_entries(db), checkpoint=(2, "ab" * 32))
        assert rewritten.first_bad == 1 and "rewritten: entry 2" in (rewritten.reason or "")
        cut = verify_chain(iter_entries(db), checkpoint=(5, "ab" * 32))
    assert cut.first_bad == 4
    assert "log truncated: it ends at 3, the checkpoint covers 5" in (cut.reason or "")
