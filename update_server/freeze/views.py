"""``/api/v1/freeze``: the failsafe freeze's HTTP side (rules in ``rules``, steps in ``changes``).

Anyone logged in reads the mode; only a security officer with a fresh
one-time code (``X-OTP``) enters it or votes to leave it. The code is spent
first (committed), whatever the answer: a refused attempt costs its code
(R25), and its audit entry is committed before the refusal is answered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from update_server.access import ALL_ROLES, allow
from update_server.app import Services
from update_server.audit import Actor
from update_server.errors import BadRequestError, ServerError
from update_server.freeze import changes, rules, state
from update_server.freeze.rules import Freeze, VoteKind, VoteResult
from update_server.models import Role

blueprint = Blueprint("freeze", __name__)


@blueprint.get("/api/v1/freeze")
@allow(*ALL_ROLES)
def show() -> ResponseReturnValue:
    services = _services()
    return jsonify(describe(state.current(g.db), now=services.clock(), window=_window()))


@blueprint.post("/api/v1/freeze")
@allow(Role.SECURITY_OFFICER, fresh_otp=True)
def enter() -> ResponseReturnValue:
    g.db.commit()  # R25: the fresh code is spent whatever happens next
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequestError('the body must be a JSON object: {"reason": "..."}')
    now = _services().clock()
    try:
        frozen = changes.enter(g.db, actor=_actor(), reason=body.get("reason"), now=now)
    except ServerError:
        g.db.commit()  # the refusal's audit entry
        raise
    g.db.commit()
    return jsonify(describe(frozen, now=now, window=_window()))


@blueprint.post("/api/v1/freeze/lift")
@allow(Role.SECURITY_OFFICER, fresh_otp=True)
def lift() -> ResponseReturnValue:
    g.db.commit()  # R25: the fresh code is spent whatever happens next
    now = _services().clock()
    try:
        result = changes.vote(g.db, actor=_actor(), now=now, window=_window())
    except ServerError:
        g.db.commit()  # the refusal's audit entry
        raise
    g.db.commit()
    answer = describe(result.state, now=now, window=_window())
    return jsonify({**answer, "vote": result.kind.value, "message": vote_message(result, now)})


def describe(freeze: Freeze, *, now: datetime, window: timedelta) -> dict[str, Any]:
    """The mode as people read it: who froze, since when, why, and the vote pending."""
    frozen = freeze.mode is rules.Mode.FROZEN
    pending = rules.pending_vote(freeze, now=now, window=window)
    return {
        "mode": freeze.mode.value,
        "since": _iso(freeze.since),
        "by": freeze.frozen_by if frozen else None,
        "reason": freeze.reason if frozen else None,
        "lifted_by": list(freeze.lifted_by),
        "pending_vote": None if pending is None else _vote_json(pending, window),
        "unfreeze_window_seconds": int(window.total_seconds()),
    }


def vote_message(result: VoteResult, now: datetime) -> str:
    """What the officer's vote did, in words (F2): lifted, or waiting, and any lapsed vote."""
    if result.kind is VoteKind.LIFTED:
        first, second = result.state.lifted_by
        return f"the freeze is lifted by {first} and {second}: the system is normal again"
    lapsed = ""
    if result.lapsed is not None:
        lapsed = (
            f"the earlier vote by {result.lapsed.officer} ({shown_time(result.lapsed.at)}) had"
            " lapsed;"
            " this is a new first vote: "
        )
    ends = now + _window()
    return (
        f"{lapsed}your vote to lift the freeze is recorded; a different security officer"
        f" must confirm it with a fresh code before {shown_time(ends)}, or it lapses"
    )


def for_people(freeze: Freeze, *, now: datetime, window: timedelta) -> dict[str, Any]:
    """``describe`` with its times as people read them (``shown_time``), for the page."""
    pending = rules.pending_vote(freeze, now=now, window=window)
    return {
        **describe(freeze, now=now, window=window),
        "since": None if freeze.since is None else shown_time(freeze.since),
        "pending_vote": None
        if pending is None
        else {
            "by": pending.officer,
            "at": shown_time(pending.at),
            "lapses_at": shown_time(pending.at + window),
        },
    }


def shown_time(at: datetime) -> str:
    """A time for people: UTC, to the second, labelled (the API's fields stay ISO 8601)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _vote_json(pending: rules.Vote, window: timedelta) -> dict[str, Any]:
    return {"by": pending.officer, "at": _iso(pending.at), "lapses_at": _iso(pending.at + window)}


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _actor() -> Actor:
    return Actor(g.user.name, g.user.role, (request.remote_addr or "-")[:64])


def _window() -> timedelta:
    return _services().config.unfreeze_window


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
