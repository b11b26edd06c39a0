"""The start of every fixed test clock that python-tuf's ngclient meets.

ngclient takes no clock: it checks expiry against the wall clock. A test clock
that signs metadata ngclient then reads must start from the wall clock, or the
suite goes red the day after the fixed date plus the shortest expiry (it once
did, nine days after it landed). ``RUN_START`` is the wall clock when the test
session started, floored to the minute (so one-time-code steps of 30 s stay
aligned): metadata signed at it is fresh for ngclient on any date, and under
faketime (CI's second run, 400 days ahead) as well. Tests that compare times
derive the expected strings from it, never from a literal date.

``FakeClock`` is the one clock the tests move: every package's test clock is
one of these (``tests/test_test_helpers.py`` checks that no other is defined).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

RUN_START = datetime.now(UTC).replace(second=0, microsecond=0)


def iso_z(moment: datetime) -> str:
    """``moment`` as the server and the metadata write it: ISO 8601, seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeClock:
    """The time the code under test sees; tests set ``now`` or ``advance`` it.

    Calling it returns ``now`` (an aware UTC datetime), as the server's and
    the mock HSM's ``clock`` parameters expect, after moving it by ``tick``
    (zero unless a test wants every reading distinct, as a hash-chained log
    does). ``monotonic`` reads the same time as seconds, for the client's
    monotonic clocks (``PollMemory``, the download checkpoints).
    """

    now: datetime = RUN_START
    tick: timedelta = timedelta(0)
    #: What the clock says of its own synchronization (the server's
    #: ``clock_sync.ReportsSynchronization``): None, it says nothing.
    synchronized: Any = None

    def __post_init__(self) -> None:
        if self.now.utcoffset() != timedelta(0):
            raise ValueError(f"a FakeClock runs on aware UTC time, not {self.now!r}")

    def __call__(self) -> datetime:
        self.now += self.tick
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move the clock on by ``timedelta(**delta)``; return the new time."""
        self.now += timedelta(**delta)
        return self.now

    def synchronization(self) -> Any:
        """The ``clock_sync.ClockSync`` a test stated, or None (C4: not the system clock)."""
        return self.synchronized

    def as_datetime(self) -> type[datetime]:
        """A ``datetime`` class whose ``now()`` reads this clock: monkeypatch it over the
        ``datetime`` of a module that reads the system clock itself (``client.update``)."""
        clock = self

        class Now(datetime):
            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Now:  # type: ignore[override]
                return cls.fromtimestamp(clock().timestamp(), tz)

        return Now

    def monotonic(self) -> float:
        """``now`` in seconds since the epoch (monotonic while ``now`` only moves on)."""
        return self.now.timestamp()
