"""The server's one source of time: the system clock, in UTC.

Views and cores take ``now`` as a value; tests move the system clock with
faketime or pass their own clock to ``create_app``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)
