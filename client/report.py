"""What a device reports to its server, and when (R37, R38).

A report says what the device runs (``client.boot.status``: device id,
model, running version, slot, security floor, mode, metadata expiries, last
update result) and carries the entries of its event log that the server has
not acknowledged yet, exactly as the log stores them, so the server can
check that they continue the chain it anchored (``update_server.device_log``).

Rules:

* W1 When: after every poll that changed something (anything but "no
  update"), and at least once a day (``should_report``).
* W2 The queue is the log itself: what the server acknowledged is kept in
  ``report.json`` (``acked_seq``, ``acked_hash``, ``last_report``), written
  atomically beside the log, outside the metadata cache (wiping the cache
  forgets nothing). A report carries the entries after ``acked_seq``,
  oldest first, at most ``MAX_ENTRIES`` and about ``MAX_ENTRY_BYTES`` of
  them (always at least one): the rest go in the next report, sent at once
  while the server keeps acknowledging (at most ``MAX_ROUNDS`` in a row,
  none begun after ``ROUND_SECONDS``).
  No second, unbounded queue exists; entries the log rotated out before
  they were reported are missing, and the server says so (a gap).
* W3 A device that cannot report keeps working: ``Reporter.report`` never
  raises. A failed send (the network, a timeout the ``send`` callable
  bounds, an answer that is not one) or a refusal by the server changes
  nothing here: the unsent entries stay in the log and the next report
  carries them. A refusal is logged (the server shows it as an alert).
* W4 An acknowledgement moves ``acked_seq`` only to an entry this log holds
  with exactly that hash: a server (or a network) that acknowledges
  something else moves nothing.

``report.json`` is written without the state directory's lock (a report
waits on the network, and must never hold up ``boot``): two reporters
racing can at worst write an older acknowledgement, and the next report
then repeats entries the server already has, which it accepts (idempotent).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from client.boot import status
from client.events import EventLog
from client.state import StateDir
from fwcommon.files import atomic_write

logger = logging.getLogger(__name__)

#: W2: entries one report carries (the server takes at most 1000).
MAX_ENTRIES: Final = 200
#: W2: bytes of entries (compact JSON) one report carries, so that a report
#: stays under the server's default request-body limit (64 KiB).
MAX_ENTRY_BYTES: Final = 40 * 1024
#: W2: reports sent back to back while more entries wait and the server acknowledges.
MAX_ROUNDS: Final = 10
#: W3: seconds after which a round sends no further report (each send has its own timeout).
ROUND_SECONDS: Final = 120.0
#: W1: the longest a device goes without reporting.
DAILY: Final = timedelta(days=1)
#: What the server answers, and the device sends: ``send(body) -> answer``.
Send = Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Acked:
    """What the server last acknowledged (``seq`` 0: nothing yet) and when it last answered."""

    seq: int = 0
    hash: str | None = None
    last_report: datetime | None = None


def should_report(now: datetime, last_report: datetime | None, *, changed: bool) -> bool:
    """W1: after a poll that changed something, when never reported, or once a day.

    A last report in the future (the clock was set back) is due too.
    """
    if changed or last_report is None:
        return True
    return not last_report <= now < last_report + DAILY


def report_file(state: StateDir) -> Path:
    """Where the acknowledgement lives: beside the log, outside ``metadata/``."""
    return state.root / "report.json"


def read_acked(state: StateDir) -> Acked:
    """The last acknowledgement; a missing or damaged file is none (everything is resent)."""
    file = report_file(state)
    try:
        acked = _acked(json.loads(file.read_text()))
    except FileNotFoundError:
        return Acked()
    except (OSError, ValueError) as exc:
        acked = None
        logger.warning("%s cannot be read (%s)", file, exc)
    if acked is None:
        logger.warning("%s is damaged: the next report resends the whole log", file)
        return Acked()
    return acked


def _acked(data: object) -> Acked | None:
    """``data`` as an acknowledgement, or None if it is not one."""
    if not isinstance(data, dict):
        return None
    seq, digest, last = data.get("acked_seq"), data.get("acked_hash"), data.get("last_report")
    if type(seq) is not int or seq < 0 or not isinstance(digest, str | None):
        return None
    if last is None:
        return Acked(seq, digest)
    moment = datetime.fromisoformat(last) if isinstance(last, str) else None
    if moment is None or moment.tzinfo is None:
        return None
    return Acked(seq, digest, moment)


def write_acked(state: StateDir, acked: Acked) -> None:
    last = acked.last_report.isoformat() if acked.last_report else None
    data = {"acked_seq": acked.seq, "acked_hash": acked.hash, "last_report": last}
    atomic_write(report_file(state), (json.dumps(data, sort_keys=True) + "\n").encode())


def unsent(
    log: EventLog, after: int, *, limit: int = MAX_ENTRIES, budget: int = MAX_ENTRY_BYTES
) -> tuple[list[dict[str, Any]], bool]:
    """W2: the entries after seq ``after``, oldest first, bounded; and whether more wait."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in log.entries():
        if entry["seq"] <= after:
            continue
        size += len(json.dumps(entry, separators=(",", ":")))
        if batch and (len(batch) >= limit or size > budget):
            return batch, True
        batch.append(entry)
    return batch, False


def build_report(
    state: StateDir, *, after: int, limit: int = MAX_ENTRIES, budget: int = MAX_ENTRY_BYTES
) -> dict[str, Any]:
    """The report: what the device runs, and its log's entries after seq ``after``."""
    now = status(state)
    entries, more = unsent(state.events, after, limit=limit, budget=budget)
    return {
        "device_id": now["device_id"],
        "hardware_model": now["hardware_model"],
        "running_version": now["running_version"],
        "installed_version": now["installed_version"],
        "slot": now["slot"],
        "security_floor": now["security_floor"],
        "mode": now["mode"],
        "pending": now["pending"],
        "metadata_expires": now["metadata_expires"],
        "last_update": now["last_update"],
        "damaged": now["damaged"],
        "entries": entries,
        "more": more,
    }


class Sent(StrEnum):
    """How a round of reports ended."""

    ACKNOWLEDGED = "acknowledged"  # everything sent was acknowledged
    REFUSED = "refused"  # the server refused a report (it shows the alert)
    FAILED = "failed"  # no answer, or not one: nothing changed, the next report retries


@dataclass(frozen=True)
class ReportResult:
    outcome: Sent
    message: str
    #: Reports answered in this round.
    reports: int = 0
    acked_seq: int = 0


class Reporter:
    """Sends a device's reports through ``send`` (W3: never raises)."""

    def __init__(
        self,
        state: StateDir,
        send: Send,
        *,
        limit: int = MAX_ENTRIES,
        budget: int = MAX_ENTRY_BYTES,
        rounds: int = MAX_ROUNDS,
        seconds: float = ROUND_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or budget < 1 or rounds < 1:
            raise ValueError("a report carries at least one entry, and a round sends one report")
        self.state = state
        self._send = send
        self._limit = limit
        self._budget = budget
        self._rounds = rounds
        self._seconds = seconds
        self._clock = clock

    def due(self, now: datetime, *, changed: bool) -> bool:
        return should_report(now, read_acked(self.state).last_report, changed=changed)

    def report(self, *, now: datetime) -> ReportResult:
        """Send reports until the log is acknowledged, refused, failed, or ``rounds`` are sent."""
        try:
            return self._rounds_of_reports(now)
        except Exception as exc:  # W3: reporting never stops the device
            logger.warning("report not sent: %s: %s", type(exc).__name__, exc, exc_info=True)
            return ReportResult(Sent.FAILED, f"report not sent: {type(exc).__name__}: {exc}")

    def _rounds_of_reports(self, now: datetime) -> ReportResult:
        acked = read_acked(self.state)
        start = self._clock()
        for sent in range(self._rounds):
            if sent and self._clock() - start > self._seconds:
                break
            body = build_report(self.state, after=acked.seq, limit=self._limit, budget=self._budget)
            answer = self._send(body)
            result = self._answered(answer, acked, body["entries"], now=now, sent=sent + 1)
            acked = read_acked(self.state)
            if result.outcome is not Sent.ACKNOWLEDGED or not body["more"]:
                return result
        return result  # more entries wait: the next report carries them

    def _answered(
        self,
        answer: Mapping[str, Any],
        acked: Acked,
        entries: list[dict[str, Any]],
        *,
        now: datetime,
        sent: int,
    ) -> ReportResult:
        """W3, W4: what the server's answer changes here."""
        seq, digest = answer.get("acked_seq"), answer.get("acked_hash")
        if seq == 0 and digest is None and type(seq) is int:  # the server holds nothing yet
            write_acked(self.state, Acked(0, None, now))
            return ReportResult(Sent.ACKNOWLEDGED, "nothing to acknowledge yet", sent, 0)
        if "refused" in answer:
            reason = str(answer.get("reason") or answer["refused"])
            logger.warning("the server refused the report: %s", reason)
            write_acked(self.state, Acked(acked.seq, acked.hash, now))
            return ReportResult(Sent.REFUSED, f"refused: {reason}", sent, acked.seq)
        if type(seq) is not int or not isinstance(digest, str):
            message = "the server's answer is neither an acknowledgement nor a refusal"
            logger.warning("%s", message)
            return ReportResult(Sent.FAILED, message, sent, acked.seq)
        if not _holds(self.state.events, entries, seq=seq, digest=digest):
            logger.warning(
                "the server acknowledged entry %d with a hash this log does not hold", seq
            )
            message = f"the server acknowledged entry {seq}, which this log does not hold"
            return ReportResult(Sent.FAILED, message, sent, acked.seq)
        write_acked(self.state, Acked(seq, digest, now))
        return ReportResult(Sent.ACKNOWLEDGED, f"acknowledged up to entry {seq}", sent, seq)


def _holds(log: EventLog, sent: Iterable[Mapping[str, Any]], *, seq: int, digest: str) -> bool:
    """W4: whether the log holds entry ``seq`` with hash ``digest`` (the sent entries first)."""
    for entries in (sent, log.entries()):
        for entry in entries:
            if entry["seq"] == seq:
                return bool(entry["hash"] == digest)
    return False
