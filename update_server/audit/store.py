"""Appending to the audit log in the database, inside the caller's transaction.

The entry is written in the same transaction as the action it records, so
the two commit together or not at all: if the entry cannot be written, the
action is refused (issue: "If an audit entry cannot be written, the action
it records is refused"). Appends are serialised (SQLite: BEGIN IMMEDIATE;
PostgreSQL: a table lock) so sequence numbers have no gaps or forks.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from update_server.audit.chain import GENESIS, Event, entry_hash, event_fields
from update_server.models import AuditEntry


def append(session: Session, event: Event) -> AuditEntry:
    """Chain ``event`` after the current head; flushes, does not commit."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))
    head = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    fields = event_fields(event)
    entry = AuditEntry(
        seq=seq,
        time=event.time,
        prev_hash=prev,
        hash=entry_hash(seq=seq, prev_hash=prev, time=event.time, fields=fields),
        **fields,
    )
    session.add(entry)
    session.flush()
    return entry


def count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(AuditEntry)).scalar_one())
