"""The audit chain, pure: how an entry is hashed and how a chain is checked.

Each entry's hash covers its sequence number, its fields and the previous
entry's hash, so editing, deleting, inserting or reordering any entry breaks
every hash after it (R27, R28). A truncated tail leaves a valid shorter
chain: it is caught against the last signed checkpoint, which ``verify``
takes as ``head``. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

GENESIS = "0" * 64
OUTCOMES = frozenset({"success", "failure", "refused"})


@dataclass(frozen=True, kw_only=True)
class Event:
    """What happened, who did it, from where (before it is chained)."""

    time: datetime
    actor: str
    role: str
    action: str
    object: str
    outcome: str
    source: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        if self.time.tzinfo is None:
            raise ValueError("audit time must be timezone-aware (UTC)")


class ChainedEntry(Protocol):
    """What ``verify_chain`` reads of a stored entry."""

    seq: int
    time: datetime
    actor: str
    role: str
    action: str
    object: str
    outcome: str
    source: str
    detail: str
    prev_hash: str
    hash: str


def detail_json(detail: Mapping[str, Any]) -> str:
    """The canonical text of ``detail`` as stored (sorted keys, no spaces)."""
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_time(time: datetime) -> str:
    """UTC, microseconds, 'Z': the same text whatever the database gave back.

    SQLite returns naive datetimes (stored as UTC); PostgreSQL aware ones.
    """
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(*, seq: int, prev_hash: str, time: datetime, fields: Mapping[str, str]) -> str:
    """SHA-256 over the canonical JSON of one entry and its predecessor's hash."""
    body = {"seq": seq, "prev": prev_hash, "time": canonical_time(time), **fields}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_fields(event: Event) -> dict[str, str]:
    return {
        "actor": event.actor,
        "role": event.role,
        "action": event.action,
        "object": event.object,
        "outcome": event.outcome,
        "source": event.source,
        "detail": detail_json(event.detail),
    }


def stored_fields(entry: ChainedEntry) -> dict[str, str]:
    return {
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "object": entry.object,
        "outcome": entry.outcome,
        "source": entry.source,
        "detail": entry.detail,
    }


@dataclass(frozen=True)
class ChainReport:
    """Result of a chain check: ``first_bad`` is None when the chain is intact."""

    entries: int
    head_seq: int
    head_hash: str
    first_bad: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def verify_chain(
    entries: Iterable[ChainedEntry], *, checkpoint: tuple[int, str] | None = None
) -> ChainReport:
    """Check entries in sequence order; name the first bad sequence number.

    ``checkpoint`` (seq, hash) is a signed head the chain must still contain:
    a chain that stops before it has lost its tail.
    """
    expected_seq, prev, count = 1, GENESIS, 0
    seen: dict[int, str] = {}
    for entry in entries:
        if entry.seq != expected_seq:
            kind = "missing (deleted)" if entry.seq > expected_seq else "out of order"
            return ChainReport(count, expected_seq - 1, prev, expected_seq, f"entry {kind}")
        if entry.prev_hash != prev:
            return ChainReport(count, entry.seq - 1, prev, entry.seq, "previous hash differs")
        computed = entry_hash(
            seq=entry.seq, prev_hash=prev, time=entry.time, fields=stored_fields(entry)
        )
        if computed != entry.hash:
            return ChainReport(count, entry.seq - 1, prev, entry.seq, "entry content altered")
        seen[entry.seq] = entry.hash
        prev, expected_seq, count = entry.hash, expected_seq + 1, count + 1
    if checkpoint is not None:
        seq, head = checkpoint
        if seq >= expected_seq:
            return ChainReport(count, expected_seq - 1, prev, expected_seq, "log truncated")
        if seen.get(seq) != head:
            return ChainReport(count, expected_seq - 1, prev, seq, "differs from checkpoint")
    return ChainReport(count, expected_seq - 1, prev)
