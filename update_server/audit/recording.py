"""How views record what they do (R27), and how the app's sessions are wired.

The rule "if an audit entry cannot be written, the action it records is
refused" holds by construction: a view changes the database through
``g.db`` and calls ``record`` in the same transaction, then commits once.
If the append fails, ``record`` rolls the whole transaction back, the
action's own changes with it, and raises ``ServiceUnavailableError``: the
client gets a 503 problem and nothing happened. If the final commit fails,
both are lost together and the client gets a 500. Either way no action
is done without its entry.

A refusal (bad password, rejected upload) must be recorded too, but the
view answers it by raising, and teardown rolls back whatever was not
committed: such views call ``record(event, commit=True)`` before raising.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from securesystemslib.signer import Signer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from update_server.alerts.outbox import alerting
from update_server.audit.anchor import HeadAnchor, anchor_file
from update_server.audit.checkpoint import cadence
from update_server.audit.errors import AnchorError
from update_server.audit.store import AuditSink, append, bind
from update_server.audit.syslog import sender_for
from update_server.audit.vocabulary import Actor, Event, audit_event
from update_server.config import ServerConfig
from update_server.db import after_commit_error
from update_server.errors import ServiceUnavailableError, problem
from update_server.models import AuditEntry

logger = logging.getLogger(__name__)

REFUSED_DETAIL = "audit log unavailable: action refused"


def record(event: Event, *, commit: bool = False) -> AuditEntry:
    """Append ``event`` in this request's transaction, or refuse the action.

    Raises ``ServiceUnavailableError`` (503) after rolling back everything
    the request did, when the entry cannot be written.
    """
    try:
        entry = append(g.db, event)
        if commit:
            g.db.commit()
    except SQLAlchemyError as exc:
        g.db.rollback()
        # Only the class: the exception's text quotes the statement's parameters.
        logger.error("audit append failed, action refused: %s", type(exc).__name__)  # noqa: TRY400
        raise ServiceUnavailableError(REFUSED_DETAIL) from None
    except AnchorError as exc:  # R27, R28: the head it would follow is not anchored
        g.db.rollback()
        raise ServiceUnavailableError(str(exc)) from None
    return entry


def request_event(
    action: str,
    *,
    object: str,  # noqa: A002 - the audit field's name
    outcome: str,
    detail: Mapping[str, Any] | None = None,
    actor: str | None = None,
    role: str | None = None,
) -> Event:
    """An event of the current request: its time, caller and source address.

    ``actor``/``role`` default to the authenticated user (``-`` if none).
    """
    user = g.get("user")
    who = Actor(
        name=actor if actor is not None else (user.name if user is not None else "-"),
        role=role if role is not None else (user.role if user is not None else "-"),
        source=request.remote_addr or "-",
    )
    now = current_app.extensions["fw"].clock()
    return audit_event(action, actor=who, object=object, outcome=outcome, time=now, detail=detail)


def install(app: Flask) -> None:
    """Bind the audit sink to every session of ``app`` (cadence, anchor and syslog)."""
    services = app.extensions["fw"]
    bind_sessions(services.sessions, services.config, lambda: services.signer("audit"))
    app.after_request(_refuse_unanchored)


def _refuse_unanchored(response: Response) -> Response:
    """R27/R28: an action whose entry could not be anchored is not answered as done."""
    session: Session | None = g.get("db")
    failure = after_commit_error(session) if session is not None else None
    if failure is None:
        return response
    refused = jsonify(problem(503, ServiceUnavailableError.title, str(failure)))
    refused.status_code = 503
    refused.mimetype = "application/problem+json"
    return refused


def bind_sessions(
    factory: sessionmaker[Session], config: ServerConfig, signer: Callable[[], Signer]
) -> None:
    """For code that makes its own sessions (CLI commands): append like the server.

    Without it, entries are still chained, but no checkpoint is signed at the
    cadence, the head is not anchored and nothing goes to syslog.
    """
    bind(factory, sink_for(config, signer))


def sink_for(config: ServerConfig, signer: Callable[[], Signer]) -> AuditSink:
    """The sink ``config`` asks for: checkpoints every N entries, alerts in
    the outbox for the webhooks, the head anchored in the data directory
    after each commit, syslog if set."""
    sender = sender_for(config.syslog_address)
    webhooks = [hook.name for hook in config.alert_webhooks]
    return AuditSink(
        # R31: a critical entry's alert rows are written in its transaction.
        appended=alerting(cadence(config.audit_checkpoint_every, signer), webhooks),
        committed=sender.send_entries if sender is not None else None,
        anchor=HeadAnchor(anchor_file(config.data_dir), signer),
    )
