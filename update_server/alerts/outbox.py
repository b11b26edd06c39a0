"""The alert outbox: written with the audit entry, claimed and settled by the workers (R31).

Rules:

* O1 ``enqueue`` runs in the transaction that appends the audit entry
  (``alerting``, the audit sink's ``appended`` hook): a critical entry gets
  one row per configured webhook, or the append (and the action) fails with
  it. A rolled-back action leaves no row; a committed one has all of its
  rows, whatever happens to the process after the commit.
* O2 The body is made once, at enqueue, and every attempt sends the same
  bytes (only the signature's timestamp changes).
* O3 ``claim`` hands a due row to one worker at a time: on PostgreSQL the
  row is locked ``FOR UPDATE SKIP LOCKED`` (another worker skips it, never
  waits); on SQLite every transaction begins IMMEDIATE, so claims are
  serialised. Either way the claim is a lease (``claimed_until``), so a
  worker that dies mid-delivery only delays the row until it lapses.
* O4 ``settle`` writes the answer only if the row is still this worker's
  claim: a row delivered (2xx) is never retried; a failed attempt is retried
  after ``retry.delay`` (exponential back-off, full jitter, capped).
* O5 Delivery is at least once (a 2xx lost on its way back is retried); a
  receiver that dedups on the alert id sees each alert exactly once.
* O6 ``prune`` deletes rows delivered more than ``DELIVERED_KEPT`` ago (the
  worker's watch, once a minute): the outbox holds what waits, not a second
  copy of the log. Undelivered rows stay until delivered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from update_server.alerts import retry
from update_server.alerts.critical import Classified, alert_id, classify, detail_of
from update_server.alerts.models import ERROR_LENGTH, AlertDelivery
from update_server.models import AuditEntry

#: An audit sink's ``appended`` hook.
Appended = Callable[[Session, AuditEntry], None]


def alerting(appended: Appended | None, webhooks: Collection[str]) -> Appended | None:
    """``appended``, then O1's enqueue for ``webhooks``; just ``appended`` without webhooks."""
    names = tuple(webhooks)
    if not names:
        return appended

    def both(session: Session, entry: AuditEntry) -> None:
        if appended is not None:
            appended(session, entry)
        enqueue(session, entry, webhooks=names)

    return both


def enqueue(session: Session, entry: AuditEntry, *, webhooks: Iterable[str]) -> Classified | None:
    """O1: the alert of ``entry`` for each of ``webhooks``, if the entry is critical."""
    detail = detail_of(entry.detail)
    classified = classify(entry.action, entry.outcome, detail)
    if classified is None:
        return None
    body = payload(entry, classified, detail)
    due = entry.time.astimezone(UTC)
    for webhook in webhooks:
        session.add(
            AlertDelivery(
                alert_id=alert_id(entry.seq, entry.hash),
                webhook=webhook,
                seq=entry.seq,
                alert_class=classified.alert_class.value,
                payload=body,
                created_at=due,
                attempts=0,
                next_attempt_at=due,
            )
        )
    session.flush()
    return classified


def payload(entry: AuditEntry, classified: Classified, detail: dict[str, Any]) -> str:
    """O2: the JSON body of the alert (compact, keys sorted)."""
    document = {
        "id": alert_id(entry.seq, entry.hash),
        "class": classified.alert_class.value,
        "classes": [alert.value for alert in classified.classes],
        "severity": classified.severity.name.lower(),
        "severity_code": int(classified.severity),
        "time": _utc_text(entry.time),
        "detail": detail,
        # The whole entry as stored (detail as its JSON text): a receiver can
        # check its hash against the chain (``fwserver audit verify``).
        "audit": {
            column.key: _utc_text(entry.time)
            if column.key == "time"
            else getattr(entry, column.key)
            for column in AuditEntry.__table__.columns
        },
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Claimed:
    """A row a worker holds (O3), detached from its session."""

    id: int
    alert_id: str
    webhook: str
    body: bytes
    attempts: int


def claim(
    session: Session,
    *,
    worker: str,
    now: datetime,
    lease: timedelta,
    webhooks: Collection[str],
) -> Claimed | None:
    """O3: the most overdue undelivered row of ``webhooks``, now ``worker``'s; None if none."""
    due = (
        select(AlertDelivery)
        .where(
            AlertDelivery.delivered_at.is_(None),
            AlertDelivery.next_attempt_at <= now,
            AlertDelivery.webhook.in_(list(webhooks)),
            or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until <= now),
        )
        .order_by(AlertDelivery.next_attempt_at, AlertDelivery.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    row = session.scalars(due).first()
    if row is None:
        return None
    row.claimed_by = worker
    row.claimed_until = now + lease
    session.flush()
    return Claimed(row.id, row.alert_id, row.webhook, row.payload.encode(), row.attempts)


def settle(
    session: Session,
    claimed: Claimed,
    *,
    worker: str,
    now: datetime,
    error: str | None,
    policy: retry.RetryPolicy,
    rng: Random,
) -> bool:
    """O4: record one attempt (``error`` None: the receiver answered 2xx).

    Returns False when the claim was lost meanwhile (the lease lapsed and
    another worker took the row): nothing is written then.
    """
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "claimed_by": None,
        "claimed_until": None,
    }
    if error is None:
        values["delivered_at"] = now
        values["last_error"] = None
    else:
        values["last_error"] = error[:ERROR_LENGTH]
        values["next_attempt_at"] = now + retry.delay(attempts, policy=policy, rng=rng)
    mine = (AlertDelivery.id == claimed.id) & (AlertDelivery.claimed_by == worker)
    done = session.execute(update(AlertDelivery).where(mine).values(**values))
    return bool(getattr(done, "rowcount", 0))


@dataclass(frozen=True)
class WebhookBacklog:
    """What one webhook has not received yet."""

    webhook: str
    undelivered: int
    #: When the oldest undelivered alert was raised (None: nothing waits).
    oldest: datetime | None
    oldest_age_seconds: float | None
    #: What the webhook's last attempt met (None: it was answered 2xx, or none was made).
    last_error: str | None
    last_attempt_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "webhook": self.webhook,
            "undelivered": self.undelivered,
            "oldest": None if self.oldest is None else _utc_text(self.oldest),
            "oldest_age_seconds": self.oldest_age_seconds,
            "last_error": self.last_error,
            "last_attempt_at": None
            if self.last_attempt_at is None
            else _utc_text(self.last_attempt_at),
        }


@dataclass(frozen=True)
class Backlog:
    """The alert delivery backlog (R38: the status shows it), per webhook."""

    webhooks: tuple[WebhookBacklog, ...]

    @property
    def undelivered(self) -> int:
        return sum(hook.undelivered for hook in self.webhooks)

    def to_json(self) -> dict[str, Any]:
        return {
            "undelivered": self.undelivered,
            "webhooks": [hook.to_json() for hook in self.webhooks],
        }


#: O6: how long a delivered row is kept (for the alerts page's delivery column).
DELIVERED_KEPT = timedelta(days=30)


def prune(session: Session, *, now: datetime, keep: timedelta) -> int:
    """O6: delete the rows delivered more than ``keep`` ago; how many.

    A delivered row has done its work: the alert itself stays in the audit
    log (its entry is the alert). Undelivered rows are never pruned.
    """
    result = session.execute(
        delete(AlertDelivery).where(
            AlertDelivery.delivered_at.is_not(None), AlertDelivery.delivered_at < now - keep
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def backlog(session: Session, *, webhooks: Iterable[str], now: datetime) -> Backlog:
    """Undelivered alerts per webhook: the configured ones (even with none
    waiting), and any other that still has rows (a webhook removed from the
    configuration: its rows wait, undelivered, until it is back)."""
    pending = AlertDelivery.delivered_at.is_(None)
    counts = {
        str(name): (int(count), oldest)
        for name, count, oldest in session.execute(
            select(AlertDelivery.webhook, func.count(), func.min(AlertDelivery.created_at))
            .where(pending)
            .group_by(AlertDelivery.webhook)
        )
    }
    names = list(dict.fromkeys([*webhooks, *sorted(counts)]))
    return Backlog(tuple(_webhook_backlog(session, name, counts.get(name), now) for name in names))


def _webhook_backlog(
    session: Session, name: str, count: tuple[int, datetime | None] | None, now: datetime
) -> WebhookBacklog:
    undelivered, oldest = count or (0, None)
    last = session.execute(
        select(AlertDelivery.last_error, AlertDelivery.last_attempt_at)
        .where(AlertDelivery.webhook == name, AlertDelivery.last_attempt_at.is_not(None))
        .order_by(AlertDelivery.last_attempt_at.desc(), AlertDelivery.id.desc())
        .limit(1)
    ).first()
    oldest = None if oldest is None else _aware(oldest)
    return WebhookBacklog(
        webhook=name,
        undelivered=undelivered,
        oldest=oldest,
        oldest_age_seconds=None if oldest is None else max(0.0, (now - oldest).total_seconds()),
        last_error=None if last is None else last[0],
        last_attempt_at=None if last is None or last[1] is None else _aware(last[1]),
    )


def _utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and 'Z', as the audit log writes times."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
