"""The failsafe freeze's page, nested in the ``web`` blueprint (rules in ``freeze.rules``).

It orchestrates what the freeze API does (``freeze.views``), calling the
same steps (``freeze.changes``: the rules F1-F4, the row lock, the audit).
Rules:

FP1 Anyone logged in sees the mode: who froze, since when, why, and the
    vote pending to lift it; only a security officer gets the forms. Times
    are shown in UTC, to the second, labelled (``freeze.views.shown_time``).
FP2 (R9) Freezing takes a reason and a fresh one-time code typed in the
    form; voting to lift takes a fresh code. The code is spent whatever
    happens next (``fresh_otp``, committed first). A refused code or a
    refused step changes nothing and shows the page again with the reason
    and the refusal's status; a step done redirects to the page (303) with
    what it did (the vote's answer says whether it lifted the freeze or
    waits for a second officer, and names a lapsed vote it replaced).
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm  # type: ignore[import-untyped]
from wtforms import StringField  # type: ignore[import-untyped]

from update_server.access import ALL_ROLES, allow
from update_server.app import Services
from update_server.audit import Actor
from update_server.errors import AuthenticationError, ServerError
from update_server.freeze import changes, state
from update_server.freeze.rules import REASON_LENGTH, Mode
from update_server.freeze.views import for_people, vote_message
from update_server.models import Role
from update_server.web.forms import ActionForm

blueprint = Blueprint("freeze", __name__, url_prefix="/freeze")


class FreezeForm(FlaskForm):  # type: ignore[misc]
    reason = StringField("Why (everyone the freeze stops reads it)")
    otp = StringField("A new one-time code, to confirm")


class LiftForm(FlaskForm):  # type: ignore[misc]
    otp = StringField("A new one-time code, to confirm your vote")


@blueprint.get("")
@allow(*ALL_ROLES)
def page() -> ResponseReturnValue:
    """FP1: the mode, and the forms for a security officer."""
    return _page()


@blueprint.post("/enter")
@allow(Role.SECURITY_OFFICER, fresh_otp=True)
def enter() -> ResponseReturnValue:
    """FP2: freeze with a reason (F1)."""
    g.db.commit()  # R25: the fresh code is spent whatever happens next
    form = FreezeForm()
    try:
        changes.enter(g.db, actor=_actor(), reason=form.reason.data, now=_services().clock())
    except ServerError as refused:
        g.db.commit()  # the refusal's audit entry
        return _page(error=refused.detail, status=refused.status)
    g.db.commit()
    flash(
        "The system is frozen: nothing is published, authorized or deployed until two"
        " security officers lift it."
    )
    return redirect(url_for("web.freeze.page"), 303)


@blueprint.post("/lift")
@allow(Role.SECURITY_OFFICER, fresh_otp=True)
def lift() -> ResponseReturnValue:
    """FP2: vote to lift (F2): recorded first, or the second that lifts."""
    g.db.commit()  # R25: the fresh code is spent whatever happens next
    services = _services()
    now = services.clock()
    try:
        result = changes.vote(g.db, actor=_actor(), now=now, window=services.config.unfreeze_window)
    except ServerError as refused:
        g.db.commit()  # the refusal's audit entry
        return _page(error=refused.detail, status=refused.status)
    g.db.commit()
    message = vote_message(result, now)
    flash(message[0].upper() + message[1:] + ".")
    return redirect(url_for("web.freeze.page"), 303)


def refused_code(exc: AuthenticationError) -> ResponseReturnValue | None:
    """FP2: a refused fresh code on a freeze form shows the page again, else None.

    Only for a person with a session (no session: the login page, W5).
    """
    if request.endpoint not in {"web.freeze.enter", "web.freeze.lift"} or g.get("user") is None:
        return None
    return _page(error=exc.detail, status=exc.status)


def _page(*, error: str | None = None, status: int = 200) -> ResponseReturnValue:
    services = _services()
    now, window = services.clock(), services.config.unfreeze_window
    shown = for_people(state.current(g.db), now=now, window=window)
    page = render_template(
        "freeze.html",
        freeze=shown,
        frozen=shown["mode"] == Mode.FROZEN,
        officer=g.user.role == Role.SECURITY_OFFICER,
        window_minutes=int(window.total_seconds() // 60),
        reason_length=REASON_LENGTH,
        freeze_form=FreezeForm(),
        lift_form=LiftForm(),
        error=error,
        logout=ActionForm(),
    )
    return page, status


def _actor() -> Actor:
    return Actor(g.user.name, g.user.role, (request.remote_addr or "-")[:64])


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
