"""R27, R28, R38: a device's report must continue the event-log chain the server anchored.

The entries are written by the device's own log (``client.events.EventLog``)
in a temporary directory, so the server's check is tested against exactly
what a device sends; each attack edits them the way an attacker on the
device would.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from client import events as client_events
from client.events import EventLog, EventType
from fwcommon.hashchain import Link, compact_json, entry_digest
from update_server.device_log import (
    EVENT_BODY,
    MAX_ENTRIES,
    MESSAGE,
    Continues,
    Refusal,
    Refused,
    ReportedStatus,
    answer,
    check_report,
    read_status,
)

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def device_log(path: Path, count: int, **limits: int) -> list[dict[str, Any]]:
    """``count`` entries appended to a device's event log at ``path``; the retained ones."""
    log = EventLog(path / "events.log", **limits)
    for n in range(count):
        log.append(EventType.NO_UPDATE, f"poll {n}", now=NOW + timedelta(hours=n), poll=n)
    return list(log.entries())


def head_of(entries: list[dict[str, Any]]) -> Link:
    return Link(entries[-1]["seq"], entries[-1]["hash"])


def rehash(entries: list[dict[str, Any]], *, prev: str) -> list[dict[str, Any]]:
    """``entries`` re-chained from ``prev``, as an attacker who rewrites a device's log does."""
    out = []
    for entry in entries:
        body = {key: entry[key] for key in EVENT_BODY}
        digest = entry_digest(seq=entry["seq"], prev=prev, body=body, canonical=compact_json)
        out.append({**entry, "prev": prev, "hash": digest})
        prev = digest
    return out


def test_the_event_body_is_what_the_device_hashes() -> None:
    assert EVENT_BODY == client_events._BODY


def test_a_first_report_anchors_the_chain_where_it_starts(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 5)
    decision = check_report(entries, head=None)
    assert decision == Continues(head_of(entries), tuple(entries), anchored_from=1)


def test_a_report_that_continues_the_accepted_head_is_accepted(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 8)
    decision = check_report(entries[5:], head=head_of(entries[:5]))
    assert isinstance(decision, Continues)
    assert decision.head == head_of(entries)
    assert [e["seq"] for e in decision.new] == [6, 7, 8]
    assert decision.anchored_from is None


def test_a_first_report_after_older_entries_anchors_from_its_first_seq(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 60)
    decision = check_report(entries[49:], head=None)
    assert isinstance(decision, Continues)
    assert decision.anchored_from == 50
    assert decision.head == head_of(entries)


def test_gap_entries_deleted_on_the_device_are_refused(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 8)
    decision = check_report(entries[6:], head=head_of(entries[:4]))
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.GAP, 5)
    assert "entries 5 to 6 are missing" in decision.reason


def test_gap_inside_the_report_is_refused(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 8)
    report = entries[4:6] + entries[7:]
    decision = check_report(report, head=head_of(entries[:4]))
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.GAP, 7)


def test_fork_a_rewritten_history_after_the_head_is_refused(tmp_path: Path) -> None:
    """The device's entries after the head were replaced and re-hashed from another start."""
    entries = device_log(tmp_path, 8)
    forged = rehash(entries[5:], prev="f" * 64)
    decision = check_report(forged, head=head_of(entries[:5]))
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.FORK, 6)


def test_fork_an_accepted_entry_rewritten_and_rehashed_is_refused(tmp_path: Path) -> None:
    """Entry 3 edited on the device, everything after it re-hashed: the head no longer matches."""
    entries = device_log(tmp_path, 8)
    head = head_of(entries[:5])
    edited = copy.deepcopy(entries)
    edited[2]["message"] = "nothing happened here"
    forged = edited[:2] + rehash(edited[2:], prev=edited[1]["hash"])
    decision = check_report(forged, head=head)
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.FORK, 5)


def test_fork_inside_the_report_is_refused(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 8)
    forged = entries[:6] + rehash(entries[6:], prev="e" * 64)
    decision = check_report(forged, head=None)
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.FORK, 7)


def test_rewrite_an_entry_edited_after_the_fact_is_refused(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 8)
    edited = copy.deepcopy(entries[5:])
    edited[1]["type"] = EventType.UPDATED.value
    decision = check_report(edited, head=head_of(entries[:5]))
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.REWRITE, 7)
    assert "altered" in decision.reason


def test_a_rotated_log_still_continues(tmp_path: Path) -> None:
    """D8: the entries after a rotation link to the ones before it."""
    entries = device_log(tmp_path, 30, max_bytes=2000, archives=2)
    assert any(e["type"] == EventType.LOG_ROTATED for e in entries)
    assert entries[0]["seq"] > 1, "the oldest archives were deleted"
    first = check_report(entries[:4], head=None)
    assert isinstance(first, Continues)
    decision = check_report(entries[4:], head=first.head)
    assert isinstance(decision, Continues)
    assert decision.head == head_of(entries)


def test_overlap_with_accepted_entries_is_idempotent(tmp_path: Path) -> None:
    """D6: an acknowledgement lost on its way back; only the entries after the head are new."""
    entries = device_log(tmp_path, 8)
    head = head_of(entries[:5])
    decision = check_report(entries[2:], head=head)
    assert isinstance(decision, Continues)
    assert [e["seq"] for e in decision.new] == [6, 7, 8]
    again = check_report(entries, head=decision.head)
    assert again == Continues(decision.head)


def test_a_report_behind_the_head_brings_nothing_new(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 8)
    decision = check_report(entries[:3], head=head_of(entries))
    assert decision == Continues(head_of(entries))


def test_an_empty_report_keeps_the_head(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 2)
    assert check_report([], head=head_of(entries)) == Continues(head_of(entries))
    assert check_report([], head=None) == Continues(None)


def test_an_oversized_report_is_refused_whole(tmp_path: Path) -> None:
    """D2: the server never takes more than MAX_ENTRIES; the device sends several reports."""
    entries = device_log(tmp_path, 3)
    report = entries * (MAX_ENTRIES // 3 + 1)
    decision = check_report(report, head=None)
    assert isinstance(decision, Refused)
    assert decision.kind is Refusal.OVERSIZED
    assert "several reports" in decision.reason


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda e: e.update(seq=True), "seq True"),
        (lambda e: e.update(seq=0), "seq 0"),
        (lambda e: e.update(seq=2.0), "seq 2.0"),
        (lambda e: e.update(hash="ABC"), "hash is not"),
        (lambda e: e.update(prev=None), "prev is not"),
        (lambda e: e.update(detail="x"), "detail is not a dict"),
        (lambda e: e.update(extra=1), "keys"),
        (lambda e: e.pop("time"), "keys"),
    ],
)
def test_a_malformed_entry_is_refused(tmp_path: Path, edit: Any, says: str) -> None:
    entries = device_log(tmp_path, 3)
    edit(entries[1])
    decision = check_report(entries, head=None)
    assert isinstance(decision, Refused)
    assert decision.kind is Refusal.MALFORMED
    assert says in decision.reason


@pytest.mark.parametrize("report", [{"seq": 1}, "entries", None, [1, 2]])
def test_a_report_that_is_not_a_list_of_entries_is_malformed(report: object) -> None:
    decision = check_report(report, head=None)
    assert isinstance(decision, Refused)
    assert decision.kind is Refusal.MALFORMED


def test_a_repeated_entry_inside_the_report_is_malformed(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 4)
    decision = check_report([*entries[:3], entries[2], entries[3]], head=None)
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.MALFORMED, 3)


def status_body(**changes: Any) -> dict[str, Any]:
    """A report's status fields as ``client.report.build_report`` sends them."""
    body: dict[str, Any] = {
        "device_id": "pump-0001",
        "hardware_model": "pump-x100",
        "running_version": "1.0.0",
        "installed_version": "1.0.0",
        "slot": "b",
        "security_floor": 3,
        "mode": "normal",
        "pending": None,
        "metadata_expires": {"root": "2027-12-03T08:00:00Z", "timestamp": None},
        "last_update": {"time": NOW.isoformat(), "type": "updated", "message": "ok"},
        "damaged": {},
        "entries": [],
        "more": False,
    }
    return body | changes


def test_a_report_says_what_the_device_runs_r38() -> None:
    status = read_status(status_body())
    assert status == ReportedStatus(
        device_id="pump-0001",
        hardware_model="pump-x100",
        running_version="1.0.0",
        slot="b",
        security_floor=3,
        mode="normal",
        metadata_expires={"root": "2027-12-03T08:00:00Z", "timestamp": None},
        last_type="updated",
        last_message="ok",
        last_time=NOW.isoformat(),
    )


def test_a_device_with_damaged_records_still_reports_what_it_can() -> None:
    body = status_body(running_version=None, slot=None, security_floor=None, mode=None)
    status = read_status(body | {"last_update": None})
    assert isinstance(status, ReportedStatus)
    assert (status.running_version, status.last_type) == (None, None)


def test_a_long_result_message_is_cut_not_refused() -> None:
    last = {"time": NOW.isoformat(), "type": "error", "message": "x" * 5000}
    status = read_status(status_body(last_update=last))
    assert isinstance(status, ReportedStatus)
    assert status.last_message == "x" * MESSAGE


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"device_id": None}, "device_id"),
        ({"hardware_model": "m" * 65}, "hardware_model"),
        ({"slot": "c"}, "slot"),
        ({"security_floor": -1}, "security_floor"),
        ({"security_floor": True}, "security_floor"),
        ({"metadata_expires": {"bins": "x"}}, "metadata_expires"),
        ({"last_update": "updated"}, "last_update"),
        ({"last_update": {"type": "updated"}}, "message"),
    ],
)
def test_a_malformed_status_is_refused(changes: dict[str, Any], says: str) -> None:
    decision = read_status(status_body(**changes))
    assert isinstance(decision, Refused)
    assert decision.kind is Refusal.MALFORMED
    assert says in decision.reason


def test_the_answer_names_the_head_accepted_or_the_refusal(tmp_path: Path) -> None:
    entries = device_log(tmp_path, 2)
    head = head_of(entries)
    assert answer(Continues(head)) == {"acked_seq": 2, "acked_hash": head.digest}
    assert answer(Continues(None)) == {"acked_seq": 0, "acked_hash": None}
    refused = Refused(Refusal.GAP, 5, "entries 5 to 6 are missing")
    assert answer(refused) == {"refused": "gap", "seq": 5, "reason": "entries 5 to 6 are missing"}


def test_a_damaged_line_on_the_device_shows_as_a_gap(tmp_path: Path) -> None:
    """A line the device's log cannot read is skipped by its readers: the server sees a gap."""
    entries = device_log(tmp_path, 3)
    path = tmp_path / "events.log"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + b"{damaged\n" + lines[2])
    log = EventLog(path)
    log.append(EventType.NO_UPDATE, "after the damage", now=NOW)
    decision = check_report(list(log.entries()), head=head_of(entries[:1]))
    assert isinstance(decision, Refused)
    assert (decision.kind, decision.seq) == (Refusal.GAP, 2)
