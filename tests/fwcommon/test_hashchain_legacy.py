"""Logs written before the shared chain core still verify, and the core writes the same bytes.

``legacy/`` holds small logs written by the code before ``fwcommon.hashchain``
(commit 67ad07e): an audit log as exported, a device's event log with two
rotations, a token's usage log and its recorded head. Their text holds
non-ASCII and control characters, where the canonical forms differ (the
usage log's TUF canonical JSON keeps UTF-8, the others escape it). A
changed digest would make every device's and server's history unverifiable
(R28): these tests fail first.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from client.events import EventLog, EventType
from hsm_mock.usage_log import Event as UsageEvent
from hsm_mock.usage_log import LogHead, Record, next_entry
from hsm_mock.usage_log import verify_chain as verify_usage
from tests.clocks import RUN_START
from update_server.audit import Event, append
from update_server.audit.chain import EntryRecord, verify_chain
from update_server.audit.export import entry_from_json
from update_server.audit.store import iter_entries
from update_server.audit.vocabulary import FIELD_NAMES
from update_server.models import AuditEntry

LEGACY = Path(__file__).parent / "legacy"


def _audit_records() -> list[EntryRecord]:
    lines = (LEGACY / "audit_log.jsonl").read_bytes().splitlines()
    return [entry_from_json(json.loads(line)) for line in lines]


def test_an_audit_log_written_before_the_core_still_verifies() -> None:
    records = _audit_records()
    report = verify_chain(records)
    assert report.ok, report.reason
    assert (report.head_seq, report.head_hash) == (3, records[-1].hash)


def test_appending_the_same_events_today_gives_the_same_audit_hashes() -> None:
    engine = create_engine("sqlite://")
    AuditEntry.__table__.create(engine)
    records = _audit_records()
    with Session(engine) as session:
        for record in records:
            texts = {name: getattr(record, name) for name in FIELD_NAMES if name != "detail"}
            append(session, Event(time=record.time, detail=json.loads(record.detail), **texts))
        session.commit()
        stored = [(entry.seq, entry.hash) for entry in iter_entries(session)]
    engine.dispose()
    assert stored == [(record.seq, record.hash) for record in records]


def test_an_event_log_written_before_the_core_still_verifies(tmp_path: Path) -> None:
    shutil.copytree(LEGACY / "events", tmp_path / "events")
    log = EventLog(tmp_path / "events" / "events.log", max_bytes=700, archives=2)
    report = log.verify()
    assert (report.ok, report.entries, report.first_seq) == (True, 6, 1), report.reason


def test_an_event_log_written_before_the_core_goes_on_chaining(tmp_path: Path) -> None:
    shutil.copytree(LEGACY / "events", tmp_path / "events")
    log = EventLog(tmp_path / "events" / "events.log", max_bytes=100_000, archives=2)
    last = json.loads((tmp_path / "events" / "events.log").read_bytes().splitlines()[-1])
    entry = log.append(EventType.NO_UPDATE, "no update", now=RUN_START)
    assert (entry["seq"], entry["prev"]) == (7, last["hash"])
    assert log.verify().ok


def test_the_event_log_writes_the_lines_it_wrote_before(tmp_path: Path) -> None:
    legacy = (LEGACY / "events" / "events.2.log").read_bytes().splitlines()
    first = json.loads(legacy[0])
    log = EventLog(tmp_path / "events.log")
    written = log.append(
        EventType.PROVISIONED,
        first["message"],
        now=datetime.fromisoformat(first["time"]),
        **first["detail"],
    )
    assert written == first
    assert (tmp_path / "events.log").read_bytes().splitlines() == legacy[:1]


def _usage() -> tuple[list[bytes], LogHead]:
    seq, digest = (LEGACY / "usage.head").read_text().split()
    return (LEGACY / "usage.log").read_bytes().splitlines(keepends=True), LogHead(int(seq), digest)


def test_a_usage_log_written_before_the_core_still_verifies() -> None:
    lines, head = _usage()
    assert verify_usage(lines, head) == head


def test_the_usage_log_writes_the_lines_it_wrote_before() -> None:
    lines, _ = _usage()
    head = LogHead(0, "0" * 64)
    for line in lines:
        entry = json.loads(line)
        record = Record(
            UsageEvent(entry["event"]),
            label=entry["label"],
            keyid=entry["keyid"],
            purpose=entry["purpose"],
            payload_type=entry["payload_type"],
            payload_sha256=entry["payload_sha256"],
        )
        time = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        written, head = next_entry(head, record, now=time)
        assert written == line
