"""The audit chain, pure: how an entry is hashed and how a chain is checked.

Each entry's hash covers its sequence number, its fields and the previous
entry's hash, so editing, deleting, inserting or reordering any entry breaks
the chain at that entry or the one after it (R27, R28). Someone who can write
the database can recompute every hash after an edit; that is caught against
the signed checkpoints (``checkpoint.py``), and a truncated tail against the
head anchored outside the database (``anchor.py``), which the walk checks as
it passes their sequence numbers. No I/O here.

The chain itself (genesis, digest, walk) is ``fwcommon.hashchain``'s, the
same as the device's event log and the token's usage log; this module says
what of an audit entry it covers: its time and ``vocabulary.FIELDS``.

Invariants:

* sequence numbers start at 1 and have no gaps; entry 1 follows ``GENESIS``;
* the hash of an entry depends only on text that reads back identically from
  SQLite (naive datetimes) and PostgreSQL (aware ones): ``canonical_time``;
* the walk keeps O(1) state, so a log of any length is checked streaming.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from fwcommon.hashchain import (
    GENESIS,
    Break,
    ChainBreakError,
    ChainWalker,
    Entry,
    compact_json,
    entry_digest,
)
from update_server.audit.vocabulary import FIELD_NAMES, OUTCOMES, Event, Outcome

__all__ = [
    "GENESIS",
    "OUTCOMES",
    "ChainBrokenError",
    "ChainReport",
    "ChainWalk",
    "ChainedEntry",
    "EntryRecord",
    "Event",
    "Outcome",
    "canonical_time",
    "detail_json",
    "entry_hash",
    "event_fields",
    "parse_canonical_time",
    "stored_fields",
    "verify_chain",
]


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
    return compact_json(detail).decode()


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


def _body(time: datetime, fields: Mapping[str, str]) -> dict[str, str]:
    """What an entry's hash covers besides its number and link: its time and ``FIELDS``."""
    return {"time": canonical_time(time), **fields}


def entry_hash(*, seq: int, prev_hash: str, time: datetime, fields: Mapping[str, str]) -> str:
    """The chain digest (``fwcommon.hashchain``, compact JSON) of one entry."""
    return entry_digest(seq=seq, prev=prev_hash, body=_body(time, fields), canonical=compact_json)


def event_fields(event: Event) -> dict[str, str]:
    """``FIELDS`` of ``event`` as stored: its detail as canonical JSON text."""
    fields = {name: getattr(event, name) for name in FIELD_NAMES}
    return {**fields, "detail": detail_json(event.detail)}


def stored_fields(entry: ChainedEntry) -> dict[str, str]:
    """``FIELDS`` of a stored entry, in order."""
    return {name: getattr(entry, name) for name in FIELD_NAMES}


def _entry(entry: ChainedEntry, *, seq: int | None = None) -> Entry:
    """``entry`` as the chain walker reads it (numbered ``seq`` if given)."""
    return Entry(
        seq=entry.seq if seq is None else seq,
        prev=entry.prev_hash,
        digest=entry.hash,
        body=_body(entry.time, stored_fields(entry)),
    )


class ChainBrokenError(Exception):
    """The chain is not intact at ``seq``; ``reason`` says how."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class ChainWalk:
    """Checks entries one at a time, in sequence order, in constant memory.

    The audit log's reading of ``fwcommon.hashchain.ChainWalker``: after
    each successful ``step`` the walk's ``head_seq``/``head_hash`` are those
    of a chain proven intact from entry 1; ``step`` raises
    ``ChainBrokenError`` naming the first bad sequence number and, for a
    broken link, whether the entry before was inserted.
    """

    def __init__(self) -> None:
        self._walker = ChainWalker(canonical=compact_json)
        self.head_seq = 0
        self.head_hash = GENESIS

    def step(self, entry: ChainedEntry) -> None:
        try:
            head = self._walker.step(_entry(entry))
        except ChainBreakError as exc:
            if exc.kind is Break.SEQUENCE:
                raise ChainBrokenError(
                    exc.seq,
                    f"expected entry {exc.seq} but found entry {entry.seq}: "
                    "an entry was deleted, inserted or moved",
                ) from None
            if exc.kind is Break.LINK:
                self._refuse_unlinked(entry)
            raise ChainBrokenError(exc.seq, "content altered: its hash does not match") from None
        self.head_seq, self.head_hash = head.seq, head.digest

    def _refuse_unlinked(self, entry: ChainedEntry) -> None:
        """Name the culprit of a broken link: an inserted head, or this entry."""
        before = self._walker.before
        try:  # was the entry written as the head's number, after the head's predecessor?
            ChainWalker(canonical=compact_json, start=before).step(
                _entry(entry, seq=before.seq + 1)
            )
        except ChainBreakError:
            raise ChainBrokenError(
                entry.seq,
                f"does not follow entry {entry.seq - 1}: "
                "an entry before it was inserted, removed or rewritten",
            ) from None
        inserted = self.head_seq  # the head was inserted: it was never in the chain
        self.head_seq, self.head_hash = before.seq, before.digest
        raise ChainBrokenError(
            inserted,
            f"inserted: entry {inserted} was never in the chain "
            f"(entry {entry.seq} was written as entry {inserted})",
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
