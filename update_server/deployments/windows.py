"""Maintenance windows: when a group's devices may activate a firmware (pure: no I/O).

A window is a weekly schedule in the group's site's IANA time zone: the
days it opens on, the local time it opens and how long it stays open.
Rules:

- MW1 A window opens at its local start time on each of its days, as the
  site's clock reads it, and stays open ``minutes`` of real time (a window
  of 3 hours is 3 hours long, also on the night the clocks change).
- MW2 A start time the clocks skip (spring forward) opens the window at the
  same distance after the change (02:30 on a night that jumps from 02:00
  to 03:00 opens at 03:30, zoneinfo's ``fold=0`` reading); a start time the
  clocks pass twice (fall back) opens it the first time.
- MW3 ``current_or_next`` is the window open at ``now`` (opens <= now <
  closes), else the next one to open; both as UTC instants. Of several
  groups' windows, the one open now wins, else the one that opens first.
- MW4 A window lasts 1 minute to 24 hours and opens on at least one day;
  its time zone is a name the system's zone database knows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_MINUTES = 24 * 60
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])\Z")


@dataclass(frozen=True)
class Schedule:
    """MW4: a weekly window, checked when made."""

    days: tuple[str, ...]
    start: str
    minutes: int
    timezone: str

    def __post_init__(self) -> None:
        if not self.days or any(day not in DAYS for day in self.days):
            raise ValueError(f"days are one or more of {', '.join(DAYS)}")
        if _HHMM.match(self.start) is None:
            raise ValueError("start is a local time HH:MM (00:00 to 23:59)")
        if not 1 <= self.minutes <= MAX_MINUTES:
            raise ValueError(f"a window lasts 1 to {MAX_MINUTES} minutes")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{self.timezone[:64]!r} is not an IANA time zone") from None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def local_start(self) -> time:
        hours, minutes = self.start.split(":")
        return time(int(hours), int(minutes))


@dataclass(frozen=True)
class Window:
    """One opening, as UTC instants: open while opens <= now < closes."""

    opens: datetime
    closes: datetime

    def is_open(self, now: datetime) -> bool:
        return self.opens <= now < self.closes


def current_or_next(schedule: Schedule, now: datetime) -> Window:
    """MW1-MW3: the opening of ``schedule`` open at ``now``, else the next."""
    zone, start = schedule.zone, schedule.local_start
    today = now.astimezone(zone).date()
    # A window of up to a day that opened yesterday may still be open.
    for offset in range(-1, 8):
        day = today + timedelta(days=offset)
        if DAYS[day.weekday()] not in schedule.days:
            continue
        opens = datetime.combine(day, start, tzinfo=zone).astimezone(UTC)
        window = Window(opens, opens + timedelta(minutes=schedule.minutes))
        if now < window.closes:
            return window
    raise RuntimeError("a weekly schedule opens within 8 days")  # pragma: no cover - MW4


def earliest(schedules: Iterable[Schedule], now: datetime) -> Window | None:
    """MW3: of several schedules, the window open now, else the first to open (None: none)."""
    windows: Sequence[Window] = [current_or_next(schedule, now) for schedule in schedules]
    if not windows:
        return None
    open_now = [window for window in windows if window.is_open(now)]
    if open_now:
        return max(open_now, key=lambda window: window.closes)
    return min(windows, key=lambda window: window.opens)
