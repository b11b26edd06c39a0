"""When a failed alert delivery is tried again: exponential back-off, full jitter, capped.

R1 The n-th failed attempt waits a time drawn uniformly from
``[0, min(cap, base * 2 ** (n - 1))]`` ("full jitter"): the ceiling doubles
with each failure up to ``cap``, and the draw spreads the retries of many
alerts (and of several workers) over the interval instead of having them
hit a receiver that comes back all at once. Pure: the random source is an
argument, so a test fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from random import Random

#: The first retry's ceiling.
DEFAULT_BASE = timedelta(seconds=5)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    base: timedelta = DEFAULT_BASE
    cap: timedelta

    def __post_init__(self) -> None:
        if not timedelta(0) < self.base <= self.cap:
            raise ValueError("a retry policy needs 0 < base <= cap")


def ceiling(attempts: int, *, policy: RetryPolicy) -> timedelta:
    """R1: the longest wait after ``attempts`` failed attempts (at least one)."""
    doublings = min(max(attempts, 1) - 1, 40)  # 2**40 * base is past any cap
    return min(policy.cap, policy.base * (1 << doublings))


def delay(attempts: int, *, policy: RetryPolicy, rng: Random) -> timedelta:
    """R1: the wait before the next attempt, after ``attempts`` failed ones."""
    return ceiling(attempts, policy=policy) * rng.random()
