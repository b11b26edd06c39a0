"""Refusals that come in floods, audited in tallies: one entry per window, none lost (R27).

A refusal (a role refused a route, a request without a valid session, a
source over its login limit) must be audited with who, what, from where
and why; a flood of them must not become a flood of entries, and must not
be dropped either. The rules:

- C1: refusals are keyed by (action, actor, source, route, reason). The
  first refusal of a key opens a window of ``refusal_audit_window`` and is
  audited at once, with ``count`` 1: a single refusal is seen at once.
- C2: the refusals of that key after it, within the window, are counted in
  the database (``RefusalTally.later``), by every worker into one row.
- C3: once the window has ended, the count is audited as one entry (its
  ``count``, and when the window opened and the last refusal came) and the
  row deleted; by the next refusal of any key, or by ``flush``, which the
  access layer runs on every authenticated request and ``append_ended``
  runs without any traffic: on each tick of the renewal thread, and before
  ``fwserver audit export`` and ``verify`` read the log. The row is taken
  with one DELETE ... RETURNING, so two workers cannot both audit it.
- C4: the counts of a key's entries add up to its refusals: nothing is lost
  (a count not yet flushed is in the database, not in a worker's memory).
- C5: the source in a key is the source's network as the login throttle
  counts it (``throttle.source_key``: an IPv6 /64): the first refusal's
  entry names the address, the tally's entry the network.

This module returns the events to audit; the caller appends them in its
transaction (``audit.recording.record``; ``append_ended`` outside a
request), so they commit with the count.
Callers take their locks in one order: throttle rows, then tally rows
(``tally``, ``flush``), then the audit log (the append), so two requests
never wait on each other in a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from update_server.audit import Event, append
from update_server.audit.vocabulary import Actor, Outcome, audit_event
from update_server.auth.throttle import source_key
from update_server.models import RefusalTally


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """One refused request: who, what, from where, why; never a secret."""

    action: str
    actor: str
    role: str
    source: str
    #: What was refused, e.g. ``GET /api/v1/audit`` (the route's rule, not the path).
    route: str
    reason: str
    status: int
    now: datetime


def tally(db: Session, refusal: Refusal, *, window: timedelta) -> list[Event]:
    """Count ``refusal``; returns the events to audit now (C1-C3)."""
    due = flush(db, now=refusal.now, window=window)
    if _count(db, refusal, window):
        return due
    if _open(db, refusal) or not _count(db, refusal, window):
        # A new window; or, if the window a racing worker opened has closed
        # meanwhile, an entry of its own (C4).
        return [*due, _first_event(refusal)]
    return due


def flush(db: Session, *, now: datetime, window: timedelta) -> list[Event]:
    """Take every tally whose window has ended; the entries for those with a count (C3)."""
    taken = db.scalars(
        delete(RefusalTally)
        .where(RefusalTally.opened_at <= now - window)
        .returning(RefusalTally)
        .execution_options(synchronize_session=False)
    ).all()
    return [_tally_event(row, now) for row in taken if row.later > 0]


def append_ended(db: Session, *, now: datetime, window: timedelta) -> int:
    """Outside a request: append the entries of the ended windows (C3); the caller commits.

    ``db`` is a session of a factory bound like the server's
    (``audit.recording.bind_sessions``), so the entries are checkpointed and
    anchored like any. Returns how many entries were appended.
    """
    events = flush(db, now=now, window=window)
    for event in events:
        append(db, event)
    return len(events)


def any_ended(db: Session, *, now: datetime, window: timedelta) -> bool:
    """Whether a window with a count to audit has ended (a read: no lock, no write)."""
    ended = RefusalTally.opened_at <= now - window
    return bool(db.scalar(select(exists().where(ended, RefusalTally.later > 0))))


def _count(db: Session, refusal: Refusal, window: timedelta) -> bool:
    """Add ``refusal`` to its key's open window; False if none is open."""
    result = db.execute(
        update(RefusalTally)
        .where(*_key(refusal), RefusalTally.opened_at > refusal.now - window)
        .values(later=RefusalTally.later + 1, last_at=refusal.now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _open(db: Session, refusal: Refusal) -> bool:
    """Open a window for ``refusal``'s key; False if another worker just did."""
    try:
        with db.begin_nested():
            db.add(
                RefusalTally(
                    **_fields(refusal),
                    role=refusal.role[:32],
                    status=refusal.status,
                    opened_at=refusal.now,
                    last_at=refusal.now,
                    later=0,
                )
            )
            db.flush()
    except IntegrityError:
        return False
    return True


def _fields(refusal: Refusal) -> dict[str, str]:
    return {
        "action": refusal.action[:64],
        "actor": refusal.actor[:64],
        # C5: counted per source network as the login throttle counts (an IPv6
        # /64), or every address of one network would open a window, and an
        # audit entry with its signature, of its own.
        "source": source_key(refusal.source)[:64],
        "route": refusal.route[:255],
        "reason": refusal.reason[:64],
    }


def _key(refusal: Refusal) -> list[ColumnElement[bool]]:
    return [getattr(RefusalTally, name) == value for name, value in _fields(refusal).items()]


def _first_event(refusal: Refusal) -> Event:
    return audit_event(
        refusal.action,
        actor=Actor(refusal.actor, refusal.role, refusal.source),
        object=refusal.route,
        outcome=Outcome.REFUSED,
        time=refusal.now,
        detail={"status": refusal.status, "reason": refusal.reason, "count": 1},
    )


def _tally_event(row: RefusalTally, now: datetime) -> Event:
    return audit_event(
        row.action,
        actor=Actor(row.actor, row.role, row.source),
        object=row.route,
        outcome=Outcome.REFUSED,
        time=now,
        detail={
            "status": row.status,
            "reason": row.reason,
            "count": row.later,
            "window_opened": _iso(row.opened_at),
            "last": _iso(row.last_at),
        },
    )


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
