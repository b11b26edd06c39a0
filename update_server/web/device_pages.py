"""Device pages, nested in the ``web`` blueprint: pending devices and enrolment tokens.

They orchestrate what the device API does, with its rules
(``devices.registry`` G1-G3, ``devices.enrolment`` E1, ``devices.scope``):

P1 A pending device is listed, accepted or rejected by an administrator, or
   by a technician for the sites they hold (one out of scope is 404, like
   one that does not exist). A refused change is audited and committed on
   its own, like the API's.
P2 An enrolment token is issued by an administrator only, confirmed with a
   fresh one-time code typed in the form (``fresh_otp``: a code later than
   the login's, spent once); the token is shown once, on the answer, which
   is never cached.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from update_server.access import allow
from update_server.app import Services
from update_server.audit import Actor
from update_server.config import ENROLMENT_TOKEN_MAX
from update_server.devices import enrolment, registry, scope
from update_server.devices.models import Device, DeviceState
from update_server.errors import ServerError
from update_server.models import Role
from update_server.web.forms import ActionForm, EnrolmentTokenForm

blueprint = Blueprint("devices", __name__, url_prefix="/devices")

#: P1: who sees pending devices and decides on them (the API's device readers).
DECIDERS = (Role.ADMIN, Role.TECHNICIAN)
CHANGES = ("accept", "reject")


@blueprint.get("/pending")
@allow(*DECIDERS)
def pending() -> ResponseReturnValue:
    query = select(Device).where(Device.state == DeviceState.PENDING).order_by(Device.id)
    devices = list(g.db.scalars(scope.visible_to(g.db, g.user, query)))
    return render_template(
        "pending_devices.html", devices=devices, action=ActionForm(), logout=ActionForm()
    )


@blueprint.post("/<device_id>/<any(accept, reject):change>")
@allow(*DECIDERS)
def decide(device_id: str, change: str) -> ResponseReturnValue:
    """P1: accept or reject one device; the outcome is shown on the pending list."""
    now = _services().clock()
    try:
        device = g.db.get(Device, device_id)
        visible = device is not None and scope.in_scope(g.db, g.user, device)
        registry.change(
            g.db, registry.get(g.db, device_id, visible=visible), change, now=now, actor=_actor()
        )
    except ServerError as refused:
        g.db.rollback()
        registry.audit_refusal(
            g.db, device_id, change, reason=refused.detail, now=now, actor=_actor()
        )
        g.db.commit()
        flash(f"Nothing was changed: {refused.detail}.", "error")
        return redirect(url_for("web.devices.pending"), 303)
    g.db.commit()
    flash(f"Device {device_id} {'accepted' if change == 'accept' else 'rejected'}.")
    return redirect(url_for("web.devices.pending"), 303)


@blueprint.get("/enrolment-token")
@allow(Role.ADMIN)
def enrolment_token_form() -> ResponseReturnValue:
    return _token_page(EnrolmentTokenForm())


@blueprint.post("/enrolment-token")
@allow(Role.ADMIN, fresh_otp=True)
def issue_enrolment_token() -> ResponseReturnValue:
    """P2: the fresh code was spent by ``access.enforce``; the token is shown once."""
    form = EnrolmentTokenForm()
    hours = form.hours.data
    longest = ENROLMENT_TOKEN_MAX // timedelta(hours=1)
    if hours is None or not 1 <= hours <= longest:
        return _token_page(form, f"valid for: enter 1 to {longest} hours", 400)
    try:
        issued = enrolment.issue_token(
            g.db,
            hardware_model=(form.hardware_model.data or "").strip(),
            device_id=(form.device_id.data or "").strip() or None,
            site=(form.site.data or "").strip() or None,
            pre_authorized=bool(form.accept.data),
            lifetime=timedelta(hours=hours),
            now=_services().clock(),
            actor=_actor(),
        )
    except ServerError as refused:
        g.db.rollback()
        return _token_page(form, refused.detail, refused.status)
    g.db.commit()
    expires = issued.row.expires_at
    shown = (expires if expires.tzinfo else expires.replace(tzinfo=UTC)).astimezone(UTC)
    return render_template(
        "enrolment_token_issued.html",
        issued=issued,
        expires=_shown(shown),
        logout=ActionForm(),
    ), 201


def _token_page(
    form: EnrolmentTokenForm, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    page = render_template("enrolment_token.html", form=form, error=error, logout=ActionForm())
    return page, status


def _shown(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _actor() -> Actor:
    return registry.actor_of(g.user, request.remote_addr or "-")


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
