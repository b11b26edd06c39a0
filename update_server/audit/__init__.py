"""The server's tamper-evident audit log (R27, R28, R31).

``append(session, Event)`` chains an entry inside the caller's transaction;
views use ``record(event)``, which refuses the action (503) when the entry
cannot be written. Code that makes its own sessions calls ``bind_sessions``
so its entries are checkpointed, anchored outside the database before the
commit returns, and sent to syslog like the server's.

Every event is made by ``audit_event(action, actor=Actor(...), ...)``: the
fields are ``vocabulary.FIELDS``, the actions ``actions.Action``.
"""

from update_server.audit.chain import verify_chain
from update_server.audit.recording import bind_sessions, record, request_event
from update_server.audit.store import append
from update_server.audit.vocabulary import Actor, Event, Outcome, audit_event

__all__ = [
    "Actor",
    "Event",
    "Outcome",
    "append",
    "audit_event",
    "bind_sessions",
    "record",
    "request_event",
    "verify_chain",
]
