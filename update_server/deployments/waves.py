"""What a deployment does next, from its waves' counts (pure: no I/O, no clock).

A deployment's devices are split into waves when it is made (``plan``);
each time the server looks at it (a device's report, an API read, a poll)
it asks ``next_step`` what follows from the counts. Rules:

- W1 Waves are planned in order, each a count of devices or a percentage
  of all of them (rounded up), never more than are left; the devices left
  after the last wave asked for make one more wave. No wave asked for: one
  wave of every device. An empty plan (no device) is refused by the caller.
- W2 A wave has failed when more than ``failure_percent`` of its devices
  failed or refused the target (strictly more: 0 stops at the first
  failure). Any started wave failing stops the deployment, before any
  success is looked at: a late failure in an earlier wave counts too.
- W3 The last started wave succeeded when at least ``success_percent`` of
  its devices run the target. Then the next wave starts; after the last
  wave, the deployment is complete.
- W4 Nothing else changes anything: the deployment waits.
- W5 While the system is frozen, or the deployment is not running
  (awaiting approval, paused, ended), no wave starts and nothing completes;
  a wave that failed still stops it (stopping is never progress).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

MAX_PERCENT = 100


class Step(StrEnum):
    WAIT = "wait"
    START_NEXT = "start_next"
    STOP = "stop"
    COMPLETE = "complete"


@dataclass(frozen=True)
class Thresholds:
    """W2, W3: percentages of a wave's devices (success 1-100, failure 0-100)."""

    success_percent: int
    failure_percent: int

    def __post_init__(self) -> None:
        if not 1 <= self.success_percent <= MAX_PERCENT:
            raise ValueError("the success threshold is a percentage from 1 to 100")
        if not 0 <= self.failure_percent <= MAX_PERCENT:
            raise ValueError("the failure threshold is a percentage from 0 to 100")


@dataclass(frozen=True)
class WaveCounts:
    """One wave: its devices, how many run the target, how many failed or refused it."""

    size: int
    installed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Decision:
    step: Step
    #: The wave the step is about (0-based): the one that failed, or the one to start.
    wave: int | None = None
    reason: str = ""


def plan(total: int, waves: Sequence[Mapping[str, int]]) -> list[int]:
    """W1: the size of each wave for ``total`` devices."""
    sizes: list[int] = []
    left = total
    for wave in waves:
        asked = wave["count"] if "count" in wave else math.ceil(total * wave["percent"] / 100)
        size = min(asked, left)
        if size > 0:
            sizes.append(size)
        left -= size
    if left > 0:
        sizes.append(left)
    return sizes


def check_waves(waves: Sequence[Mapping[str, int]]) -> None:
    """W1: each wave is exactly one of a positive count or a percentage 1-100."""
    for number, wave in enumerate(waves, start=1):
        if len(wave) != 1 or not ({"count", "percent"} >= set(wave)):
            raise ValueError(f"wave {number}: give either 'count' or 'percent'")
        value = next(iter(wave.values()))
        if "percent" in wave and not 1 <= value <= MAX_PERCENT:
            raise ValueError(f"wave {number}: a percentage is from 1 to 100")
        if "count" in wave and value < 1:
            raise ValueError(f"wave {number}: a count is at least 1")


def next_step(
    started: Sequence[WaveCounts],
    *,
    planned: int,
    thresholds: Thresholds,
    progressing: bool,
) -> Decision:
    """W2-W5: what follows for a deployment whose ``started`` waves have these counts.

    ``planned`` is the number of waves in the plan; ``progressing`` is False
    while the system is frozen or the deployment is not running (W5).
    """
    for number, wave in enumerate(started):
        if wave.failed * 100 > thresholds.failure_percent * wave.size:
            return Decision(
                Step.STOP,
                number,
                f"wave {number + 1}: {wave.failed} of {wave.size} devices failed or refused"
                f" the target, more than the {thresholds.failure_percent}% allowed",
            )
    if not progressing:
        return Decision(Step.WAIT)
    if not started:
        return Decision(Step.START_NEXT, 0, "approved: the first wave starts")
    last = started[-1]
    if last.installed * 100 < thresholds.success_percent * last.size:
        return Decision(Step.WAIT)
    done = f"wave {len(started)}: {last.installed} of {last.size} devices run the target"
    if len(started) < planned:
        return Decision(Step.START_NEXT, len(started), done)
    return Decision(Step.COMPLETE, None, done)
