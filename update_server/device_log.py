"""Does a device's report continue its event log's hash chain? (pure: no I/O)

A device reports the entries of its event log (``client.events``) that the
server has not acknowledged yet, exactly as the log stores them. The server
keeps only the head it last accepted for that device (seq and hash), and
decides here whether the report continues that chain (R27, R28, R38). So a
device's log gains an anchor outside the device: once an entry is accepted,
no later edit, deletion or second history on the device goes unseen.

Rules (each refusal is an alert the server shows; nothing of a refused
report is accepted):

* D1 (``Malformed``) A report is a list of entries; each is a JSON object
  with exactly the keys the device's log writes (``seq``, ``prev``,
  ``hash`` and the body ``EVENT_BODY``), ``seq`` a positive integer,
  ``prev`` and ``hash`` SHA-256 hex digests. An entry out of order or
  repeated inside the report is malformed too.
* D2 (``Oversized``) At most ``MAX_ENTRIES`` entries per report. A device
  with more to send sends the oldest first and the rest in the next
  reports (``client.report``); the server never holds an unbounded report.
* D3 (``Rewrite``) Each entry's hash is recomputed with
  ``fwcommon.hashchain`` exactly as the device computed it (compact JSON of
  ``{"seq", "prev", **body}``): an entry whose content does not match its
  hash was edited after the fact.
* D4 (``Gap``) The first entry is the one after the accepted head (or an
  earlier one, see D6), and each entry is the next number: a higher number
  means entries are missing (deleted on the device, or a damaged line the
  device's log skipped over).
* D5 (``Fork``) The first new entry names the accepted head's hash as its
  ``prev``, the entry at the head's seq (when the report repeats it) has the
  head's hash, and each entry names the hash of the one before it: anything
  else is a second history (entries replaced and re-hashed on the device).
* D6 (overlap, idempotent) A report may repeat entries already accepted (an
  acknowledgement lost on its way back): when it reaches the head, the
  chain proves the repeated ones are the accepted ones, and only the
  entries after the head are new. A report that ends before the head
  brings nothing new and is not compared (the server keeps only the head):
  the device then moves its acknowledged seq to the head, once it finds
  that entry, with that hash, in its own log.
* D7 (first report) With no head yet, the report is accepted from whatever
  seq it starts at (its first ``prev`` taken as given): the anchor begins
  there, and ``Continues.anchored_from`` says so, so the server can show
  that older entries were never seen by it.
* D8 A rotated log (``log_rotated``, older entries archived or deleted on
  the device) changes nothing here: the entries after a rotation still
  link to the ones before it, and the server needs only its head.

The rest of a report (``read_status``: what the device runs, as
``client.report.build_report`` sends it) is checked here too, bounded to
what the registry stores; ``answer`` is what the report route sends back,
which ``client.report`` reads: the head accepted, or the refusal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from fwcommon.hashchain import Break, ChainBreakError, ChainWalker, Entry, Link, compact_json

#: D2: entries one report may carry (the device sends fewer, ``client.report``).
MAX_ENTRIES: Final = 1000
#: What an event-log entry's hash covers besides its ``seq`` and ``prev``
#: (``client.events`` writes exactly these; a test checks both agree).
EVENT_BODY: Final = ("time", "type", "message", "detail")
_KEYS: Final = frozenset({"seq", "prev", "hash", *EVENT_BODY})
_DIGEST = re.compile(r"^[0-9a-f]{64}\Z")
#: Longest text of a reported field the server keeps (the registry's column widths).
TEXT: Final = 64
#: Longest reported message of the last update result.
MESSAGE: Final = 1024
_ROLES: Final = frozenset({"root", "timestamp", "snapshot", "targets"})
_BODY_TYPES: Final[Mapping[str, type]] = {
    "time": str,
    "type": str,
    "message": str,
    "detail": dict,
}


class Refusal(StrEnum):
    """Why a report does not continue the device's chain (each one an alert)."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    REWRITE = "rewrite"
    GAP = "gap"
    FORK = "fork"


@dataclass(frozen=True)
class Continues:
    """The report continues the chain; ``head`` is the head now accepted.

    ``new`` holds the entries after the previous head (none when the report
    only repeated accepted ones); ``anchored_from`` is the seq the anchor
    begins at when this was the device's first report (D7), else None.
    """

    head: Link | None
    new: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    anchored_from: int | None = None


@dataclass(frozen=True)
class Refused:
    """The report is refused: ``kind`` at entry ``seq`` (None: the report as a whole)."""

    kind: Refusal
    seq: int | None
    reason: str


Decision = Continues | Refused


def check_report(entries: object, *, head: Link | None) -> Decision:
    """Whether ``entries`` continue the chain whose accepted head is ``head`` (None: none yet)."""
    if not isinstance(entries, list):
        return Refused(Refusal.MALFORMED, None, "the report's entries are not a list")
    if len(entries) > MAX_ENTRIES:
        return Refused(
            Refusal.OVERSIZED,
            None,
            f"the report carries {len(entries)} entries, more than {MAX_ENTRIES}:"
            " the device sends them oldest first, in several reports",
        )
    for index, entry in enumerate(entries):
        if (problem := _malformed(entry)) is not None:
            return Refused(Refusal.MALFORMED, _seq_of(entry), f"entry {index + 1}: {problem}")
    if not entries:
        return Continues(head)
    return _walk(entries, head=head) or _against_head(entries, head=head)


def _malformed(entry: object) -> str | None:
    """What makes ``entry`` something the device's log never writes (D1), or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if set(entry) != _KEYS:
        return f"keys {sorted(entry)} are not the event log's {sorted(_KEYS)}"
    seq = entry["seq"]
    if type(seq) is not int or seq < 1:  # JSON: not true, not 1.0
        return f"seq {seq!r} is not a positive integer"
    for key in ("prev", "hash"):
        if not isinstance(entry[key], str) or not _DIGEST.match(entry[key]):
            return f"{key} is not a SHA-256 hex digest"
    for key, kind in _BODY_TYPES.items():
        if not isinstance(entry[key], kind):
            return f"{key} is not a {kind.__name__}"
    return None


def _seq_of(entry: object) -> int | None:
    seq = entry.get("seq") if isinstance(entry, dict) else None
    return seq if type(seq) is int else None


def _walk(entries: Sequence[Mapping[str, Any]], *, head: Link | None) -> Refused | None:
    """D3, D4, D5 inside the report (and D4 against ``head``): the first break, or None."""
    first = entries[0]["seq"]
    if head is not None and first > head.seq + 1:
        return Refused(
            Refusal.GAP,
            head.seq + 1,
            f"entries {head.seq + 1} to {first - 1} are missing: the report starts at"
            f" {first}, the last accepted entry is {head.seq}",
        )
    walker = ChainWalker(canonical=compact_json, start=Link(first - 1, entries[0]["prev"]))
    for entry in entries:
        body = {key: entry[key] for key in EVENT_BODY}
        try:
            walker.step(
                Entry(seq=entry["seq"], prev=entry["prev"], digest=entry["hash"], body=body)
            )
        except ChainBreakError as exc:
            return _inside(exc, entry["seq"])
    return None


def _inside(exc: ChainBreakError, seq: int) -> Refused:
    """The refusal for a break at entry ``exc.seq`` inside the report (``seq``: as sent)."""
    if exc.kind is Break.DIGEST:
        reason = f"entry {exc.seq} was altered: its hash does not match its content"
        return Refused(Refusal.REWRITE, exc.seq, reason)
    if exc.kind is Break.LINK:
        reason = (
            f"entry {exc.seq} does not follow entry {exc.seq - 1}: the report mixes two"
            " histories (an entry replaced and re-hashed)"
        )
        return Refused(Refusal.FORK, exc.seq, reason)
    if seq > exc.seq:
        reason = f"entries {exc.seq} to {seq - 1} are missing inside the report"
        return Refused(Refusal.GAP, exc.seq, reason)
    reason = f"entry {seq} comes after entry {exc.seq - 1}: out of order or repeated"
    return Refused(Refusal.MALFORMED, seq, reason)


def _against_head(entries: Sequence[Mapping[str, Any]], *, head: Link | None) -> Decision:
    """D5 to D7: the (internally sound) report against the accepted head."""
    first, last = entries[0]["seq"], entries[-1]["seq"]
    tip = Link(last, entries[-1]["hash"])
    if head is None:
        return Continues(tip, tuple(entries), anchored_from=first)
    if last < head.seq:  # D6: nothing new, and nothing to compare with
        return Continues(head)
    if first == head.seq + 1 and entries[0]["prev"] != head.digest:
        reason = f"entry {first} does not follow the accepted entry {head.seq}: a second history"
        return Refused(Refusal.FORK, first, reason)
    if first <= head.seq and entries[head.seq - first]["hash"] != head.digest:
        reason = f"entry {head.seq} is not the one accepted before: a second history"
        return Refused(Refusal.FORK, head.seq, reason)
    new = tuple(entry for entry in entries if entry["seq"] > head.seq)
    return Continues(tip, new)


class _InvalidError(Exception):
    """A report's status field is not what the device sends."""


@dataclass(frozen=True)
class ReportedStatus:
    """What a device says it runs (R38); None where it could not tell (damaged records)."""

    device_id: str
    hardware_model: str
    running_version: str | None
    slot: str | None
    security_floor: int | None
    mode: str | None
    #: Expiry (ISO 8601, as the metadata says) of each top-level role it holds.
    metadata_expires: Mapping[str, str | None]
    #: The last update result: event type, message and time, as its log says.
    last_type: str | None
    last_message: str | None
    last_time: str | None


def read_status(body: object) -> ReportedStatus | Refused:
    """The report's status fields, or ``Malformed`` naming the first wrong one."""
    if not isinstance(body, dict):
        return Refused(Refusal.MALFORMED, None, "the report is not a JSON object")
    try:
        last = _last_update(body.get("last_update"))
        return ReportedStatus(
            device_id=_text(body, "device_id", optional=False),
            hardware_model=_text(body, "hardware_model", optional=False),
            running_version=_text(body, "running_version"),
            slot=_choice(body, "slot", ("a", "b")),
            security_floor=_count(body, "security_floor"),
            mode=_text(body, "mode"),
            metadata_expires=_expiries(body.get("metadata_expires")),
            last_type=last.get("type"),
            last_message=last.get("message"),
            last_time=last.get("time"),
        )
    except _InvalidError as exc:
        return Refused(Refusal.MALFORMED, None, str(exc))


def _text(body: Mapping[str, Any], key: str, *, optional: bool = True, limit: int = TEXT) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise _InvalidError(f"{key} is not a text of 1 to {limit} characters")
    return value


def _choice(body: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(key)
    if value is not None and value not in allowed:
        raise _InvalidError(f"{key} is not one of {', '.join(allowed)}")
    return value


def _count(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (type(value) is not int or not 0 <= value < 2**31):
        raise _InvalidError(f"{key} is not a whole number from 0 to 2**31 - 1")
    return value


def _expiries(value: object) -> dict[str, str | None]:
    if not isinstance(value, dict) or not set(value) <= _ROLES:
        raise _InvalidError(f"metadata_expires is not an object of {sorted(_ROLES)}")
    return {role: _text(value, role) for role in sorted(value)}


def _last_update(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _InvalidError("last_update is not an object")
    return {
        "type": _text(value, "type", optional=False),
        "message": _message(value.get("message")),
        "time": _text(value, "time", optional=False),
    }


def _message(value: object) -> str:
    """A result's message, cut to ``MESSAGE`` characters (the whole one is in the entries)."""
    if not isinstance(value, str):
        raise _InvalidError("last_update.message is not a text")
    return value[:MESSAGE]


def answer(decision: Decision) -> dict[str, Any]:
    """What the report route sends back (``client.report`` reads it).

    ``{"acked_seq", "acked_hash"}`` for the head accepted (0 and null: none
    yet), or ``{"refused", "seq", "reason"}``: the device keeps its entries
    and reports them again.
    """
    if isinstance(decision, Refused):
        return {"refused": decision.kind.value, "seq": decision.seq, "reason": decision.reason}
    head = decision.head
    return {"acked_seq": head.seq if head else 0, "acked_hash": head.digest if head else None}
