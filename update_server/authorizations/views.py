"""The HTTP side of technicians' authorizations (rules in ``issuing``).

``POST /api/v1/authorizations`` needs a technician's fresh one-time code
(``X-OTP``, I1); the list and each document are shown to the technicians
whose scope holds the device and to administrators, security officers and
auditors. The device's own pickup is a device route (``devices.views``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from update_server.access import allow
from update_server.app import Services
from update_server.authorizations import issuing
from update_server.authorizations.models import IssuedAuthorization
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.errors import BadRequestError, NotFoundError
from update_server.models import Role
from update_server.publication.repository import OnlineRepository

blueprint = Blueprint("authorizations", __name__)

#: Who may read issued authorizations (a technician: the devices of their sites).
READERS = (Role.TECHNICIAN, Role.ADMIN, Role.SECURITY_OFFICER, Role.AUDITOR)


@blueprint.post("/api/v1/authorizations")
@allow(Role.TECHNICIAN, fresh_otp=True)
def issue_authorizations() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    services = _services()
    now = services.clock()
    repository = OnlineRepository(services.config.repository_dir, now=now)
    repository.require_initialised()
    release = issuing.published_release(repository, body["target_path"])
    minutes = body.get("lifetime_minutes", issuing.DEFAULT_LIFETIME_MINUTES)
    rows = issuing.issue(
        g.db,
        technician=g.user,
        device_ids=list(body["device_ids"]),
        release=release,
        lifetime=timedelta(minutes=minutes),
        signer=services.signer("authorization"),
        now=now,
        source=request.remote_addr or "-",
    )
    g.db.commit()
    return jsonify({"authorizations": [_with_document(row) for row in rows]}), 201


@blueprint.get("/api/v1/authorizations")
@allow(*READERS)
def list_authorizations() -> ResponseReturnValue:
    now = _services().clock()
    query = select(IssuedAuthorization).order_by(IssuedAuthorization.id.desc()).limit(500)
    if g.user.role == Role.TECHNICIAN:
        visible = scope.visible_to(g.db, g.user, select(Device.id))
        query = query.where(IssuedAuthorization.device_id.in_(visible))
    rows = g.db.scalars(query)
    return jsonify({"authorizations": [issuing.summary(row, now=now) for row in rows]})


@blueprint.get("/api/v1/authorizations/<int:authorization_id>")
@allow(*READERS)
def show_authorization(authorization_id: int) -> ResponseReturnValue:
    """One authorization with its signed document (to hand over as a file)."""
    row = g.db.get(IssuedAuthorization, authorization_id)
    device = None if row is None else g.db.get(Device, row.device_id)
    if row is None or device is None or not _may_see(device):
        raise NotFoundError(f"no authorization {authorization_id}")
    return jsonify(_with_document(row))


def _may_see(device: Device) -> bool:
    if g.user.role == Role.TECHNICIAN:
        return scope.in_scope(g.db, g.user, device)
    return True


def _with_document(row: IssuedAuthorization) -> dict[str, Any]:
    now = _services().clock()
    return {**issuing.summary(row, now=now), "document": json.loads(row.document)}


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
