"""Entering and leaving the freeze: ``rules`` applied to the locked row, each step audited.

Shared by the API and the security officers' page. Each function works in
the caller's transaction: it locks the row (``state.locked``), applies the
rule, writes the new state and appends its audit entry; a refusal is
appended too (``refused``, with the rule and the reason) and raised, and
the caller commits it before answering, so it stays in the log and the
fresh code that came with it stays spent (R25, R27). Nothing else changes
on a refusal.

Audit entries (object ``freeze``): ``freeze.enter`` (the reason),
``freeze.vote`` (first, second, or refused; a lapsed vote it replaced) and
``freeze.leave`` (both officers, the freeze's start and reason).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from update_server.audit import Actor, Outcome, append, audit_event
from update_server.audit.actions import Action
from update_server.errors import ServerError
from update_server.freeze import rules, state
from update_server.freeze.rules import Freeze, VoteKind, VoteResult

OBJECT = "freeze"


def enter(db: Session, *, actor: Actor, reason: object, now: datetime) -> Freeze:
    """F1: freeze the system; audited, refusals too (the caller commits either way)."""
    row = state.locked(db, now=now)
    try:
        frozen = rules.enter(
            state.snapshot(row), officer=actor.name, role=actor.role, reason=reason, now=now
        )
    except ServerError as refused:
        _refused(db, Action.FREEZE_ENTER, actor, refused, now=now)
        raise
    state.write(row, frozen)
    _audit(db, Action.FREEZE_ENTER, actor, Outcome.SUCCESS, now=now, reason=frozen.reason)
    return frozen


def vote(db: Session, *, actor: Actor, now: datetime, window: timedelta) -> VoteResult:
    """F2: record a vote to leave, or lift the freeze with the second; audited, refusals too."""
    row = state.locked(db, now=now)
    before = state.snapshot(row)
    try:
        result = rules.vote(before, officer=actor.name, role=actor.role, now=now, window=window)
    except ServerError as refused:
        _refused(db, Action.FREEZE_VOTE, actor, refused, now=now)
        raise
    state.write(row, result.state)
    lapsed = _vote_json(result.lapsed)
    _audit(db, Action.FREEZE_VOTE, actor, Outcome.SUCCESS, now=now, vote=result.kind, lapsed=lapsed)
    if result.kind is VoteKind.LIFTED:
        _audit(
            db,
            Action.FREEZE_LEAVE,
            actor,
            Outcome.SUCCESS,
            now=now,
            lifted_by=list(result.state.lifted_by),
            frozen_by=before.frozen_by,
            frozen_since=before.since.isoformat() if before.since else None,
            reason=before.reason,
        )
    return result


def _vote_json(cast: rules.Vote | None) -> dict[str, str] | None:
    return None if cast is None else {"by": cast.officer, "at": cast.at.isoformat()}


def _refused(
    db: Session, action: Action, actor: Actor, refused: ServerError, *, now: datetime
) -> None:
    rule = refused.extra.get("rule", "")
    _audit(db, action, actor, Outcome.REFUSED, now=now, rule=rule, reason=refused.detail[:500])


def _audit(
    db: Session, action: Action, actor: Actor, outcome: Outcome, *, now: datetime, **detail: Any
) -> None:
    append(
        db,
        audit_event(action, actor=actor, object=OBJECT, outcome=outcome, time=now, detail=detail),
    )
