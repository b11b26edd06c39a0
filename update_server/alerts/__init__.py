"""Alerts (R31): critical audit entries, delivered to signed webhooks through a durable outbox.

``critical`` says which audit entries are alerts (one table) and how severe;
``outbox`` writes an alert's rows in the transaction of its audit entry and
hands them to the workers; ``worker`` is the daemon thread of each server
process that POSTs them (``delivery``), signed (``signing``), retried with
back-off (``retry``). Syslog gets every audit entry already; an alert's
severity shows there too (``audit.syslog``).

For the status (R38): ``backlog(db, webhooks=..., now=...)``.
"""

from update_server.alerts.critical import AlertClass, Severity, classify
from update_server.alerts.outbox import Backlog, WebhookBacklog, backlog

__all__ = ["AlertClass", "Backlog", "Severity", "WebhookBacklog", "backlog", "classify"]
