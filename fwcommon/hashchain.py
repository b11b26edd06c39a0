"""The hash chain every append-only log here is built on (pure: no I/O).

The server's audit log, the device's event log and the token's usage log
each store their entries their own way; what makes them tamper-evident is
this one chain (R27, R28). Entry ``n``'s digest is the SHA-256 of the
canonical bytes of ``{"seq": n, "prev": <entry n-1's digest>, **body}``,
entry 1 following ``GENESIS``. So editing, deleting, inserting or
reordering an entry breaks the chain at that entry or the one after it.

The logs differ only in the canonical form of those bytes, which each names
(``canonical=``): the audit and event logs use ``compact_json``, the usage
log TUF's canonical JSON (its entries have always been hashed that way; a
different form would break every existing chain).

Invariants:

* sequence numbers are integers (never booleans) that grow by exactly 1;
* a body never holds ``seq`` or ``prev`` itself: the digest adds them;
* ``ChainWalker`` keeps O(1) state, so a log of any length is checked as a
  stream, and it raises ``ChainBreakError`` naming the first bad sequence
  number and how the chain broke there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

#: The digest entry 1 follows: no entry before it.
GENESIS: Final = "0" * 64

#: How a log turns ``{"seq", "prev", **body}`` into the bytes it hashes; it
#: raises ``ValueError`` for a document it has no form for (read back, such
#: an entry is one the log never wrote: the walker reports it altered).
Canonical = Callable[[Mapping[str, Any]], bytes]


def compact_json(document: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, non-ASCII escaped: the audit and event logs' form."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_digest(*, seq: int, prev: str, body: Mapping[str, Any], canonical: Canonical) -> str:
    """The digest of entry ``seq`` holding ``body`` after the entry whose digest is ``prev``."""
    if "seq" in body or "prev" in body:
        raise ValueError("an entry's body must not hold 'seq' or 'prev': the digest adds them")
    return hashlib.sha256(canonical({"seq": seq, "prev": prev, **body})).hexdigest()


def bytes_digest(data: bytes) -> str:
    """The digest a log chains on from when it holds bytes that are not an entry (damage)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Link:
    """One point of a chain: entry ``seq`` and its digest (``seq`` 0: ``GENESIS``)."""

    seq: int
    digest: str


START: Final = Link(0, GENESIS)


class Break(StrEnum):
    """How a chain broke at an entry."""

    #: The entry is not the next number: one was deleted, inserted or moved.
    SEQUENCE = "sequence"
    #: The entry does not name the digest of the entry before it.
    LINK = "link"
    #: The entry's content does not match its digest: it was altered.
    DIGEST = "digest"


_WHY = {
    Break.SEQUENCE: "missing or out of order",
    Break.LINK: "does not follow the entry before it",
    Break.DIGEST: "altered: its digest does not match its content",
}


class ChainBreakError(Exception):
    """The chain is broken at ``seq``; ``kind`` says how."""

    def __init__(self, seq: int, kind: Break) -> None:
        super().__init__(f"entry {seq}: {_WHY[kind]}")
        self.seq = seq
        self.kind = kind


@dataclass(frozen=True)
class Entry:
    """An entry as read back, for the walker: its number, links and the body it hashes.

    ``seq``, ``prev`` and ``digest`` are what the stored entry claims, of
    any type (a damaged file may hold anything): the walker checks them.
    """

    seq: object
    prev: object
    digest: object
    body: Mapping[str, Any]


class ChainWalker:
    """Checks entries fed one at a time, in order, in constant memory.

    ``head`` is the last entry proven to follow ``start`` (``START`` for a
    whole log; a later link for a log whose older entries were rotated
    out), ``before`` the link before it.
    """

    def __init__(self, *, canonical: Canonical, start: Link = START) -> None:
        self._canonical = canonical
        self.head = start
        self.before = start

    def step(self, entry: Entry) -> Link:
        """Accept ``entry`` as the next one; return the new head, or raise ``ChainBreakError``."""
        expected = self.head.seq + 1
        if type(entry.seq) is not int or entry.seq != expected:  # JSON: not true, not 1.0
            raise ChainBreakError(expected, Break.SEQUENCE)
        if entry.prev != self.head.digest:
            raise ChainBreakError(expected, Break.LINK)
        try:
            computed = entry_digest(
                seq=expected, prev=self.head.digest, body=entry.body, canonical=self._canonical
            )
        except ValueError:  # a value the log never writes: the entry was altered
            raise ChainBreakError(expected, Break.DIGEST) from None
        if computed != entry.digest:
            raise ChainBreakError(expected, Break.DIGEST)
        self.before, self.head = self.head, Link(expected, computed)
        return self.head


def verify_chain(entries: Iterable[Entry], *, canonical: Canonical, start: Link = START) -> Link:
    """Walk ``entries`` from ``start``; return the head, or raise ``ChainBreakError``."""
    walker = ChainWalker(canonical=canonical, start=start)
    for entry in entries:
        walker.step(entry)
    return walker.head
