"""The technician's offline bundle, nested in the ``web`` blueprint: for the device at hand.

A device on an isolated network takes its update from a file on removable
media (issue 13). On the device's page a technician downloads that file,
with the authorization its release requires, built as ``fwserver bundle``
builds it (``bundles.making``), by the call the API's
``POST /api/v1/devices/<id>/bundle`` makes too (``bundles.technician``). Rules:

BP1 (R6) Only a technician, for a device of their sites (one out of scope
    is 404, like one that does not exist), accepted (else 409).
BP2 (R9, R25) The download is confirmed with a fresh one-time code typed
    in the form (``fresh_otp``: later than the login's, spent once, CSRF
    checked first). A refused code issues nothing, writes nothing and
    shows the page again with the reason and the wait for the next code.
BP3 (R9, R58) A release that requires an authorization gets one issued by
    ``authorizations.issuing.issue``, the technician page's own call (same
    rules I1-I7, same audit), bound to this device and to the SHA-256 the
    published metadata signs; the bundle carries that document, as issued,
    as ``authorization.json``.
BP4 All or nothing: the authorization, the bundle's audit entry
    (``bundle.create``) and the file are one transaction; a refusal (the
    bound, a frozen system, a repository that cannot make it) rolls the
    authorization back and is audited as refused, the code staying spent.
BP5 The answer is the file (``application/x-tar``, attachment, never
    cached); it is written to a temporary file, opened and unlinked before
    it is streamed, so nothing of it stays on the server.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Response, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm  # type: ignore[import-untyped]
from wtforms import IntegerField, StringField  # type: ignore[import-untyped]

from fwcommon.bundle import DEFAULT_MAX_BYTES, BundleError
from update_server.access import allow
from update_server.app import Services
from update_server.auth import otp
from update_server.authorizations import issuing
from update_server.bundles import making, technician
from update_server.devices.models import Device
from update_server.errors import AuthenticationError, ConflictError, ServerError
from update_server.models import Role
from update_server.web.forms import ActionForm
from update_server.web.technician_pages import seconds_until_next_code

blueprint = Blueprint("bundles", __name__, url_prefix="/technician/devices")

MEDIA_TYPE = technician.MEDIA_TYPE


class BundleForm(FlaskForm):  # type: ignore[misc]
    """The authorization's lifetime (when the release needs one) and the fresh code (BP2)."""

    minutes = IntegerField(
        "Authorization valid for (minutes)", default=issuing.DEFAULT_LIFETIME_MINUTES
    )
    otp = StringField("A new one-time code, to confirm")


@blueprint.get("/<device_id>/bundle")
@allow(Role.TECHNICIAN)
def page(device_id: str) -> ResponseReturnValue:
    """BP1: the device, the release its bundle would carry, and the form."""
    return _page(device_id, BundleForm())


@blueprint.post("/<device_id>/bundle")
@allow(Role.TECHNICIAN, fresh_otp=True)
def download(device_id: str) -> ResponseReturnValue:
    """BP2-BP5: the fresh code was spent by ``access.enforce``; then the bundle, as a whole."""
    form = BundleForm()
    minutes = form.minutes.data
    if minutes is None or not 1 <= minutes <= issuing.MAX_LIFETIME_MINUTES:
        limit = issuing.MAX_LIFETIME_MINUTES
        return _page(device_id, form, f"valid for: enter 1 to {limit} minutes", 400)
    order = technician.Order(
        technician=g.user,
        device_id=device_id,
        lifetime=timedelta(minutes=minutes),
        source=request.remote_addr or "-",
    )
    work = Path(tempfile.mkdtemp(prefix="fw-bundle-"))
    try:
        delivered = technician.make(g.db, _services(), order, work, max_bytes=DEFAULT_MAX_BYTES)
        stream = delivered.made.path.open("rb")
    except (ServerError, BundleError) as refused:  # BP4: audited and committed by ``make``
        reason = refused.detail if isinstance(refused, ServerError) else str(refused)
        status = refused.status if isinstance(refused, ServerError) else ConflictError.status
        return _page(device_id, form, reason, status, refused=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # BP5: the open stream outlives its name
    return technician.attachment(stream, delivered.name)


def refused_code(exc: AuthenticationError) -> ResponseReturnValue | None:
    """BP2: a refused fresh code shows the device's page again, else None (no session: W5)."""
    if request.endpoint != "web.bundles.download" or g.get("user") is None:
        return None
    device_id = (request.view_args or {}).get("device_id", "")
    return _page(str(device_id), BundleForm(), exc.detail, exc.status, refused=True)


def _contents(device: Device) -> making.Contents:
    request_ = making.device_request(g.db, device.id, root_from=None, version=None)
    return making.collect(
        _services().config, request_, now=_services().clock(), wait=making.PAGE_LOCK_WAIT
    )


def _device(device_id: str) -> Device:
    """BP1: the device, if in this technician's scope (``bundles.technician`` T1)."""
    return technician.device_in_scope(g.db, g.user, device_id)


def _page(
    device_id: str,
    form: BundleForm,
    error: str | None = None,
    status: int = 200,
    *,
    refused: bool = False,
) -> Response:
    device = _device(device_id)
    try:
        contents: making.Contents | None = _contents(device)
        problem = None
    except ServerError as exc:
        contents, problem = None, exc.detail
    page = render_template(
        "technician_bundle.html",
        device=device,
        contents=contents,
        problem=problem,
        form=form,
        error=error,
        refused=refused,
        wait=_wait(),
        logout=ActionForm(),
    )
    return Response(page, status)


def _wait() -> int:
    """BP2: seconds until this person's next code can be used (after the login's too)."""
    last = max(g.session.login_step, otp.last_step(g.db, g.user))
    return seconds_until_next_code(last, now=_services().clock())


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
