"""Appending to the audit log in the database, inside the caller's transaction.

The entry is written in the same transaction as the action it records, so
the two commit together or not at all: if the entry cannot be written, the
action is refused (R27, R28; ``recording.record`` turns the failure into a
503 for views). Appends are serialised (SQLite: the engine's BEGIN
IMMEDIATE; PostgreSQL: a table lock) so sequence numbers have no gaps or
forks.

What an append does beyond its row comes from the ``AuditSink`` bound to the
session factory (``bind``): sign a checkpoint when the append crosses a
cadence boundary (same transaction); once, and only once, the transaction
has committed, anchor its newest entry outside the database (``anchor.py``:
before the action is answered) and hand the entries to syslog (R31). A
session without a sink appends the row and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from update_server.audit.chain import GENESIS, EntryRecord, Event, entry_hash, event_fields
from update_server.audit.errors import AnchorError
from update_server.audit.vocabulary import FIELDS
from update_server.db import AFTER_COMMIT_ERROR
from update_server.models import AuditEntry

_SINK = "fw.audit.sink"
_PENDING = "fw.audit.pending"
READ_BATCH = 1000


class Anchor(Protocol):
    """Where the head is anchored outside the database (``anchor.HeadAnchor``)."""

    def holds(self, session: Session, committed: tuple[int, str] | None) -> bool:
        """In the append's transaction: whether the log still holds the anchored head.

        Anchors ``committed`` (the committed head, given at a transaction's
        first append) first if the anchor lags behind it; raises
        ``AnchorError`` if it cannot.
        """
        ...

    def advance(self, head: EntryRecord) -> None:
        """After the commit: sign and anchor ``head``; ``AnchorError`` if it cannot."""
        ...


@dataclass(frozen=True, kw_only=True)
class AuditSink:
    """What happens after an entry is flushed, and after its transaction commits.

    ``appended`` runs inside the append's transaction (the checkpoint
    cadence); it must raise only for a database failure, which refuses the
    action. After the commit, ``anchor`` anchors the newest committed entry
    (if the append found the anchored head still held), then ``committed``
    gets the new entries; neither may raise (syslog delivery is best effort,
    the database is the record).
    """

    appended: Callable[[Session, AuditEntry], None] | None = None
    committed: Callable[[Sequence[EntryRecord]], None] | None = None
    anchor: Anchor | None = None


@dataclass(frozen=True)
class _Pending:
    """An entry appended in the open transaction, for the after-commit hooks."""

    entry: AuditEntry
    record: EntryRecord
    anchorable: bool


def bind(factory: sessionmaker[Session], sink: AuditSink) -> None:
    """Every session ``factory`` makes from now on appends through ``sink``."""
    factory.configure(info={_SINK: sink})


def sink_of(session: Session) -> AuditSink | None:
    sink = session.info.get(_SINK)
    return sink if isinstance(sink, AuditSink) else None


def lock_log(session: Session) -> None:
    """Serialise writers of the log until this transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))


def head(session: Session) -> tuple[int, str]:
    """(seq, hash) of the newest entry, or (0, GENESIS) for an empty log."""
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def append(session: Session, event: Event) -> AuditEntry:
    """Chain ``event`` after the current head; flushes, does not commit.

    Text longer than its column is cut to fit and NUL characters become
    U+FFFD, so that hostile input (a 10 kB user name) cannot make the append,
    and with it the action's refusal, fail; the hash covers what is stored.
    """
    lock_log(session)
    committed = head(session)
    seq, prev = committed
    seq += 1
    time = event.time.astimezone(UTC)
    given = event_fields(event)
    fields = {spec.name: _fit(given[spec.name], spec.length) for spec in FIELDS}
    entry = AuditEntry(
        seq=seq,
        time=time,
        prev_hash=prev,
        hash=entry_hash(seq=seq, prev_hash=prev, time=time, fields=fields),
        **fields,
    )
    session.add(entry)
    session.flush()
    sink = sink_of(session)
    if sink is not None:
        if sink.appended is not None:
            sink.appended(session, entry)
        # The head before this transaction's first append is committed; a
        # later append's head is this transaction's own, not anchorable yet.
        before = None if session.info.get(_PENDING) else committed
        anchorable = sink.anchor is not None and sink.anchor.holds(session, before)
        pending = _Pending(entry, EntryRecord.of(entry), anchorable)
        session.info.setdefault(_PENDING, []).append(pending)
    return entry


def _fit(value: str, limit: int | None) -> str:
    value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit else value


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


def iter_entries(session: Session, *, after: int = 0) -> Generator[AuditEntry]:
    """Entries after ``after`` in sequence order, fetched in batches (constant memory).

    On PostgreSQL this is a server-side cursor: a caller that may stop early
    closes the iterator (``contextlib.closing``) to release it at once.
    """
    query = (
        select(AuditEntry)
        .where(AuditEntry.seq > after)
        .order_by(AuditEntry.seq)
        .execution_options(yield_per=READ_BATCH)
    )
    result = session.scalars(query)
    try:
        yield from result
    finally:
        result.close()


def page(session: Session, *, after: int, limit: int) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(limit)
    return list(session.scalars(query))


# R27/R28: the newest committed entry is anchored before the commit returns,
# so before the action is answered. R31: syslog gets an entry only once its
# transaction has committed, so a refused action is never reported as done.
# An entry appended inside a SAVEPOINT that was rolled back has left the
# session: it was never committed, and is neither anchored nor sent.
@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending: list[_Pending] = session.info.pop(_PENDING, [])
    committed = [item for item in pending if item.entry in session]
    sink = sink_of(session)
    if not committed or sink is None:
        return
    if sink.anchor is not None and committed[-1].anchorable:
        try:
            sink.anchor.advance(committed[-1].record)
        except AnchorError as exc:  # the commit stands; its caller must not answer "done"
            session.info[AFTER_COMMIT_ERROR] = exc
    if sink.committed is not None:
        sink.committed([item.record for item in committed])


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back or closed: nothing was committed
        session.info.pop(_PENDING, None)
