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

from update_server.access import allow
from update_server.app import Services
from update_server.authorizations import issuing
from update_server.authorizations.models import IssuedAuthorization
from update_server.errors import BadRequestError, ServerError
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
    source = request.remote_addr or "-"
    minutes = body.get("lifetime_minutes", issuing.DEFAULT_LIFETIME_MINUTES)
    try:
        repository = OnlineRepository(services.config.repository_dir, now=now)
        repository.require_initialised()
        rows = issuing.issue(
            g.db,
            technician=g.user,
            device_ids=list(body["device_ids"]),
            release=issuing.published_release(repository, body["target_path"]),
            lifetime=timedelta(minutes=minutes),
            signer=services.signer("authorization"),
            now=now,
            source=source,
        )
    except ServerError as refused:  # I5: audited; the fresh code stays spent
        issuing.audit_refusal(
            g.db,
            technician=g.user,
            source=source,
            device_ids=list(body["device_ids"]),
            target_path=body["target_path"],
            reason=refused.detail,
            now=now,
        )
        g.db.commit()
        raise
    g.db.commit()
    return jsonify({"authorizations": [_with_document(row) for row in rows]}), 201


@blueprint.get("/api/v1/authorizations")
@allow(*READERS)
def list_authorizations() -> ResponseReturnValue:
    now = _services().clock()
    rows = issuing.listed_for(g.db, g.user)
    return jsonify({"authorizations": [issuing.summary(row, now=now) for row in rows]})


@blueprint.get("/api/v1/authorizations/<int:authorization_id>")
@allow(*READERS)
def show_authorization(authorization_id: int) -> ResponseReturnValue:
    """One authorization with its signed document (to hand over as a file)."""
    return jsonify(_with_document(issuing.shown_to(g.db, g.user, authorization_id)))


def _with_document(row: IssuedAuthorization) -> dict[str, Any]:
    now = _services().clock()
    return {**issuing.summary(row, now=now), "document": json.loads(row.document)}


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
