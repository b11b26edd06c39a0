"""Is the server's clock synchronized? For the status and the metrics (R38, R25).

One-time codes allow one 30-second step of skew (``mfa.totp``): a server
clock that drifts further refuses every person's codes, and the expiries it
signs into metadata move with it. The deployment keeps the clock synchronized
(chrony or systemd-timesyncd, ``deploy/README.md``); this module tells when it
is not, so that ``GET /api/v1/status``, ``fwserver status`` and ``/metrics``
say so.

- C1 The kernel's own word, read with ``adjtimex(2)`` in read-only mode (no
  ``modes`` bit set: nothing changes, no privilege needed): whichever NTP
  daemon runs sets it. The clock is synchronized when the call's clock state
  is not ``TIME_ERROR`` and ``STA_UNSYNC`` is clear in its status word (as
  ``timedatectl``'s "System clock synchronized" reads it).
- C2 ``classify`` is pure: the call's result and status word in, a
  ``ClockSync`` out. ``read_kernel`` only calls and hands over.
- C3 Where the kernel cannot be asked (not Linux) or the call fails, the
  state is ``unknown`` with the reason, and it is warned about: never a
  ``synchronized`` nobody checked.
- C4 Only the system clock is the kernel's: ``sync_of`` reads the kernel for
  ``clock.system_clock``; a server given another clock (a test's fixed
  clock) reports that clock's own state if it has one
  (``ReportsSynchronization``), else ``not_system_clock``, with no warning.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

from update_server.clock import system_clock

#: linux/timex.h: the clock state ``adjtimex`` returns when the clock is not
#: synchronized, and the status bit NTP daemons clear once it is.
TIME_ERROR: Final = 5
STA_UNSYNC: Final = 0x0040


class SyncState(StrEnum):
    SYNCHRONIZED = "synchronized"
    UNSYNCHRONIZED = "unsynchronized"
    UNKNOWN = "unknown"
    NOT_SYSTEM_CLOCK = "not_system_clock"


@dataclass(frozen=True)
class ClockSync:
    """What is known of the clock's synchronization, and the sentence to warn with."""

    state: SyncState
    #: The kernel's estimate of the clock's maximum error (adjtimex ``maxerror``), if read.
    max_error_us: int | None = None
    reason: str = ""

    @property
    def warning(self) -> str | None:
        """C3, C4: the status's warning line, or None."""
        if self.state is SyncState.UNSYNCHRONIZED:
            return (
                "clock: the system clock is not synchronized (NTP): one-time codes allow"
                " 30 seconds of skew; start chrony or systemd-timesyncd"
                " (timedatectl timesync-status, chronyc tracking)"
            )
        if self.state is SyncState.UNKNOWN:
            return f"clock: cannot tell whether the system clock is synchronized: {self.reason}"
        return None

    def to_json(self) -> dict[str, object]:
        return {"state": self.state.value, "max_error_us": self.max_error_us}


@runtime_checkable
class ReportsSynchronization(Protocol):
    """A clock that says itself whether it is synchronized (C4)."""

    def __call__(self) -> datetime: ...

    def synchronization(self) -> ClockSync | None:
        """Its state, or None when it does not know (then: not the system clock)."""


def classify(result: int, status: int, max_error_us: int | None = None) -> ClockSync:
    """C1, C2: ``adjtimex``'s return value and status word, as a ``ClockSync``."""
    if result < 0:
        return ClockSync(SyncState.UNKNOWN, reason=f"adjtimex failed ({result})")
    if result == TIME_ERROR or status & STA_UNSYNC:
        return ClockSync(SyncState.UNSYNCHRONIZED, max_error_us)
    return ClockSync(SyncState.SYNCHRONIZED, max_error_us)


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """``struct timex`` of linux/timex.h (glibc's layout, the padding included)."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    )


def read_kernel() -> ClockSync:
    """C1, C3: ask the kernel (read only) and classify its answer."""
    if not sys.platform.startswith("linux"):
        return ClockSync(SyncState.UNKNOWN, reason=f"not asked on {sys.platform} (Linux only)")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = _Timex()  # modes 0: read only
        result = int(libc.adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError) as exc:
        return ClockSync(SyncState.UNKNOWN, reason=f"adjtimex unavailable: {exc}")
    if result < 0:
        return ClockSync(SyncState.UNKNOWN, reason=f"adjtimex: errno {ctypes.get_errno()}")
    return classify(result, timex.status, int(timex.maxerror))


def sync_of(clock: Callable[[], datetime]) -> ClockSync:
    """C4: the kernel's state for the system clock; another clock's own, or none."""
    if clock is system_clock:
        return read_kernel()
    stated = clock.synchronization() if isinstance(clock, ReportsSynchronization) else None
    return ClockSync(SyncState.NOT_SYSTEM_CLOCK) if stated is None else stated
