"""The event log after a power loss mid-append: the device keeps logging (never bricks).

Only the last line can be torn (each append is fsynced before the next), so
the log must skip it, cut it off at the next append, say so in an event,
and keep a chain that ``fwclient log verify`` accepts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from client.events import EventLog, EventType

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    events = EventLog(tmp_path / "events.log")
    events.append(EventType.PROVISIONED, "provisioned", now=NOW)
    events.append(EventType.CHECKED, "checked", now=NOW)
    return events


def _torn(log: EventLog, tail: bytes) -> int:
    with log.path.open("ab") as handle:
        handle.write(tail)
    return len(tail)


@pytest.mark.parametrize(
    "tail",
    [b'{"detail":{},"hash":"ab', b"\x00" * 180],
    ids=["cut-mid-line", "zero-filled-by-the-file-system"],
)
def test_power_loss_mid_append_torn_line_is_cut_and_reported(log: EventLog, tail: bytes) -> None:
    dropped = _torn(log, tail)
    assert [e["type"] for e in log.entries()] == ["provisioned", "checked"]
    assert log.verify().ok

    log.append(EventType.BOOTED, "booted", now=NOW)

    types = [e["type"] for e in log.entries()]
    assert types == ["provisioned", "checked", "log_tail_repaired", "booted"]
    repaired = list(log.entries())[2]
    assert repaired["detail"] == {"bytes": dropped}
    report = log.verify()
    assert report.ok and report.entries == 4
    assert log.path.read_bytes().endswith(b"\n")


def test_power_loss_during_the_first_append_leaves_a_log_that_starts_again(
    tmp_path: Path,
) -> None:
    log = EventLog(tmp_path / "events.log")
    _torn(log, b'{"seq":1,"ty')
    log.append(EventType.PROVISIONED, "provisioned", now=NOW)
    assert [e["seq"] for e in log.entries()] == [1, 2]
    assert log.verify().ok


def test_a_whole_log_is_left_untouched_by_the_repair(log: EventLog) -> None:
    before = log.path.read_bytes()
    log.append(EventType.BOOTED, "booted", now=NOW)
    assert log.path.read_bytes().startswith(before)
    assert [e["type"] for e in log.entries()][-1] == "booted"


def test_an_altered_whole_line_is_still_reported_tampering_r27(log: EventLog) -> None:
    """The repair is for a torn tail only: an edited entry still fails verify."""
    data = log.path.read_bytes().replace(b'"checked"', b'"updated"', 1)
    log.path.write_bytes(data)
    report = log.verify()
    assert not report.ok and report.first_bad == 2


def test_a_damaged_last_line_does_not_stop_the_log_and_verify_names_it(log: EventLog) -> None:
    """A flipped bit must not make every later command fail (the device keeps working)."""
    data = log.path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    log.path.write_bytes(data[:last_start] + b"{not json at all}\n")

    log.append(EventType.BOOTED, "booted", now=NOW)

    assert [e["type"] for e in log.entries()] == ["provisioned", "log_damaged", "booted"]
    assert [e["seq"] for e in log.entries()] == [1, 3, 4], "the damaged line keeps its seq"
    report = log.verify()
    assert not report.ok and report.first_bad == 2
    assert report.reason == "line is not a log entry"
    assert log.last(EventType.BOOTED) is not None


@pytest.mark.parametrize("line", [b"5", b"[1, 2]", b'"text"', b"null"])
def test_a_damaged_line_that_is_json_but_no_object_is_named_by_verify(
    log: EventLog, line: bytes
) -> None:
    """A flip that leaves valid JSON of another shape is reported, not a crash of verify."""
    data = log.path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    log.path.write_bytes(data[:last_start] + line + b"\n")

    report = log.verify()

    assert (report.ok, report.first_bad, report.reason) == (False, 2, "line is not a log entry")


def test_a_line_longer_than_the_tail_window_is_read_whole(log: EventLog) -> None:
    """The head is found even when the last entry is longer than the 64 KiB read from the end."""
    log.append(EventType.ERROR, "x" * (70 * 1024), now=NOW)
    log.append(EventType.BOOTED, "booted", now=NOW)
    assert log.verify().ok
    _torn(log, b'{"seq":' + b"9" * (70 * 1024))
    log.append(EventType.BOOTED, "booted again", now=NOW)
    assert [e["type"] for e in log.entries()][-2:] == ["log_tail_repaired", "booted"]
    assert log.verify().ok
