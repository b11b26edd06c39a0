"""Every decision the client makes, as one JSON line in a hash-chained log.

The event ``type`` names its class (the vocabulary below is fixed), so a
technician, a SIEM or the manufacturer reads the same words; each line
carries the hash of the previous one, so an edited, deleted, inserted or
reordered line is detected by ``fwclient log verify`` (R27, R28 on the
device). Appends are fsynced before the decision they record takes effect.

Power loss: every append writes one whole line and is fsynced before the
next, so only the last line can be cut short (or filled with zeros by the
file system). Such a tail is not an entry: readers skip it, and the next
append cuts it off and records ``log_tail_repaired`` with the bytes dropped,
so the log keeps working and the loss is visible. Skipping it weakens
nothing: whoever can write the file can drop its last entries anyway.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_TAIL = 64 * 1024  # longer than any one line the client writes


class EventType(StrEnum):
    PROVISIONED = "provisioned"
    CHECKED = "checked"
    NO_UPDATE = "no_update"
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    UPDATED = "updated"
    ROLLED_BACK = "rolled_back"
    BOOTED = "booted"
    ROLLBACK_ATTACK = "rollback_attack"
    FREEZE_ATTACK = "freeze_attack"
    MIX_AND_MATCH = "mix_and_match"
    BAD_SIGNATURE = "bad_signature"
    BAD_HASH = "bad_hash"
    TOO_LONG = "too_long"
    SLOW_RETRIEVAL = "slow_retrieval"
    CLOCK_SKEW = "clock_skew"
    FIRMWARE_DOWNGRADE = "firmware_downgrade"
    HARDWARE_MISMATCH = "hardware_mismatch"
    INTEGRITY_FAILURE = "integrity_failure"
    FAILSAFE_ENTERED = "failsafe_entered"
    FAILSAFE_REFUSED = "failsafe_refused"
    FAILSAFE_LEFT = "failsafe_left"
    VERIFIED = "verified"
    HEALTH_CHECK_FAILED = "health_check_failed"
    #: A firmware that already failed its health check here is not installed again.
    KNOWN_BAD = "known_bad"
    UNREACHABLE = "unreachable"
    #: Temporary files of writes a power cut interrupted, removed at boot.
    LEFTOVERS_REMOVED = "leftovers_removed"
    #: The log's last line, cut short by a power loss, was removed.
    LOG_TAIL_REPAIRED = "log_tail_repaired"
    ERROR = "error"


@dataclass(frozen=True)
class LogReport:
    entries: int
    first_bad: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def _digest(seq: int, prev: str, body: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"seq": seq, "prev": prev, **body}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class EventLog:
    """An append-only JSON-lines file; each line chains to the one before."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _head(self) -> tuple[int, str]:
        """Sequence number and hash of the last whole line, read from the file's end."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with self.path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL))
            lines = handle.read().split(b"\n")[:-1]  # the last piece is a torn tail or b""
        whole = [line for line in lines if line.strip()]
        if not whole:
            return 0, GENESIS
        last = json.loads(whole[-1])
        return int(last["seq"]), str(last["hash"])

    def _cut_torn_tail(self) -> int:
        """Remove a last line a power loss cut short; return the bytes removed."""
        if not self.path.is_file():
            return 0
        with self.path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            start = max(0, size - _TAIL)
            handle.seek(start)
            tail = handle.read()
            if tail.endswith(b"\n"):
                return 0
            keep = start + tail.rfind(b"\n") + 1  # rfind gives -1 when no line ends: keep 0
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            return size - keep

    def append(
        self, event: EventType, message: str, *, now: datetime, **detail: Any
    ) -> dict[str, Any]:
        """Write one event durably (fsync) and return it."""
        dropped = self._cut_torn_tail()
        if dropped:
            self._write(
                EventType.LOG_TAIL_REPAIRED,
                f"the log's last line was cut short by a power loss; {dropped} byte(s) removed",
                now=now,
                detail={"bytes": dropped},
            )
        return self._write(event, message, now=now, detail=detail)

    def _write(
        self, event: EventType, message: str, *, now: datetime, detail: Mapping[str, Any]
    ) -> dict[str, Any]:
        seq, prev = self._head()
        body = {
            "time": now.astimezone(UTC).isoformat(),
            "type": event.value,
            "message": message,
            "detail": dict(detail),
        }
        entry = {"seq": seq + 1, **body, "prev": prev, "hash": _digest(seq + 1, prev, body)}
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every whole line (a torn last line is not an entry; see the module docstring)."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            for line in handle:
                if line.endswith(b"\n") and line.strip():
                    yield json.loads(line)

    def verify(self) -> LogReport:
        """Check the chain; name the first bad sequence number."""
        expected, prev, count = 1, GENESIS, 0
        try:
            for entry in self.entries():
                body = {k: entry.get(k) for k in ("time", "type", "message", "detail")}
                if entry.get("seq") != expected:
                    return LogReport(count, expected, "entry missing or out of order")
                if entry.get("prev") != prev or _digest(expected, prev, body) != entry.get("hash"):
                    return LogReport(count, expected, "entry altered")
                prev, expected, count = str(entry["hash"]), expected + 1, count + 1
        except (ValueError, KeyError, TypeError):
            return LogReport(count, expected, "line is not a log entry")
        return LogReport(count)

    def last(self, *types: EventType) -> dict[str, Any] | None:
        """The most recent event of one of ``types`` (any type if none given)."""
        wanted = {t.value for t in types}
        found = None
        for entry in self.entries():
            if not wanted or entry.get("type") in wanted:
                found = entry
        return found
