"""The alerts page, nested in the ``web`` blueprint: recent alerts and their delivery (R31).

Rules:

AL1 Auditors and security officers read it (the audit log's readers); the
    read is audited (``audit.read``, object ``alerts``), as any read of the log.
AL2 An alert is an audit entry that ``alerts.critical.classify`` calls
    critical (the one table, A1-A2): the page reads the entries of the
    actions that table names (and any replayed code), newest first, and
    classifies each; it shows ``PAGE`` alerts at most and reads ``SCAN``
    entries at most per page, then links to the older ones.
AL3 Each alert shows its class, the other classes it matched, its severity
    and, per webhook, its delivery from the outbox: delivered when, or
    waiting (attempts, next attempt, last error); an alert raised before a
    webhook was configured has no row for it and says so. The backlog per
    webhook is ``alerts.backlog``'s, as the status shows it (R38).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, current_app, g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import or_, select

from update_server.access import allow
from update_server.alerts import backlog
from update_server.alerts.critical import (
    REPLAY_OUTCOME,
    RULES,
    Classified,
    alert_id,
    classify,
    detail_of,
)
from update_server.alerts.models import AlertDelivery
from update_server.app import Services
from update_server.audit.actions import Action
from update_server.audit.recording import record, request_event
from update_server.audit.views import READERS
from update_server.errors import BadRequestError
from update_server.models import AuditEntry
from update_server.web.forms import ActionForm

blueprint = Blueprint("alerts", __name__, url_prefix="/alerts")

PAGE = 25
#: AL2: the most entries one page reads, in batches of ``BATCH``.
SCAN, BATCH = 2000, 200
#: AL2: the actions the table names (any other action never alerts).
ALERTING_ACTIONS = frozenset(rule.action for rule in RULES)
MAX_SEQ = 2**62
#: An alert found: its entry and what ``classify`` said of it.
Found = tuple[AuditEntry, Classified]


@dataclass(frozen=True)
class Alert:
    """AL2, AL3: one critical entry, its classes and its rows in the outbox by webhook."""

    entry: AuditEntry
    classified: Classified
    deliveries: dict[str, AlertDelivery]

    @property
    def id(self) -> str:
        return alert_id(self.entry.seq, self.entry.hash)


@dataclass(frozen=True)
class Scan:
    """AL2: the alerts found, and the entry to read on from (None: the log's start)."""

    alerts: list[Found]
    older_than: int | None


def scan(entries: list[AuditEntry], *, page: int) -> tuple[list[Found], int | None]:
    """AL2 over one batch (newest first): the alerts, and the last entry read if ``page`` filled."""
    found: list[Found] = []
    for entry in entries:
        classified = classify(entry.action, entry.outcome, detail_of(entry.detail))
        if classified is not None:
            found.append((entry, classified))
            if len(found) == page:
                return found, entry.seq
    return found, None


def recent(*, before: int | None) -> Scan:
    """AL2: up to ``PAGE`` alerts older than ``before``, reading ``SCAN`` entries at most."""
    candidates = or_(AuditEntry.action.in_(ALERTING_ACTIONS), AuditEntry.outcome == REPLAY_OUTCOME)
    alerts: list[Found] = []
    cursor, read = before, 0
    while read < SCAN:
        query = select(AuditEntry).where(candidates)
        if cursor is not None:
            query = query.where(AuditEntry.seq < cursor)
        batch = list(g.db.scalars(query.order_by(AuditEntry.seq.desc()).limit(BATCH)))
        found, stopped_at = scan(batch, page=PAGE - len(alerts))
        alerts += found
        if stopped_at is not None:
            return Scan(alerts, stopped_at)
        if len(batch) < BATCH:
            return Scan(alerts, None)
        cursor, read = batch[-1].seq, read + len(batch)
    return Scan(alerts, cursor)


def deliveries(seqs: list[int]) -> dict[int, dict[str, AlertDelivery]]:
    """AL3: the outbox rows of these entries, by entry and webhook."""
    rows: dict[int, dict[str, AlertDelivery]] = defaultdict(dict)
    if seqs:
        for row in g.db.scalars(select(AlertDelivery).where(AlertDelivery.seq.in_(seqs))):
            rows[row.seq][row.webhook] = row
    return rows


@blueprint.get("")
@allow(*READERS)
def page() -> ResponseReturnValue:
    """AL1-AL3: the recent alerts, their delivery, the backlog per webhook."""
    before = _before(request.args.get("before", ""))
    services = _services()
    found = recent(before=before)
    rows = deliveries([entry.seq for entry, _ in found.alerts])
    alerts = [
        Alert(entry, classified, rows.get(entry.seq, {})) for entry, classified in found.alerts
    ]
    webhooks = [hook.name for hook in services.config.alert_webhooks]
    waiting = backlog(g.db, webhooks=webhooks, now=services.clock())
    detail = {"returned": len(alerts), **({"before": before} if before else {})}
    record(request_event(Action.AUDIT_READ, object="alerts", outcome="success", detail=detail))
    g.db.commit()
    older = url_for(".page", before=found.older_than) if found.older_than else None
    return render_template(
        "alerts.html",
        alerts=alerts,
        webhooks=list(dict.fromkeys([*webhooks, *(hook.webhook for hook in waiting.webhooks)])),
        backlog=waiting,
        older_url=older,
        paged=before is not None,
        shown=_shown,
        logout=ActionForm(),
    )


def _before(raw: str) -> int | None:
    text = raw.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) < 20) or not 1 <= int(text) <= MAX_SEQ:
        raise BadRequestError(f"before must be a sequence number from 1 to {MAX_SEQ}")
    return int(text)


def _shown(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
