"""The token's hash-chained usage log (pure: no I/O, the clock is an argument).

Each entry is one line of compact JSON with sorted keys (ASCII)::

    {"event", "hash", "keyid", "label", "payload_sha256", "payload_type",
     "prev", "purpose", "seq", "time"}

Invariants:

* ``seq`` starts at 1 and grows by exactly 1; ``prev`` is the previous entry's
  ``hash`` (``GENESIS.hash`` for the first); ``hash`` is the chain digest
  (``fwcommon.hashchain``) of the entry without ``hash``, over TUF's canonical
  JSON (securesystemslib), as it always was. Editing, deleting, inserting or
  reordering entries therefore breaks the chain at a named ``seq``;
* the chain alone cannot show that its tail was cut off, so the token state
  keeps the head (last ``seq`` and ``hash``) and ``verify_chain`` checks the
  log ends exactly there. Someone able to rewrite both the log and the state
  file can still forge history: anchor heads elsewhere (the server's audit log)
  where that matters;
* events come from the fixed ``Event`` vocabulary. No PIN and no key material
  ever enters an entry; payloads appear only as their sha256.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical

from fwcommon import hashchain
from hsm_mock.errors import UsageLogError


class Event(StrEnum):
    """What a log entry records: token administration, signatures and refusals."""

    INIT = "init"
    GENERATE = "generate"
    SIGN = "sign"
    UNLOCK = "unlock"
    CHANGE_USER_PIN = "change-user-pin"
    CHANGE_SO_PIN = "change-so-pin"
    REFUSE_USER_PIN = "refuse-user-pin"
    REFUSE_SO_PIN = "refuse-so-pin"
    REFUSE_LOCKED = "refuse-locked"
    REFUSE_PURPOSE = "refuse-purpose"
    REFUSE_PAYLOAD = "refuse-payload"
    REFUSE_KEY_INTEGRITY = "refuse-key-integrity"


@dataclass(frozen=True)
class LogHead:
    """The last entry of a log: its ``seq`` and ``hash``."""

    seq: int
    hash: str


GENESIS = LogHead(0, hashchain.GENESIS)
_FIELDS = frozenset(
    {"event", "hash", "keyid", "label", "payload_sha256", "payload_type"}
    | {"prev", "purpose", "seq", "time"}
)
#: The fields the chain digest adds to an entry's body (``fwcommon.hashchain``).
_LINKS = frozenset({"seq", "prev", "hash"})


@dataclass(frozen=True)
class Record:
    """What happened, before it is placed in the chain."""

    event: Event
    label: str | None = None
    keyid: str | None = None
    purpose: str | None = None
    payload_type: str | None = None
    payload_sha256: str | None = None


def _canonical(document: Mapping[str, Any]) -> bytes:
    try:
        return str(encode_canonical(dict(document))).encode("utf-8")
    except FormatError as exc:  # e.g. a float: no entry this module writes holds one
        raise ValueError(f"no canonical JSON form: {exc}") from None


def _utc(now: datetime) -> str:
    if now.tzinfo is None:
        raise ValueError("the usage log clock must return timezone-aware datetimes")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def next_entry(head: LogHead, record: Record, *, now: datetime) -> tuple[bytes, LogHead]:
    """Return the line (with newline) that follows ``head``, and the new head."""
    body: dict[str, Any] = {
        "time": _utc(now),
        "event": record.event.value,
        "label": record.label,
        "keyid": record.keyid,
        "purpose": record.purpose,
        "payload_type": record.payload_type,
        "payload_sha256": record.payload_sha256,
    }
    seq = head.seq + 1
    digest = hashchain.entry_digest(seq=seq, prev=head.hash, body=body, canonical=_canonical)
    entry = {"seq": seq, "prev": head.hash, **body, "hash": digest}
    line = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return line.encode("ascii") + b"\n", LogHead(seq, digest)


def _parse(line: bytes, seq: int) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageLogError(f"usage log entry {seq} is not JSON", seq=seq) from exc
    if not isinstance(entry, dict) or set(entry) != _FIELDS:
        raise UsageLogError(f"usage log entry {seq} has unexpected fields", seq=seq)
    return entry


def _check(entry: dict[str, Any], walker: hashchain.ChainWalker) -> LogHead:
    seq = walker.head.seq + 1
    body = {name: value for name, value in entry.items() if name not in _LINKS}
    try:
        walker.step(hashchain.Entry(entry["seq"], entry["prev"], entry["hash"], body))
    except hashchain.ChainBreakError as exc:
        raise UsageLogError(_broken(exc.kind, seq, entry["seq"]), seq=seq) from None
    if entry["event"] not in set(Event):
        raise UsageLogError(_broken(hashchain.Break.DIGEST, seq, seq), seq=seq)
    return LogHead(walker.head.seq, walker.head.digest)


def _broken(kind: hashchain.Break, seq: int, found: object) -> str:
    if kind is hashchain.Break.SEQUENCE:
        return f"usage log entry {seq} missing or out of order (found seq {found!r})"
    if kind is hashchain.Break.LINK:
        return f"usage log entry {seq} does not chain to entry {seq - 1}"
    return f"usage log entry {seq} was altered (hash mismatch)"


def verify_chain(lines: Iterable[bytes], head: LogHead) -> LogHead:
    """Check every entry and that the log ends exactly at ``head``; return ``head``.

    Raises ``UsageLogError`` whose ``seq`` is the first sequence number at which
    the log differs from an intact one.
    """
    walker, current = hashchain.ChainWalker(canonical=_canonical), GENESIS
    for line in lines:
        seq = current.seq + 1
        if seq > head.seq:
            raise UsageLogError(
                f"usage log entry {seq} lies beyond the recorded head {head.seq} (inserted)",
                seq=seq,
            )
        current = _check(_parse(line, seq), walker)
        if seq == head.seq and current != head:
            raise UsageLogError(
                f"usage log entry {seq} differs from the recorded head (log rewritten)", seq=seq
            )
    if current.seq < head.seq:
        raise UsageLogError(
            f"usage log entries {current.seq + 1} to {head.seq} are missing (truncated)",
            seq=current.seq + 1,
        )
    return current
