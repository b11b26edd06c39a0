"""What an audit entry says: its fields, once, and the one way to make an event.

``FIELDS`` is the audit vocabulary's only list of fields: their order, their
names and the longest text each one stores. Everything that walks the fields
derives from it: the bytes each entry's hash covers (``chain``), the export's
columns (``ENTRY_COLUMNS``), how an append fits hostile text to its column
(``store``). The typed declarations (``Event``, ``chain.EntryRecord`` and
``chain.ChainedEntry``, the ``AuditEntry`` model) are checked against it by
the tests, so none can drift from it.

Every audit event is made by ``audit_event`` from an ``Actor`` and an
``Action``: a new kind of event is a new ``Action`` member, not new code.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final


@dataclass(frozen=True)
class Field:
    """One text field of an entry: its name and the longest text it stores."""

    name: str
    #: Characters stored at most (its column's length); None: unbounded.
    length: int | None


#: The audit fields after ``seq`` and ``time``, in order (R27: who, in which
#: role, did what, to what, with which outcome, from where, and how).
FIELDS: Final = (
    Field("actor", 64),
    Field("role", 32),
    Field("action", 64),
    Field("object", 512),
    Field("outcome", 16),
    Field("source", 64),
    Field("detail", None),
)
FIELD_NAMES: Final = tuple(spec.name for spec in FIELDS)
#: A stored entry, in order: what ``FIELDS`` says, numbered, timed and chained.
ENTRY_COLUMNS: Final = ("seq", "time", *FIELD_NAMES, "prev_hash", "hash")


class Outcome(StrEnum):
    """How an audited action ended: the ``outcome`` field's fixed vocabulary."""

    SUCCESS = "success"
    FAILURE = "failure"
    REFUSED = "refused"
    #: R25: the right one-time code of a step already passed. It leaked (or
    #: was seen in use): its own outcome, so that a search finds every one.
    REPLAY = "replay"


OUTCOMES = frozenset(outcome.value for outcome in Outcome)


@dataclass(frozen=True)
class Actor:
    """Who acts, as the audit log names them: a person or a process, its role, its source."""

    name: str
    role: str
    source: str


@dataclass(frozen=True, kw_only=True)
class Event:
    """What happened, who did it, from where (before it is chained).

    ``detail`` must never hold a secret (password, OTP code, PIN, session
    token, key material): it is stored, exported and sent to syslog.
    """

    time: datetime
    actor: str
    role: str
    action: str
    object: str
    outcome: str
    source: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {self.outcome!r}")
        if self.time.tzinfo is None:
            raise ValueError("audit time must be timezone-aware (UTC)")


def audit_event(
    action: str,
    *,
    actor: Actor,
    object: str,  # noqa: A002 - the audit field's name
    outcome: str,
    time: datetime,
    detail: Mapping[str, Any] | None = None,
) -> Event:
    """The one builder of audit events: ``actor`` did ``action`` to ``object``."""
    return Event(
        time=time,
        actor=actor.name,
        role=actor.role,
        action=action,
        object=object,
        outcome=outcome,
        source=actor.source,
        detail=dict(detail or {}),
    )
