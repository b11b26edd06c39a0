"""The pure rules of deployments, without a database: waves (W1-W5), windows (MW1-MW4),
a device's status from its reports (S1-S4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from update_server.deployments import status, waves, windows
from update_server.deployments.status import Status, Verdict
from update_server.deployments.waves import Step, Thresholds, WaveCounts

STRICT = Thresholds(success_percent=90, failure_percent=10)


# -- waves ----------------------------------------------------------------------------


def test_w1_waves_are_counts_or_percentages_then_the_rest() -> None:
    assert waves.plan(100, [{"count": 5}, {"percent": 20}]) == [5, 20, 75]
    assert waves.plan(7, [{"percent": 10}]) == [1, 6]  # rounded up
    assert waves.plan(3, [{"count": 5}, {"count": 5}]) == [3]  # never more than are left
    assert waves.plan(4, []) == [4]
    assert waves.plan(10, [{"count": 4}, {"percent": 60}]) == [4, 6]


@pytest.mark.parametrize(
    "asked", [[{"count": 0}], [{"percent": 101}], [{"count": 1, "percent": 5}], [{"size": 3}]]
)
def test_w1_a_wave_is_exactly_one_positive_count_or_percentage(asked: Any) -> None:
    with pytest.raises(ValueError, match="wave 1"):
        waves.check_waves(asked)


def test_w2_a_wave_past_its_failure_threshold_stops_the_deployment() -> None:
    started = [WaveCounts(size=10, installed=7, failed=2)]
    decision = waves.next_step(started, planned=3, thresholds=STRICT, progressing=True)
    assert decision.step is Step.STOP
    assert decision.wave == 0
    assert "2 of 10" in decision.reason


def test_w2_at_the_threshold_is_not_past_it_and_zero_stops_at_the_first_failure() -> None:
    at = [WaveCounts(size=10, installed=0, failed=1)]
    assert waves.next_step(at, planned=2, thresholds=STRICT, progressing=True).step is Step.WAIT
    zero = Thresholds(success_percent=90, failure_percent=0)
    assert waves.next_step(at, planned=2, thresholds=zero, progressing=True).step is Step.STOP


def test_w2_a_late_failure_in_an_earlier_wave_stops_too_before_any_success() -> None:
    started = [WaveCounts(10, installed=8, failed=2), WaveCounts(10, installed=10)]
    decision = waves.next_step(started, planned=3, thresholds=STRICT, progressing=True)
    assert (decision.step, decision.wave) == (Step.STOP, 0)


def test_w3_the_next_wave_starts_at_the_success_threshold_and_the_last_completes() -> None:
    below = [WaveCounts(10, installed=8)]
    assert waves.next_step(below, planned=2, thresholds=STRICT, progressing=True).step is Step.WAIT
    met = [WaveCounts(10, installed=9, failed=1)]
    start = waves.next_step(met, planned=2, thresholds=STRICT, progressing=True)
    assert (start.step, start.wave) == (Step.START_NEXT, 1)
    last = [*met, WaveCounts(5, installed=5)]
    assert waves.next_step(last, planned=2, thresholds=STRICT, progressing=True).step is (
        Step.COMPLETE
    )


def test_w3_approval_starts_the_first_wave() -> None:
    decision = waves.next_step([], planned=2, thresholds=STRICT, progressing=True)
    assert (decision.step, decision.wave) == (Step.START_NEXT, 0)


def test_w5_frozen_or_paused_nothing_starts_or_completes_but_failures_still_stop() -> None:
    met = [WaveCounts(10, installed=10)]
    assert waves.next_step(met, planned=2, thresholds=STRICT, progressing=False).step is Step.WAIT
    assert waves.next_step([], planned=1, thresholds=STRICT, progressing=False).step is Step.WAIT
    failing = [WaveCounts(10, failed=5)]
    assert waves.next_step(failing, planned=2, thresholds=STRICT, progressing=False).step is (
        Step.STOP
    )


@pytest.mark.parametrize(("success", "failure"), [(0, 10), (101, 10), (90, -1), (90, 101)])
def test_thresholds_are_percentages(success: int, failure: int) -> None:
    with pytest.raises(ValueError, match="percentage"):
        Thresholds(success, failure)


# -- maintenance windows --------------------------------------------------------------

PARIS = "Europe/Paris"


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_mw1_mw3_the_window_open_now_or_the_next_as_utc_instants() -> None:
    nightly = windows.Schedule(days=("mon", "wed"), start="01:00", minutes=120, timezone=PARIS)
    # Monday 2027-01-04 01:30 in Paris (UTC+1) is 00:30 UTC: open.
    open_now = windows.current_or_next(nightly, _utc(2027, 1, 4, 0, 30))
    assert (open_now.opens, open_now.closes) == (_utc(2027, 1, 4, 0, 0), _utc(2027, 1, 4, 2, 0))
    assert open_now.is_open(_utc(2027, 1, 4, 0, 30))
    # At the close it is the next one, Wednesday's.
    after = windows.current_or_next(nightly, _utc(2027, 1, 4, 2, 0))
    assert after.opens == _utc(2027, 1, 6, 0, 0)


def test_mw1_a_window_across_the_spring_change_keeps_its_local_start_and_real_duration() -> None:
    """Europe/Paris moves from UTC+1 to UTC+2 at 02:00 local (01:00 UTC) on 2027-03-28."""
    nightly = windows.Schedule(days=windows.DAYS, start="01:00", minutes=180, timezone=PARIS)
    before = windows.current_or_next(nightly, _utc(2027, 3, 27, 12))
    assert before.opens == _utc(2027, 3, 28, 0, 0)  # 01:00 CET
    assert before.closes - before.opens == timedelta(hours=3)  # 05:00 CEST: 3 real hours
    after = windows.current_or_next(nightly, _utc(2027, 3, 28, 12))
    assert after.opens == _utc(2027, 3, 28, 23, 0)  # 01:00 CEST the next night


def test_mw2_a_start_the_clocks_skip_opens_as_far_after_the_change() -> None:
    skipped = windows.Schedule(days=("sun",), start="02:30", minutes=60, timezone=PARIS)
    window = windows.current_or_next(skipped, _utc(2027, 3, 27, 12))
    assert window.opens == _utc(2027, 3, 28, 1, 30)  # 03:30 CEST


def test_mw2_a_start_the_clocks_pass_twice_opens_the_first_time() -> None:
    """Europe/Paris goes back from 03:00 CEST to 02:00 CET on 2027-10-31."""
    twice = windows.Schedule(days=("sun",), start="02:30", minutes=60, timezone=PARIS)
    window = windows.current_or_next(twice, _utc(2027, 10, 30, 12))
    assert window.opens == _utc(2027, 10, 31, 0, 30)  # 02:30 CEST


def test_mw3_of_several_windows_the_open_one_wins_else_the_first_to_open() -> None:
    now = _utc(2027, 1, 4, 0, 30)  # Monday
    soon = windows.Schedule(days=("mon",), start="03:00", minutes=60, timezone="UTC")
    later = windows.Schedule(days=("tue",), start="00:00", minutes=60, timezone="UTC")
    assert windows.earliest([later, soon], now) == windows.current_or_next(soon, now)
    open_now = windows.Schedule(days=("mon",), start="00:00", minutes=60, timezone="UTC")
    assert windows.earliest([soon, open_now], now) == windows.current_or_next(open_now, now)
    assert windows.earliest([], now) is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"days": ()}, "days"),
        ({"days": ("monday",)}, "days"),
        ({"start": "24:00"}, "HH:MM"),
        ({"minutes": 0}, "minutes"),
        ({"minutes": 24 * 60 + 1}, "minutes"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
    ],
)
def test_mw4_a_window_that_makes_no_sense_is_refused(fields: dict[str, Any], message: str) -> None:
    good: dict[str, Any] = {"days": ("mon",), "start": "01:00", "minutes": 60, "timezone": PARIS}
    with pytest.raises(ValueError, match=message):
        windows.Schedule(**{**good, **fields})


# -- per-device status ----------------------------------------------------------------

PATH = "pump-x100/fw-2.0.0.bin"
ASSIGNED = Verdict(Status.ASSIGNED)


def _entry(kind: str, message: str = "", **detail: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "detail": detail}


def _fold(*entries: dict[str, Any], running: str | None = "1.0.0") -> Verdict:
    return status.fold(
        ASSIGNED, entries, target_path=PATH, version="2.0.0", running_version=running
    )


def test_s1_entries_about_other_targets_or_none_change_nothing() -> None:
    assert _fold(_entry("checked", target="pump-x100/fw-3.0.0.bin")) == ASSIGNED
    assert _fold(_entry("rollback_attack")) == ASSIGNED
    assert _fold(_entry("no_update", considered=3)) == ASSIGNED


def test_s1_a_release_held_back_by_the_freeze_is_no_verdict_on_it_r24() -> None:
    """The freeze makes every device log server_frozen naming the target: no refusal counted."""
    held = _entry("server_frozen", "frozen", target=PATH, version="2.0.0")
    assert _fold(held) == ASSIGNED
    assert _fold(_entry("checked", target=PATH), held).status is Status.DOWNLOADING
    assert _fold(_entry("poll_unanswered", target=PATH)) == ASSIGNED


def test_s2_progress_deferral_and_success_in_the_order_logged() -> None:
    assert _fold(_entry("checked", target=PATH)).status is Status.DOWNLOADING
    deferred = _fold(
        _entry("checked", target=PATH), _entry("deferred_window", "outside", target=PATH)
    )
    assert (deferred.status, deferred.event, deferred.reason) == (
        Status.DEFERRED,
        "deferred_window",
        "outside",
    )
    assert _fold(_entry("installed", target=PATH)).status is Status.ACTIVATING
    assert _fold(_entry("updated", version="2.0.0")).status is Status.INSTALLED


def test_s2_a_failure_names_its_event_and_a_refusal_its_reason() -> None:
    failed = _fold(
        _entry("installed", target=PATH), _entry("rolled_back", "crash", version="2.0.0")
    )
    assert (failed.status, failed.event) == (Status.FAILED, "rolled_back")
    refused = _fold(_entry("firmware_downgrade", "below this device's floor 3", target=PATH))
    assert (refused.status, refused.event, refused.reason) == (
        Status.REFUSED,
        "firmware_downgrade",
        "below this device's floor 3",
    )
    assigned = _fold(_entry("assignment_refused", "not in the signed set", target=PATH))
    assert assigned.status is Status.REFUSED


def test_s3_the_running_version_reported_is_installed_whatever_came_before() -> None:
    assert _fold(_entry("checked", target=PATH), running="2.0.0").status is Status.INSTALLED
    assert _fold(running="2.0.0").status is Status.INSTALLED
