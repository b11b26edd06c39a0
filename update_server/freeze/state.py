"""The server's mode as the database holds it: read by everyone, changed under one row lock.

``current_mode`` and ``is_frozen`` are what other parts ask (the device
poll, the status); ``refuse_if_frozen`` is the F3 check a change the freeze
stops makes first (publication, authorizations, deployments): it raises
``FrozenError`` (423) with the message of ``rules.refusal``. ``locked`` and
``write`` are for ``changes``, which applies the rules: the row is read
``FOR UPDATE`` (SQLite: the writer's ``BEGIN IMMEDIATE``), so two officers
entering at once, or two votes at once, are applied one after the other,
the second seeing the first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from update_server.freeze.errors import FrozenError
from update_server.freeze.models import ROW_ID, FreezeState
from update_server.freeze.rules import NEVER_FROZEN, Freeze, Mode, Vote, refusal
from update_server.users import aware

__all__ = ["Freeze", "FrozenError", "Mode", "current", "current_mode", "is_frozen"]


def current(db: Session) -> Freeze:
    """The server's mode, who set it and why, and the pending vote (no row: never frozen)."""
    row = db.get(FreezeState, ROW_ID, populate_existing=True)
    return NEVER_FROZEN if row is None else snapshot(row)


def current_mode(db: Session) -> Mode:
    """``Mode.FROZEN`` while the failsafe freeze is on, else ``Mode.NORMAL``.

    Read at every device poll: the one column, by primary key, in the
    caller's transaction (no cache: a freeze reaches the next request of
    every worker), without loading the row into the session.
    """
    mode = db.scalar(select(FreezeState.mode).where(FreezeState.id == ROW_ID))
    return Mode.NORMAL if mode is None else Mode(mode)


def is_frozen(db: Session) -> bool:
    return current_mode(db) is Mode.FROZEN


def refuse_if_frozen(db: Session) -> None:
    """F3: raise ``FrozenError`` (423) while frozen, saying by whom, since when, why.

    The row is read ``FOR SHARE`` (PostgreSQL; SQLite's write lock is taken
    at ``BEGIN``): a freeze being entered waits for the change this check
    lets through to commit, or the change waits for the freeze and sees it,
    so no approval or publication slips in between the check and its commit.
    """
    query = (
        select(FreezeState)
        .where(FreezeState.id == ROW_ID)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    )
    row = db.scalars(query).one_or_none()
    state = NEVER_FROZEN if row is None else snapshot(row)
    if state.mode is Mode.FROZEN:
        raise FrozenError(refusal(state), rule="F3")


def snapshot(row: FreezeState) -> Freeze:
    vote = None
    if row.vote_by is not None and row.vote_at is not None:
        vote = Vote(row.vote_by, aware(row.vote_at))
    return Freeze(
        Mode(row.mode),
        since=aware(row.since),
        frozen_by=row.frozen_by,
        reason=row.reason,
        lifted_by=tuple(row.lifted_by.split(",")) if row.lifted_by else (),
        vote=vote,
    )


def locked(db: Session, *, now: datetime) -> FreezeState:
    """The one row, locked for this transaction (made, normal, if there is none yet)."""
    row = _select_for_update(db)
    if row is not None:
        return row
    try:
        with db.begin_nested():
            db.add(FreezeState(id=ROW_ID, mode=Mode.NORMAL, since=now))
    except IntegrityError:
        pass  # another worker made it meanwhile; it is read (and locked) below
    made = _select_for_update(db)
    if made is None:  # pragma: no cover - inserted above or by the other worker
        raise RuntimeError("the freeze state row is missing after its insert")
    return made


def write(row: FreezeState, state: Freeze) -> None:
    """Store ``state`` in the locked ``row``."""
    row.mode = state.mode
    row.since = state.since if state.since is not None else row.since
    row.frozen_by = state.frozen_by
    row.reason = state.reason
    row.lifted_by = ",".join(state.lifted_by) or None
    row.vote_by = state.vote.officer if state.vote is not None else None
    row.vote_at = state.vote.at if state.vote is not None else None


def _select_for_update(db: Session) -> FreezeState | None:
    query = (
        select(FreezeState)
        .where(FreezeState.id == ROW_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return db.scalars(query).one_or_none()
