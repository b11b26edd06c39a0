"""The start of every fixed test clock that python-tuf's ngclient meets.

ngclient takes no clock: it checks expiry against the wall clock. A test clock
that signs metadata ngclient then reads must start from the wall clock, or the
suite goes red the day after the fixed date plus the shortest expiry (it once
did, nine days after it landed). ``RUN_START`` is the wall clock when the test
session started, floored to the minute (so one-time-code steps of 30 s stay
aligned): metadata signed at it is fresh for ngclient on any date, and under
faketime (CI's second run, 400 days ahead) as well. Tests that compare times
derive the expected strings from it, never from a literal date.
"""

from __future__ import annotations

from datetime import UTC, datetime

RUN_START = datetime.now(UTC).replace(second=0, microsecond=0)


def iso_z(moment: datetime) -> str:
    """``moment`` as the server and the metadata write it: ISO 8601, seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
