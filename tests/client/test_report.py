"""R37, R38: what a device reports, when, and how its unsent entries wait in the log.

The server's side is the real chain check (``update_server.device_log``)
behind a stand-in for the signed HTTP route, so what the device sends is
checked against what the server accepts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from client.agent import Agent, Schedule
from client.boot import boot
from client.directive import STANDALONE
from client.events import EventType
from client.report import (
    Acked,
    Reporter,
    Sent,
    build_report,
    read_acked,
    report_file,
    should_report,
    unsent,
    write_acked,
)
from client.state import StateDir
from client.update import Outcome, update
from fwcommon.hashchain import Link
from tests.client.sim import DEVICE, MODEL, Sim, provision
from update_server.device_log import (
    Continues,
    ReportedStatus,
    answer,
    check_report,
    read_status,
)

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


class Server:
    """The report route's answer: the accepted head, or the refusal (an alert)."""

    def __init__(self) -> None:
        self.head: Link | None = None
        self.reports: list[dict[str, Any]] = []
        self.down = False

    def __call__(self, body: dict[str, Any]) -> Mapping[str, Any]:
        if self.down:
            raise ConnectionError("the server is unreachable")
        self.reports.append(json.loads(json.dumps(body)))  # what goes over the wire
        status = read_status(body)
        assert isinstance(status, ReportedStatus), status
        decision = check_report(body["entries"], head=self.head)
        if isinstance(decision, Continues):
            self.head = decision.head
        return answer(decision)

    def sent_seqs(self, index: int = -1) -> list[int]:
        return [entry["seq"] for entry in self.reports[index]["entries"]]


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


def polls(state: StateDir, count: int) -> None:
    for n in range(count):
        state.events.append(EventType.NO_UPDATE, f"poll {n}", now=NOW + timedelta(hours=n))


def test_a_report_says_what_the_device_runs_and_carries_its_log_r38(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 3)
    with device.lock():
        update(device, sim.remote(), directive=STANDALONE)
        boot(device, health_check=None, now=datetime.now(UTC))
    body = build_report(device, after=0)
    assert body["device_id"] == DEVICE
    assert body["hardware_model"] == MODEL
    assert (body["running_version"], body["slot"], body["security_floor"]) == ("1.0.0", "b", 3)
    assert body["mode"] == "normal"
    assert set(body["metadata_expires"]) == {"root", "timestamp", "snapshot", "targets"}
    assert all(body["metadata_expires"].values())
    assert body["last_update"]["type"] == EventType.UPDATED
    assert body["last_update"]["message"]
    assert body["entries"] == list(device.events.entries())
    assert body["more"] is False
    assert isinstance(check_report(body["entries"], head=None), Continues)
    status = read_status(json.loads(json.dumps(body)))
    assert isinstance(status, ReportedStatus)
    assert (status.device_id, status.running_version, status.security_floor) == (DEVICE, "1.0.0", 3)
    assert status.last_type == EventType.UPDATED


def test_the_acknowledged_seq_persists_and_only_new_entries_are_sent_r38(
    device: StateDir,
) -> None:
    server = Server()
    polls(device, 3)
    assert Reporter(device, server).report(now=NOW).outcome is Sent.ACKNOWLEDGED
    assert server.sent_seqs() == [1, 2, 3]
    assert server.head is not None
    assert read_acked(device) == Acked(3, server.head.digest, NOW)
    polls(device, 2)
    restarted = Reporter(device, server)  # a new process reads report.json
    assert restarted.report(now=NOW).outcome is Sent.ACKNOWLEDGED
    assert server.sent_seqs() == [4, 5]
    assert restarted.report(now=NOW).outcome is Sent.ACKNOWLEDGED
    assert server.sent_seqs() == [], "nothing new: a status-only report"


def test_the_acknowledgement_survives_a_metadata_cache_wipe(device: StateDir) -> None:
    server = Server()
    polls(device, 2)
    Reporter(device, server).report(now=NOW)
    shutil.rmtree(device.metadata_dir, ignore_errors=True)
    assert report_file(device).parent == device.root
    assert read_acked(device).seq == 2


def test_a_failing_send_keeps_the_entries_for_the_next_report_r52(device: StateDir) -> None:
    """A device that cannot report keeps its unsent entries in the log, no second queue."""
    server = Server()
    polls(device, 2)
    Reporter(device, server).report(now=NOW)
    polls(device, 3)
    server.down = True
    result = Reporter(device, server).report(now=NOW + timedelta(hours=1))
    assert result.outcome is Sent.FAILED
    assert "unreachable" in result.message
    assert read_acked(device).seq == 2
    server.down = False
    assert Reporter(device, server).report(now=NOW).outcome is Sent.ACKNOWLEDGED
    assert server.sent_seqs() == [3, 4, 5]


def test_a_report_is_bounded_and_the_rest_follows_in_the_next_reports(device: StateDir) -> None:
    server = Server()
    polls(device, 8)
    result = Reporter(device, server, limit=3).report(now=NOW)
    assert result.outcome is Sent.ACKNOWLEDGED
    assert [server.sent_seqs(i) for i in range(3)] == [[1, 2, 3], [4, 5, 6], [7, 8]]
    assert [r["more"] for r in server.reports] == [True, True, False]
    assert result.acked_seq == 8


def test_a_round_sends_at_most_its_reports_and_the_next_round_goes_on(device: StateDir) -> None:
    server = Server()
    polls(device, 8)
    Reporter(device, server, limit=3, rounds=2).report(now=NOW)
    assert read_acked(device).seq == 6
    Reporter(device, server, limit=3, rounds=2).report(now=NOW)
    assert server.sent_seqs() == [7, 8]


def test_a_report_is_bounded_by_bytes_but_carries_at_least_one_entry(device: StateDir) -> None:
    polls(device, 5)
    entries, more = unsent(device.events, 0, budget=10)
    assert [entry["seq"] for entry in entries] == [1]
    assert more is True


def test_a_refused_report_moves_nothing_and_is_retried_whole(device: StateDir) -> None:
    """The server refuses (an alert it shows); the device keeps working and its acked seq."""
    server = Server()
    polls(device, 2)
    Reporter(device, server).report(now=NOW)
    polls(device, 2)
    server.head = Link(2, "0" * 64)  # the server anchored another history
    result = Reporter(device, server).report(now=NOW)
    assert result.outcome is Sent.REFUSED
    assert "second history" in result.message
    assert read_acked(device).seq == 2
    assert read_acked(device).last_report == NOW


def test_an_acknowledgement_of_an_entry_the_log_does_not_hold_moves_nothing(
    device: StateDir,
) -> None:
    polls(device, 2)
    result = Reporter(device, lambda _body: {"acked_seq": 2, "acked_hash": "a" * 64}).report(
        now=NOW
    )
    assert result.outcome is Sent.FAILED
    assert read_acked(device) == Acked()


def test_a_damaged_acknowledgement_file_resends_the_whole_log(device: StateDir) -> None:
    server = Server()
    polls(device, 2)
    report_file(device).write_text("{not json")
    assert read_acked(device) == Acked()
    Reporter(device, server).report(now=NOW)
    assert server.sent_seqs() == [1, 2]


def test_an_acknowledgement_round_trips(device: StateDir) -> None:
    write_acked(device, Acked(7, "b" * 64, NOW))
    assert read_acked(device) == Acked(7, "b" * 64, NOW)


def test_a_report_after_every_change_r38() -> None:
    assert should_report(NOW, NOW, changed=True)


def test_a_report_at_least_daily_without_changes_r38() -> None:
    assert should_report(NOW, None, changed=False), "never reported"
    assert not should_report(NOW + timedelta(hours=23), NOW, changed=False)
    assert should_report(NOW + timedelta(days=1), NOW, changed=False)
    assert should_report(NOW - timedelta(hours=1), NOW, changed=False), "the clock went back"


def test_a_status_only_report_when_the_server_holds_nothing(device: StateDir) -> None:
    """A device whose log is empty still reports what it runs."""
    server = Server()
    result = Reporter(device, server).report(now=NOW)
    assert result.outcome is Sent.ACKNOWLEDGED
    assert server.reports[0]["entries"] == []
    assert read_acked(device) == Acked(0, None, NOW)


class Waits:
    """The agent's waits, not slept."""

    def __call__(self, delay: float) -> bool:
        return False


def agent(device: StateDir, sim: Sim, reporter: Reporter) -> Agent:
    return Agent(
        device,
        sim.remote(),
        Schedule(interval=100),
        after_install=lambda: boot(device, health_check=None, now=datetime.now(UTC)),
        wait=Waits(),
        reporter=reporter,
    )


def test_the_agent_reports_the_install_after_its_reboot_r38(device: StateDir, sim: Sim) -> None:
    server = Server()
    sim.release("1.0.0", 1)
    assert agent(device, sim, Reporter(device, server)).run(max_polls=1).outcomes == [
        Outcome.INSTALLED
    ]
    assert [e["type"] for e in server.reports[-1]["entries"]] == ["installed", "updated"]
    assert server.reports[-1]["running_version"] == "1.0.0"


def test_a_failing_report_never_fails_the_update_r52(device: StateDir, sim: Sim) -> None:
    """The server's report route is down: the update installs, the entries wait in the log."""
    server = Server()
    server.down = True
    sim.release("1.0.0", 1)
    report = agent(device, sim, Reporter(device, server)).run(max_polls=2)
    assert report.outcomes == [Outcome.INSTALLED, Outcome.UP_TO_DATE]
    assert read_acked(device) == Acked()
    server.down = False
    agent(device, sim, Reporter(device, server)).run(max_polls=1)
    assert [e["type"] for e in server.reports[-1]["entries"]] == [
        "installed",
        "updated",
        "no_update",
        "no_update",
    ]


def test_a_report_that_raises_anything_never_stops_the_agent_r52(
    device: StateDir, sim: Sim
) -> None:
    def broken(_body: dict[str, Any]) -> Mapping[str, Any]:
        raise RuntimeError("the device API broke")

    sim.release("1.0.0", 1)
    report = agent(device, sim, Reporter(device, broken)).run(max_polls=2)
    assert report.outcomes == [Outcome.INSTALLED, Outcome.UP_TO_DATE]


def test_the_agent_reports_daily_when_nothing_changes_r38(device: StateDir, sim: Sim) -> None:
    server = Server()
    sim.release("1.0.0", 1)
    with device.lock():
        update(device, sim.remote(), directive=STANDALONE)
    polling = agent(device, sim, Reporter(device, server))
    polling.run(max_polls=1)  # nothing new, but never reported: reports
    assert len(server.reports) == 1
    polling.run(max_polls=1)  # nothing new, reported an hour ago at most: quiet
    assert len(server.reports) == 1
    acked = read_acked(device)
    assert acked.last_report is not None
    write_acked(device, Acked(acked.seq, acked.hash, acked.last_report - timedelta(days=1)))
    polling.run(max_polls=1)  # a day without a report: reports, though nothing changed
    assert len(server.reports) == 2
    assert server.sent_seqs() == [3, 4]


@pytest.mark.parametrize("reply", [{}, {"acked_seq": "2", "acked_hash": "x"}, {"ok": True}])
def test_an_answer_that_is_not_one_moves_nothing(device: StateDir, reply: dict[str, Any]) -> None:
    polls(device, 2)
    result = Reporter(device, lambda _body: reply).report(now=NOW)
    assert result.outcome is Sent.FAILED
    assert read_acked(device) == Acked()
