"""The event log's bounded retention: a device's storage is never filled by its own log.

``events.log`` is archived (``events.<seq>.log``) when it would pass its bound,
the oldest archives go, and the chain runs on through the retained files, so
``fwclient log verify`` still finds an edit, a gap or a deleted archive, and
says where the retained history starts. Every deletion a rotation makes is
named first by a ``log_rotated`` entry, so an archive deleted by other means
is reported. A power loss at any step of a rotation leaves a log the next
append continues and ``log verify`` accepts, and deletes nothing unrecorded.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from client import events
from client.events import ARCHIVES, MAX_BYTES, EventLog, EventType
from client.state import StateDir
from client.update import explain
from tests.client.helpers_state import MODEL, SignedLine, provision
from tests.client.test_cli import fwclient
from tests.client.test_power import PowerCut, fuse

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOURS_IN_A_YEAR = 365 * 24


def poll(log: EventLog, hour: int = 0) -> dict[str, Any]:
    """What ``fwclient run`` logs on an idle poll."""
    message = explain(EventType.NO_UPDATE, f"{MODEL} runs 1.2.3; 4 signed release(s) looked at")
    return log.append(EventType.NO_UPDATE, message, now=NOW + timedelta(hours=hour), considered=4)


def seqs(log: EventLog) -> list[int]:
    return [int(entry["seq"]) for entry in log.entries()]


def last_entry(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_bytes().splitlines()[-1]))


def on_disk(log: EventLog) -> int:
    return sum(path.stat().st_size for path in [*log.archives(), log.path])


def names(log: EventLog) -> set[str]:
    return {path.name for path in log.archives()}


def recorded(log: EventLog, key: str) -> set[str]:
    """What the retained ``log_rotated`` entries name: the ``archive`` made, or ``deleted``."""
    found: set[str] = set()
    for entry in log.entries():
        if entry["type"] == EventType.LOG_ROTATED:
            named = entry["detail"][key]
            found.update([named] if isinstance(named, str) else named)
    return found


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """A year of appends in a test: durability is not what these tests are about."""
    monkeypatch.setattr(os, "fsync", lambda _fd: None)


@pytest.fixture
def small(tmp_path: Path) -> EventLog:
    """A log whose files hold three entries: three idle polls, then a rotation record and two."""
    return EventLog(tmp_path / "events.log", max_bytes=3 * 400, archives=2)


# -- the bound ------------------------------------------------------------------------


@pytest.mark.usefixtures("no_fsync")
def test_log_is_bounded_on_a_device_polling_for_a_year(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.log", max_bytes=32 * 1024, archives=4)
    last = poll(log)
    line = log.path.stat().st_size + 4  # seq grows to four digits
    for hour in range(1, HOURS_IN_A_YEAR):
        last = poll(log, hour)

    assert on_disk(log) <= (4 + 1) * 32 * 1024
    assert len(log.archives()) == 4
    report = log.verify()
    assert report.ok and report.last_seq == last["seq"]
    assert report.first_seq > 1 and report.entries >= 4 * (32 * 1024 // line)


def test_the_default_bound_keeps_more_than_a_year_of_hourly_polls(tmp_path: Path) -> None:
    """Right after a rotation, the archives alone hold more than a year of idle polls."""
    poll(EventLog(tmp_path / "events.log"))
    line = (tmp_path / "events.log").stat().st_size + 4  # seq grows to five digits
    assert ARCHIVES * MAX_BYTES // line > HOURS_IN_A_YEAR
    assert (ARCHIVES + 1) * MAX_BYTES <= 5 * 1024 * 1024


def test_a_line_longer_than_the_bound_is_still_written(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.log", max_bytes=10, archives=1)
    poll(log)
    poll(log)
    assert seqs(log) == [1, 2, 3] and len(log.archives()) == 1
    assert log.verify().ok


# -- one chain through the files --------------------------------------------------------


def test_chain_continues_across_a_rotation(small: EventLog) -> None:
    for hour in range(4):
        poll(small, hour)

    [archive] = small.archives()
    assert archive.name == "events.3.log"
    first = json.loads(small.path.read_bytes().splitlines()[0])
    assert (first["seq"], first["type"]) == (4, "log_rotated")
    assert first["detail"] == {"archive": "events.3.log", "deleted": []}
    assert first["prev"] == last_entry(archive)["hash"]
    assert seqs(small) == [1, 2, 3, 4, 5]
    report = small.verify()
    assert (report.ok, report.entries, report.first_seq) == (True, 5, 1)


def test_the_oldest_archive_goes_and_verify_says_where_history_starts(small: EventLog) -> None:
    for hour in range(10):
        poll(small, hour)

    assert [path.name for path in small.archives()] == ["events.9.log", "events.12.log"]
    assert seqs(small) == list(range(7, 15))
    report = small.verify()
    assert (report.ok, report.entries, report.first_seq, report.last_seq) == (True, 8, 7, 14)


def test_every_rotation_deletion_is_recorded_in_the_chain(small: EventLog) -> None:
    """The new file's first entry names the archive made and every one deleted, oldest first."""
    deletions = 0
    for hour in range(20):
        before = [path.name for path in small.archives()]
        poll(small, hour)
        after = names(small)
        if set(before) != after:
            [made] = after - set(before)
            gone = [name for name in before if name not in after]
            first = json.loads(small.path.read_bytes().splitlines()[0])
            assert first["type"] == "log_rotated", hour
            assert first["detail"] == {"archive": made, "deleted": gone}, hour
            deletions += len(gone)
        assert small.verify().ok, hour

    assert deletions > 3
    assert small.archives()[0].name in recorded(small, "archive")


def test_last_update_result_is_found_in_the_newest_archive(small: EventLog) -> None:
    """``status`` shows the last update result even when events.log starts after it."""
    small.append(EventType.UPDATED, "updated to 1.2.3", now=NOW)
    for _ in range(5):
        small.append(EventType.BOOTED, "booted", now=NOW)

    assert small.archives() and '"updated"' not in small.path.read_text()
    found = small.last(EventType.UPDATED, EventType.NO_UPDATE)
    assert found is not None and found["seq"] == 1
    assert small.last(EventType.ROLLED_BACK) is None


def test_a_rotation_never_replaces_an_archive(small: EventLog) -> None:
    """A file with no entry of its own would take its archive's name: it is not rotated."""
    for hour in range(4):
        poll(small, hour)
    small.path.write_bytes(b"\n" * small.max_bytes)
    archived = small.archives()[0].read_bytes()

    poll(small, 4)
    poll(small, 5)

    assert small.archives()[0].read_bytes() == archived
    assert seqs(small) == [1, 2, 3, 4, 5, 6] and small.verify().ok


# -- tampering ----------------------------------------------------------------------------


def test_tampering_inside_an_archive_is_reported(small: EventLog) -> None:
    for hour in range(10):
        poll(small, hour)
    oldest = small.archives()[0]
    oldest.write_text(oldest.read_text().replace("runs 1.2.3", "runs 9.9.9", 1))

    report = small.verify()
    assert not report.ok and (report.first_bad, report.reason) == (8, "entry altered")


def test_deleting_the_oldest_archive_by_hand_is_reported(small: EventLog) -> None:
    """No rotation recorded deleting events.9.log: history starting at 10 is a removal."""
    for hour in range(10):
        poll(small, hour)
    assert small.archives()[0].name == "events.9.log"
    small.archives()[0].unlink()

    report = small.verify()
    assert not report.ok and (report.first_bad, report.first_seq) == (9, 10)
    assert report.reason == "entries before seq 10 were removed without a recorded rotation"


def test_a_hand_deletion_is_still_reported_after_the_next_rotation(small: EventLog) -> None:
    """The next rotation records only what it deletes itself, not what was already gone."""
    for hour in range(10):
        poll(small, hour)
    small.archives()[0].unlink()
    poll(small, 10)
    poll(small, 11)  # this one rotates, with no archive over the count

    assert names(small) == {"events.12.log", "events.15.log"}
    report = small.verify()
    assert not report.ok and (report.first_bad, report.first_seq) == (9, 10)


def test_a_deleted_newest_archive_is_a_gap(small: EventLog) -> None:
    for hour in range(10):
        poll(small, hour)
    small.archives()[-1].unlink()

    report = small.verify()
    assert not report.ok and report.first_bad == 10
    assert report.reason == "entry missing or out of order"


def test_deleting_every_archive_is_reported(small: EventLog) -> None:
    for hour in range(10):
        poll(small, hour)
    for archive in small.archives():
        archive.unlink()

    report = small.verify()
    assert not report.ok and report.first_bad == 1


# -- power loss ---------------------------------------------------------------------------


def rotating(directory: Path) -> EventLog:
    """Four polls in a log whose every append rotates (two archives; a file: record, entry)."""
    log = EventLog(directory / "events.log", max_bytes=1, archives=2)
    for hour in range(4):
        poll(log, hour)
    return log


def test_power_loss_at_each_step_of_a_rotation_leaves_a_log_that_verifies(tmp_path: Path) -> None:
    """Cut before each durable step (and every later one fails), then reboot and log on.

    Whatever the cut, the log verifies, later rotations bring the archives
    back to the limit, and every archive gone since is named by a retained
    ``log_rotated`` entry: a cut before the record deletes nothing.
    """
    log = rotating(tmp_path / "count")
    with fuse(None) as counter:
        log.append(EventType.BOOTED, "booted", now=NOW)
    # the rename, its fsync, the record's, its new name's, the delete, its fsync, the line's
    assert counter.steps == 7

    for k in range(1, counter.steps + 1):
        log = rotating(tmp_path / f"cut-{k}")
        seen = names(log)
        with pytest.raises(PowerCut), fuse(k):
            log.append(EventType.BOOTED, "booted", now=NOW)
        assert seen - names(log) <= recorded(log, "deleted"), k

        last = log.append(EventType.CHECKED, "checked", now=NOW)
        seen |= names(log)
        report = log.verify()
        assert report.ok, (k, report)
        types = [entry["type"] for entry in log.entries()]
        assert types.count("booted") <= 1, k  # the cut append is there whole or not at all
        assert seqs(log)[-1] == last["seq"] and report.entries >= 3, k  # only rotations drop
        log.append(EventType.CHECKED, "checked", now=NOW)  # an archive left over goes now
        seen |= names(log)
        assert len(log.archives()) == 2 and log.verify().ok, k
        assert seen - names(log) <= recorded(log, "deleted"), k


def test_no_archive_is_deleted_before_a_durable_entry_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record before delete: the ``log_rotated`` line and its file's name are fsynced first."""
    log = rotating(tmp_path)
    trace: list[tuple[str, str]] = []
    fsync, replace, unlink = os.fsync, os.replace, os.unlink

    def synced(fd: int) -> None:
        inode = os.fstat(fd).st_ino
        trace.append(("fsync", "directory" if inode == tmp_path.stat().st_ino else "events.log"))
        fsync(fd)

    def renamed(source: Path, target: Path) -> None:
        trace.append(("rename", Path(target).name))
        replace(source, target)

    def deleted(path: Path) -> None:
        assert Path(path).name in recorded(log, "deleted")  # already on disk, before it goes
        trace.append(("delete", Path(path).name))
        unlink(path)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", renamed)
    monkeypatch.setattr(os, "unlink", deleted)
    log.append(EventType.BOOTED, "booted", now=NOW)

    assert trace == [
        ("rename", "events.7.log"),
        ("fsync", "directory"),
        ("fsync", "events.log"),  # the log_rotated line naming events.3.log
        ("fsync", "directory"),  # the new events.log's name
        ("delete", "events.3.log"),
        ("fsync", "directory"),
        ("fsync", "events.log"),  # the booted line
    ]


def test_power_loss_in_the_first_line_after_a_rotation(small: EventLog) -> None:
    for hour in range(4):
        poll(small, hour)
    small.path.write_bytes(b'{"detail":{},"hash":"ab')  # the first line after it, cut short

    assert seqs(small) == [1, 2, 3] and small.verify().ok
    small.append(EventType.BOOTED, "booted", now=NOW)

    assert [e["type"] for e in small.entries()][-2:] == ["log_tail_repaired", "booted"]
    assert seqs(small) == [1, 2, 3, 4, 5] and small.verify().ok


def test_log_verify_while_the_agent_rotates_reports_no_gap(
    small: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``log verify`` takes no lock: a rotation during its read is read again, not a gap."""
    for hour in range(7):
        poll(small, hour)
    agent = EventLog(small.path, max_bytes=small.max_bytes, archives=small.keep)
    read = events._read
    rotations = [1]

    def read_while_rotating(path: Path) -> Any:
        if path == small.path and rotations:
            rotations.pop()
            poll(agent, 7)  # events.log is renamed before this read opens it
        return read(path)

    monkeypatch.setattr(events, "_read", read_while_rotating)
    assert len(small.path.read_bytes().splitlines()) == 3  # the next poll rotates
    report = small.verify()
    assert report.ok and report.last_seq == 11  # the poll after its rotation record


# -- fwclient log verify ------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return provision(tmp_path / "device", SignedLine(tmp_path / "repo")).root


def test_log_verify_says_older_entries_were_rotated_out(state_dir: Path) -> None:
    log = EventLog(state_dir / "events.log", max_bytes=3 * 400, archives=2)
    for hour in range(10):
        poll(log, hour)

    result = fwclient("log", "verify", "--state", str(state_dir))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "event log verifies: 8 entries (seq 7 to 14; older entries rotated out)\n"
    )


def test_log_verify_of_a_log_never_rotated_reads_as_before(state_dir: Path) -> None:
    poll(StateDir(state_dir).events)
    result = fwclient("log", "verify", "--state", str(state_dir))
    assert result.stdout == "event log verifies: 1 entries\n"


def test_status_shows_the_last_update_result_kept_in_an_archive(state_dir: Path) -> None:
    log = EventLog(state_dir / "events.log", max_bytes=3 * 400, archives=2)
    log.append(EventType.UPDATED, "updated to 1.2.3", now=NOW)
    for _ in range(5):
        log.append(EventType.BOOTED, "booted", now=NOW)

    result = fwclient("status", "--state", str(state_dir), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["last_update"]["type"] == "updated"


def test_log_verify_names_the_entry_edited_in_an_archive(state_dir: Path) -> None:
    log = EventLog(state_dir / "events.log", max_bytes=3 * 400, archives=2)
    for hour in range(10):
        poll(log, hour)
    newest = log.archives()[-1]
    newest.write_text(newest.read_text().replace("runs 1.2.3", "runs 9.9.9", 1))

    result = fwclient("log", "verify", "--state", str(state_dir))
    assert result.exit_code == 1
    assert result.stderr.startswith("fwclient: integrity_failure: event log entry 11: ")


def test_log_verify_names_the_archive_deleted_without_a_recorded_rotation(state_dir: Path) -> None:
    log = EventLog(state_dir / "events.log", max_bytes=3 * 400, archives=2)
    for hour in range(10):
        poll(log, hour)
    log.archives()[0].unlink()

    result = fwclient("log", "verify", "--state", str(state_dir))
    assert result.exit_code == 1
    assert result.stderr == (
        "fwclient: integrity_failure: event log entry 9: entries before seq 10 were removed"
        " without a recorded rotation (0 entries before it verify)\n"
    )
