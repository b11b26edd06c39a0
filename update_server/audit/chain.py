"""The audit chain, pure: how an entry is hashed and how a chain is checked.

Each entry's hash covers its sequence number, its fields and the previous
entry's hash, so editing, deleting, inserting or reordering any entry breaks
the chain at that entry or the one after it (R27, R28). Someone who can write
the database can recompute every hash after an edit; that is caught against
the signed checkpoints (``checkpoint.py``), and a truncated tail against the
head anchored outside the database (``anchor.py``), which the walk checks as
it passes their sequence numbers. No I/O here.

Invariants:

* sequence numbers start at 1 and have no gaps; entry 1 follows ``GENESIS``;
* the hash of an entry depends only on text that reads back identically from
  SQLite (naive datetimes) and PostgreSQL (aware ones): ``canonical_time``;
* the walk keeps O(1) state, so a log of any length is checked streaming.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

GENESIS = "0" * 64


class Outcome(StrEnum):
    """How an audited action ended: the ``outcome`` field's fixed vocabulary."""

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    #: R25: the right one-time code of a step already passed. It leaked (or
    #: was seen in use): its own outcome, so that a search finds every one.
    REPLAY = "replay"


OUTCOMES = frozenset(outcome.value for outcome in Outcome)


@dataclass(frozen=True, kw_only=True)
class Event:
    """What happened, who did it, from where (before it is chained).

    ``detail`` must never hold a secret (password, OTP code, PIN, session
    token, key material): it is stored, exported and sent to syslog.
    """

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
    """What ``verify_chain`` reads of a stored entry (a row or an ``EntryRecord``)."""

    @property
    def seq(self) -> int: ...
    @property
    def time(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def prev_hash(self) -> str: ...
    @property
    def hash(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class EntryRecord:
    """A chained entry detached from any database session (export, syslog)."""

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

    @classmethod
    def of(cls, entry: ChainedEntry) -> EntryRecord:
        return cls(
            seq=entry.seq,
            time=entry.time,
            prev_hash=entry.prev_hash,
            hash=entry.hash,
            **stored_fields(entry),
        )


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


def parse_canonical_time(text: str) -> datetime:
    """The inverse of ``canonical_time``; refuses any other spelling."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    if canonical_time(moment) != text:
        raise ValueError(f"{text!r} is not a canonical audit time")
    return moment


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


class ChainBrokenError(Exception):
    """The chain is not intact at ``seq``; ``reason`` says how."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class ChainWalk:
    """Checks entries one at a time, in sequence order, in constant memory.

    After each successful ``step`` the walk's ``head_seq``/``head_hash`` are
    those of a chain proven intact from entry 1; ``step`` raises
    ``ChainBrokenError`` naming the first bad sequence number.
    """

    def __init__(self) -> None:
        self.head_seq = 0
        self.head_hash = GENESIS
        self._before_head = GENESIS

    def step(self, entry: ChainedEntry) -> None:
        expected = self.head_seq + 1
        if entry.seq != expected:
            raise ChainBrokenError(
                expected,
                f"expected entry {expected} but found entry {entry.seq}: "
                "an entry was deleted, inserted or moved",
            )
        if entry.prev_hash != self.head_hash:
            self._refuse_unlinked(entry)
        computed = entry_hash(
            seq=entry.seq, prev_hash=self.head_hash, time=entry.time, fields=stored_fields(entry)
        )
        if computed != entry.hash:
            raise ChainBrokenError(entry.seq, "content altered: its hash does not match")
        self._before_head, self.head_seq, self.head_hash = self.head_hash, entry.seq, entry.hash

    def _refuse_unlinked(self, entry: ChainedEntry) -> None:
        """Name the culprit of a broken link: an inserted head, or this entry."""
        was_head = entry.prev_hash == self._before_head and entry.hash == entry_hash(
            seq=entry.seq - 1,
            prev_hash=entry.prev_hash,
            time=entry.time,
            fields=stored_fields(entry),
        )
        if was_head:  # the entry was written as the head's number: the head was inserted
            inserted = self.head_seq
            self.head_seq, self.head_hash = inserted - 1, self._before_head
            raise ChainBrokenError(
                inserted,
                f"inserted: entry {inserted} was never in the chain "
                f"(entry {entry.seq} was written as entry {inserted})",
            )
        raise ChainBrokenError(
            entry.seq,
            f"does not follow entry {entry.seq - 1}: "
            "an entry before it was inserted, removed or rewritten",
        )


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

    ``checkpoint`` (seq, hash) is a head, already known to be genuine, that
    the chain must still contain: a chain that stops before it has lost its
    tail. (Signed checkpoints are checked by ``checkpoint.verify_log``.)
    """
    walk = ChainWalk()
    cp_seq, cp_hash = checkpoint if checkpoint is not None else (0, GENESIS)
    try:
        for entry in entries:
            walk.step(entry)
            if entry.seq == cp_seq:
                _holds(entry, cp_hash)
    except ChainBrokenError as exc:
        return ChainReport(walk.head_seq, walk.head_seq, walk.head_hash, exc.seq, exc.reason)
    if cp_seq > walk.head_seq:
        reason = f"log truncated: it ends at {walk.head_seq}, the checkpoint covers {cp_seq}"
        return ChainReport(walk.head_seq, walk.head_seq, walk.head_hash, walk.head_seq + 1, reason)
    return ChainReport(walk.head_seq, walk.head_seq, walk.head_hash)


def _holds(entry: ChainedEntry, head_hash: str) -> None:
    if entry.hash != head_hash:
        raise ChainBrokenError(1, f"rewritten: entry {entry.seq} differs from the checkpoint")
