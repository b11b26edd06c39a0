"""The technician's pages, nested in the ``web`` blueprint: devices, authorizing, what became of it.

They orchestrate what the authorization API does (``authorizations.views``),
calling the same functions with the same rules (``authorizations.issuing``
I1-I6, ``devices.scope``); what each device is offered is
``authorizations.offers`` (O1-O3). Rules:

T1 (R6) A technician sees the devices of their sites and the authorizations
   for them only; an administrator sees all (the API's readers). A device
   or a document out of scope is 404, like one that does not exist.
T2 (R9) One form authorizes ONE release for the devices checked (an
   explicit list; each gets its own document), confirmed with a fresh
   one-time code typed in the form (``fresh_otp``: later than the login's,
   spent once). A refused code or a refused request issues nothing and
   shows the form again with the reason, the devices still checked, and
   how long until the next code can be used.
T3 A document is downloaded as a file to hand over
   (``fwclient update --authorization FILE``): the signed JSON as issued.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm  # type: ignore[import-untyped]
from sqlalchemy import select
from wtforms import HiddenField, IntegerField, StringField  # type: ignore[import-untyped]

from update_server.access import allow
from update_server.app import Services
from update_server.auth import otp
from update_server.authorizations import issuing, offers
from update_server.authorizations.models import IssuedAuthorization
from update_server.authorizations.views import READERS
from update_server.devices import scope
from update_server.devices.models import Device, DeviceState
from update_server.errors import AuthenticationError, ServerError
from update_server.mfa.totp import INTERVAL
from update_server.models import Role, User
from update_server.publication.repository import OnlineRepository
from update_server.web.forms import ActionForm

blueprint = Blueprint("technician", __name__, url_prefix="/technician")

#: T1: who sees the devices page (the API's device readers); only a technician authorizes.
DEVICE_READERS = (Role.TECHNICIAN, Role.ADMIN)
#: What a device's reported outcome means, in words (I6).
OUTCOMES = {
    "authorization_accepted": "accepted: bound to its install, not activated yet",
    "authorization_used": "used: the device installed with it",
    "authorization_replayed": "refused by the device: already used",
    "authorization_expired": "refused by the device: expired",
    "authorization_wrong_device": "refused by the device: for another device",
    "authorization_wrong_release": "refused by the device: for another release",
    "authorization_bad_signature": "refused by the device: bad signature",
    "authorization_untrusted_key": "refused by the device: signed by a key it does not trust",
}


class AuthorizeForm(FlaskForm):  # type: ignore[misc]
    """What ``POST /api/v1/authorizations`` takes; the checked ``device_ids`` come as a list."""

    target_path = HiddenField()
    minutes = IntegerField("Valid for (minutes)", default=issuing.DEFAULT_LIFETIME_MINUTES)
    otp = StringField("A new one-time code, to confirm")


@dataclass(frozen=True)
class Row:
    """A device as the page shows it, with the release it is offered (O1-O3)."""

    device: Device
    offer: issuing.Release | None

    @property
    def authorizable(self) -> bool:
        return self.device.state == DeviceState.ACCEPTED and self.offer is not None


@dataclass(frozen=True)
class Group:
    """The devices offered one release: one form, one code (T2)."""

    release: issuing.Release
    rows: list[Row]


def seconds_until_next_code(last_step: int, *, now: datetime) -> int:
    """T2: whole seconds until the authenticator shows a code later than ``last_step``.

    A code is usable once its TOTP step is later than the last one accepted
    (and than the login's): the app shows it from the start of step
    ``last_step + 1``.
    """
    start = (last_step + 1) * INTERVAL
    return max(0, math.ceil(start - now.timestamp()))


@blueprint.get("/devices")
@allow(*DEVICE_READERS)
def devices() -> ResponseReturnValue:
    return _devices_page(AuthorizeForm())


@blueprint.post("/authorizations")
@allow(Role.TECHNICIAN, fresh_otp=True)
def authorize() -> ResponseReturnValue:
    """T2: the fresh code was spent by ``access.enforce``; then the API's issuing, as a whole."""
    form = AuthorizeForm()
    device_ids = request.form.getlist("device_ids")
    minutes = form.minutes.data
    if minutes is None or not 1 <= minutes <= issuing.MAX_LIFETIME_MINUTES:
        return _devices_page(
            form, f"valid for: enter 1 to {issuing.MAX_LIFETIME_MINUTES} minutes", 400
        )
    services = _services()
    now = services.clock()
    try:
        repository = OnlineRepository(services.config.repository_dir, now=now)
        repository.require_initialised()
        rows = issuing.issue(
            g.db,
            technician=g.user,
            device_ids=device_ids,
            release=issuing.published_release(repository, form.target_path.data or ""),
            lifetime=timedelta(minutes=minutes),
            signer=services.signer("authorization"),
            now=now,
            source=request.remote_addr or "-",
        )
    except ServerError as refused:  # I5: audited as the API does; the fresh code stays spent
        issuing.audit_refusal(
            g.db,
            technician=g.user,
            source=request.remote_addr or "-",
            device_ids=device_ids,
            target_path=form.target_path.data or "",
            reason=refused.detail,
            now=now,
        )
        g.db.commit()
        return _devices_page(form, refused.detail, refused.status)
    g.db.commit()
    page = render_template(
        "technician_authorized.html",
        rows=rows,
        shown=_shown,
        wait=_wait(now),
        logout=ActionForm(),
    )
    return page, 201


@blueprint.get("/authorizations")
@allow(*READERS)
def authorizations() -> ResponseReturnValue:
    """T1: the authorizations issued for the devices in scope, newest first, with their status."""
    now = _services().clock()
    rows = issuing.listed_for(g.db, g.user)
    devices = {device.id: device for device in _devices_of(rows)}
    return render_template(
        "technician_authorizations.html",
        rows=rows,
        devices=devices,
        status=lambda row: issuing.status(row, now=now).value,
        outcomes=OUTCOMES,
        shown=_shown,
        logout=ActionForm(),
    )


@blueprint.get("/authorizations/<int:authorization_id>.json")
@allow(*READERS)
def document(authorization_id: int) -> ResponseReturnValue:
    """T1, T3: the signed document as a file; 404 out of scope, as the API."""
    row = issuing.shown_to(g.db, g.user, authorization_id)
    name = f"authorization-{row.device_id}-{row.id}.json"
    return Response(
        row.document,
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def refused_code(exc: AuthenticationError) -> ResponseReturnValue | None:
    """T2: a refused fresh code on the authorize form shows the form again, else None.

    Only for a person with a session (no session: the login page, W5).
    """
    if request.endpoint != "web.technician.authorize" or g.get("user") is None:
        return None
    return _devices_page(AuthorizeForm(), exc.detail, exc.status)


def _devices_page(form: AuthorizeForm, error: str | None = None, status: int = 200) -> Response:
    user: User = g.user
    now = _services().clock()
    query = select(Device).order_by(Device.site, Device.id)
    rows = _rows(list(g.db.scalars(scope.visible_to(g.db, user, query))), now)
    groups = _groups(rows) if user.role == Role.TECHNICIAN else []
    grouped = {row.device.id for group in groups for row in group.rows}
    page = render_template(
        "technician_devices.html",
        form=form,
        groups=groups,
        others=[row for row in rows if row.device.id not in grouped],
        checked=set(request.form.getlist("device_ids")),
        chosen=request.form.get("target_path", ""),
        can_authorize=user.role == Role.TECHNICIAN,
        error=error,
        wait=_wait(now),
        shown=_shown,
        logout=ActionForm(),
    )
    return Response(page, status)


def _rows(devices: Sequence[Device], now: datetime) -> list[Row]:
    repository = OnlineRepository(_services().config.repository_dir, now=now)
    releases = offers.published_releases(repository) if repository.is_initialised() else []
    return [
        Row(
            device,
            offers.offered(
                releases,
                hardware_model=device.hardware_model,
                running_version=device.running_version,
                security_floor=device.security_floor,
            ),
        )
        for device in devices
    ]


def _groups(rows: Sequence[Row]) -> list[Group]:
    groups: dict[str, Group] = {}
    for row in rows:
        if row.authorizable and row.offer is not None:
            groups.setdefault(row.offer.path, Group(row.offer, [])).rows.append(row)
    return sorted(groups.values(), key=lambda group: group.release.path)


def _wait(now: datetime) -> int:
    """T2: seconds until this person's next code can be used (after the login's too)."""
    last = max(g.session.login_step, otp.last_step(g.db, g.user))
    return seconds_until_next_code(last, now=now)


def _devices_of(rows: Sequence[IssuedAuthorization]) -> list[Device]:
    ids = {row.device_id for row in rows}
    return list(g.db.scalars(select(Device).where(Device.id.in_(ids)))) if ids else []


def _shown(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
