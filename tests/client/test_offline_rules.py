"""The offline freshness rules, pure (``client.offline`` O2-O4, O6, O7; ADR 0007)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from client.offline import (
    DEFAULT_MAX_AGE,
    LONGEST_MAX_AGE,
    SHORTEST_MAX_AGE,
    BundleMismatchError,
    Offline,
    WiderMaxAgeError,
    check_manifest,
    check_root_chain,
    describe,
    parse,
    reference_time,
    session_max_age,
)

CLOCK = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
MONTH = timedelta(days=30)


def test_the_reference_time_is_the_clock_less_the_bound_when_the_floor_is_older_o2() -> None:
    """O2: T is the clock less max_age when the floor is older (TUF freeze attack, bounded)."""
    floor = CLOCK - timedelta(days=90)
    assert reference_time(clock=CLOCK, floor=floor, max_age=MONTH) == CLOCK - MONTH


def test_the_reference_time_is_never_before_the_time_floor_o2() -> None:
    """Never older than what the device already trusts (TUF freeze attack)."""
    floor = CLOCK - timedelta(days=3)
    assert reference_time(clock=CLOCK, floor=floor, max_age=MONTH) == floor


def test_a_clock_set_back_behind_the_floor_revives_nothing_o4() -> None:
    """O4: a clock set back behind the floor revives nothing (R25; TUF freeze attack)."""
    floor = CLOCK
    assert reference_time(clock=CLOCK - timedelta(days=400), floor=floor, max_age=MONTH) == floor


def test_a_clock_set_forward_only_refuses_more_o4() -> None:
    """O4: a clock set forward only refuses more (TUF freeze attack)."""
    floor = CLOCK - timedelta(days=90)
    honest = reference_time(clock=CLOCK, floor=floor, max_age=MONTH)
    ahead = reference_time(clock=CLOCK + timedelta(days=400), floor=floor, max_age=MONTH)
    assert ahead > honest


@pytest.mark.parametrize(
    "max_age",
    [timedelta(0), -MONTH, SHORTEST_MAX_AGE - timedelta(seconds=1), LONGEST_MAX_AGE * 2],
    ids=["zero", "negative", "too-short", "too-long"],
)
def test_the_bound_is_a_device_setting_within_limits_and_never_unbounded_o3(
    max_age: timedelta,
) -> None:
    """O3: max_age is bounded, never "never" (TUF indefinite freeze attack)."""
    with pytest.raises(ValueError, match="outside"):
        Offline(max_age=max_age)


def test_the_default_bound_is_thirty_days_o3() -> None:
    """O3: the default max_age is thirty days (TUF freeze attack, bounded)."""
    assert Offline().max_age == DEFAULT_MAX_AGE == MONTH
    floor = CLOCK - timedelta(days=365)
    assert Offline().reference_time(clock=CLOCK, floor=floor) == CLOCK - MONTH


@pytest.mark.parametrize(
    ("requested", "bound"),
    [(None, MONTH), (MONTH, MONTH), (timedelta(days=10), timedelta(days=10))],
    ids=["setting", "equal", "narrower"],
)
def test_a_run_takes_the_setting_or_a_narrower_bound_o3(
    requested: timedelta | None, bound: timedelta
) -> None:
    """O3: a run may narrow the device's setting (R25; TUF freeze attack, bounded)."""
    assert session_max_age(setting=MONTH, requested=requested) == bound


def test_a_run_never_widens_the_setting_o3() -> None:
    """O3: a wider bound for one run is refused, naming the setting (R25, TUF freeze attack)."""
    with pytest.raises(WiderMaxAgeError, match="device's offline maximum age, 30d"):
        session_max_age(setting=MONTH, requested=MONTH + timedelta(seconds=1))


def test_a_narrower_run_is_still_within_the_bounds_o3() -> None:
    """O3: narrowing below the shortest bound is refused too (TUF freeze attack, bounded)."""
    with pytest.raises(ValueError, match="outside"):
        session_max_age(setting=MONTH, requested=timedelta(minutes=5))


@pytest.mark.parametrize(
    ("text", "duration", "shown"),
    [
        ("30d", MONTH, "30d"),
        ("30", MONTH, "30d"),
        ("1.5d", timedelta(hours=36), "36h"),
        ("36h", timedelta(hours=36), "36h"),
        ("5400s", timedelta(minutes=90), "5400s"),
        (" 90d ", timedelta(days=90), "90d"),
    ],
)
def test_durations_read_and_shown_o3(text: str, duration: timedelta, shown: str) -> None:
    """O3: the setting's duration syntax (a number alone is days), shown as it reads back."""
    assert parse(text) == duration
    assert describe(duration) == shown
    assert parse(describe(duration)) == duration


@pytest.mark.parametrize("text", ["", "d", "-1d", "1e3", "nan", "inf", "30 d", "30m", "1w"])
def test_what_is_not_a_duration_is_refused_o3(text: str) -> None:
    """O3: anything but a number and d, h or s is refused with the syntax named."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse(text)


def test_a_manifest_for_another_model_or_device_is_refused_o7() -> None:
    """O7: a manifest for another model or device is refused (R15, R25)."""
    check_manifest(model="pump", device=None, hardware_model="pump", device_id="p-1")
    check_manifest(model="pump", device="p-1", hardware_model="pump", device_id="p-1")
    with pytest.raises(BundleMismatchError, match="for model pump-z; this device is model pump"):
        check_manifest(model="pump-z", device=None, hardware_model="pump", device_id="p-1")
    with pytest.raises(BundleMismatchError, match="for device p-2; this device is p-1"):
        check_manifest(model="pump", device="p-2", hardware_model="pump", device_id="p-1")


def test_a_root_chain_starting_after_the_trusted_root_is_refused_o7() -> None:
    """O7: a root chain starting after the newest trusted root is refused by name."""
    check_root_chain(root_from=1, trusted=1)
    check_root_chain(root_from=1, trusted=3)
    with pytest.raises(BundleMismatchError, match="starts after root version 3; this device"):
        check_root_chain(root_from=3, trusted=2)
