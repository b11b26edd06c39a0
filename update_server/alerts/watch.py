"""Alerts that no request raises: expiries coming (R31).

The alert worker of each server process (``worker``) calls ``coming`` and
``raise_new`` once a minute; what they find becomes an audit entry, which
``critical`` turns into an alert like any other (outbox, webhooks, syslog
severity). A renewal that fails is audited by the renewal thread itself
(``publication.renewal``), an alert too. The rules:

- K1 Signed metadata: a published role that ``observability.expiry`` calls
  critical (expired, or less than 12 h left: an offline role not signed
  again, an online one whose renewal is overdue) is an ``expiry.warning``
  entry for ``metadata:<role>:v<version>``.
- K2 TLS: a certificate served or chained to that ``tls.expiring`` lists
  (the served one 30 days ahead, the CA devices trust a year ahead) is an
  ``expiry.warning`` entry for ``tls:<role>:<SHA-256 fingerprint>``.
- K3 Each is raised once: once for a role's version, once for a
  certificate. The check and the entry are one transaction under the audit
  log's lock, so of several workers one raises it; a new version or a new
  certificate is a new item.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from update_server.app import Services
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.audit.store import lock_log
from update_server.audit.vocabulary import Outcome
from update_server.models import AuditEntry
from update_server.observability.expiry import Severity
from update_server.observability.status import metadata_status
from update_server.publication.repository import OnlineRepository
from update_server.tls import TlsError, expiring, served_tls

#: Who raises what nobody's action raised (the audit entry's actor).
WATCH_ACTOR = Actor("fwserver", "system", "")


@dataclass(frozen=True)
class Item:
    """One thing close to its expiry: the entry's ``what`` (K3's key) and its message."""

    what: str
    expires: datetime
    message: str


def coming(services: Services, *, now: datetime) -> list[Item]:
    """K1, K2: what is close to its expiry at ``now``."""
    repo = OnlineRepository(services.config.repository_dir, now=now)
    _, warnings = metadata_status(repo, services, now)
    found = [
        Item(f"metadata:{warning.role}:v{warning.version}", warning.expires, warning.message)
        for warning in warnings
        if warning.severity is Severity.CRITICAL
    ]
    try:
        certificates = served_tls(services.config, now=now)
    except (TlsError, OSError):
        return found  # no certificate to read: the server's start says so already
    found += [
        Item(f"tls:{cert.role}:{cert.fingerprint}", cert.not_after, cert.message)
        for cert in expiring(certificates, now=now)
    ]
    return found


def raise_new(db: Session, items: list[Item], *, now: datetime) -> list[Item]:
    """K3: an ``expiry.warning`` entry for each item not raised before; returns those raised."""
    if not items:
        return []
    lock_log(db)
    raised = []
    for item in items:
        seen = db.scalar(
            select(AuditEntry.seq)
            .where(AuditEntry.action == Action.EXPIRY_WARNING.value)
            .where(AuditEntry.object == item.what)
            .limit(1)
        )
        if seen is not None:
            continue
        detail = {"what": item.what, "expires": item.expires.isoformat(), "message": item.message}
        append(
            db,
            audit_event(
                Action.EXPIRY_WARNING,
                actor=WATCH_ACTOR,
                object=item.what,
                outcome=Outcome.SUCCESS,
                time=now,
                detail=detail,
            ),
        )
        raised.append(item)
    return raised
