"""The HTTP side of devices: enrolment tokens, registration, inventory, device routes.

Views orchestrate and persist; the rules live in ``enrolment`` (E1-E4),
``signatures`` (D1-D6), ``registry`` (G1-G3) and ``scope``. Every change
and every refusal is audited; a refusal is committed before the answer.
A device out of a technician's scope is 404, like one that does not exist.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, NoReturn

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from securesystemslib.signer import Key
from sqlalchemy import select

from fwcommon.hashchain import Link
from fwcommon.keyid import KeyIdError
from update_server import device_log
from update_server.access import allow, device_route, public
from update_server.alerts import critical
from update_server.app import Services
from update_server.audit import Actor
from update_server.audit.actions import Action
from update_server.audit.recording import record, request_event
from update_server.auth import refusals
from update_server.authorizations import issuing, offers
from update_server.deployments import signed_releases
from update_server.deployments import views as deployment_views
from update_server.deployments.withdrawn import running_withdrawn
from update_server.devices import enrolment, registry, scope
from update_server.devices.authentication import remember_nonce, verify_registration
from update_server.devices.models import Device
from update_server.devices.signatures import DeviceRequestRefused
from update_server.errors import AuthenticationError, BadRequestError, ServerError
from update_server.models import Role
from update_server.publication.repository import OnlineRepository

blueprint = Blueprint("devices", __name__)

#: Who may see and accept or reject devices (a technician: their sites only).
DEVICE_READERS = (Role.ADMIN, Role.TECHNICIAN)


@blueprint.post("/api/v1/enrolment-tokens")
@allow(Role.ADMIN, fresh_otp=True)
def issue_enrolment_token() -> ResponseReturnValue:
    body = _json()
    services = _services()
    issued = enrolment.issue_token(
        g.db,
        hardware_model=body["hardware_model"],
        device_id=body.get("device_id"),
        site=body.get("site"),
        pre_authorized=bool(body.get("accept", False)),
        lifetime=timedelta(hours=body.get("expires_in_hours", 24)),
        now=services.clock(),
        actor=_actor(),
    )
    g.db.commit()
    row = issued.row
    answer = {
        "id": row.id,
        "token": issued.token,
        "hardware_model": row.hardware_model,
        "device_id": row.device_id,
        "site": row.site,
        "pre_authorized": row.pre_authorized,
        "expires_at": row.expires_at.isoformat(),
    }
    return jsonify(answer), 201


@blueprint.post("/api/v1/devices/register")
@public  # the enrolment token is the credential, the signature the proof of possession
def register_device() -> ResponseReturnValue:
    body = _json()
    services = _services()
    now, skew = services.clock(), services.config.device_request_skew
    device_id = body["device_id"]
    try:
        key = _public_key(body["public_key"])
        signed = verify_registration(key=key, device_id=device_id, now=now, skew=skew)
        remember_nonce(g.db, signed, now=now, skew=skew)
        device = enrolment.register(
            g.db,
            token=body["token"],
            device_id=device_id,
            hardware_model=body["hardware_model"],
            public_key=key,
            now=now,
            actor=Actor(f"device:{device_id}"[:64], "device", request.remote_addr or "-"),
        )
    except DeviceRequestRefused as refused:
        _refuse_registration(str(refused.reason), AuthenticationError(str(refused)))
    except ServerError as refused:
        _refuse_registration(refused.detail, refused)
    g.db.commit()
    return jsonify({"device_id": device.id, "state": device.state}), 201


@blueprint.get("/api/v1/devices")
@allow(*DEVICE_READERS)
def list_devices() -> ResponseReturnValue:
    query = scope.visible_to(g.db, g.user, select(Device).order_by(Device.id))
    releases = _published_releases()
    return jsonify({"devices": [_with_offer(device, releases) for device in g.db.scalars(query)]})


@blueprint.get("/api/v1/devices/<device_id>")
@allow(*DEVICE_READERS)
def show_device(device_id: str) -> ResponseReturnValue:
    return jsonify(_with_offer(_visible(device_id), _published_releases()))


def _published_releases() -> list[issuing.Release]:
    repository = OnlineRepository(_services().config.repository_dir, now=_services().clock())
    return offers.published_releases(repository) if repository.is_initialised() else []


def _with_offer(device: Device, releases: list[issuing.Release]) -> dict[str, Any]:
    """The inventory's summary, and the release a technician would authorize for it (O1-O3)."""
    offer = offers.offered(
        releases,
        hardware_model=device.hardware_model,
        running_version=device.running_version,
        security_floor=device.security_floor,
    )
    shown = None if offer is None else {"target_path": offer.path, "version": offer.info.version}
    signed = _signed_releases()
    withdrawn = running_withdrawn(
        releases,
        hardware_model=device.hardware_model,
        running_version=device.running_version,
        once_signed=signed.once_signed(device.hardware_model),
    )
    return {
        **registry.summary(device),
        "offered_for_authorization": shown,
        # R56, R57 (deployments.withdrawn WD3); unknown before any repository is published.
        "running_withdrawn": withdrawn if releases else None,
    }


def _signed_releases() -> signed_releases.SignedReleases:
    """What the published metadata signs now and once (WD2), read once per request."""
    if "fw_signed_releases" not in g:
        repository = OnlineRepository(_services().config.repository_dir, now=_services().clock())
        g.fw_signed_releases = signed_releases.read(repository)
    found: signed_releases.SignedReleases = g.fw_signed_releases
    return found


@blueprint.post("/api/v1/devices/<device_id>/accept")
@allow(*DEVICE_READERS)
def accept_device(device_id: str) -> ResponseReturnValue:
    return _change(device_id, "accept")


@blueprint.post("/api/v1/devices/<device_id>/reject")
@allow(*DEVICE_READERS)
def reject_device(device_id: str) -> ResponseReturnValue:
    return _change(device_id, "reject")


@blueprint.post("/api/v1/devices/<device_id>/decommission")
@allow(Role.ADMIN, fresh_otp=True)
def decommission_device(device_id: str) -> ResponseReturnValue:
    return _change(device_id, "decommission")


@blueprint.post("/api/v1/device/reports")
@device_route
def device_report() -> ResponseReturnValue:
    """R38: what the device runs, and its new log entries (``device_log``'s rules).

    The report is kept only if its entries continue the chain from the head
    last accepted; otherwise nothing of it is, the refusal is the device's
    alert (shown in the inventory, audited) and the answer names it, so the
    device keeps its entries (``client.report``).
    """
    device: Device = g.device
    now = _services().clock()
    body = request.get_json(silent=True)
    decision = _report_decision(device, body)
    detail: dict[str, Any]
    if isinstance(decision, device_log.Refused):
        device.log_alert = f"{decision.kind}: {decision.reason}"[:512]
        device.log_alert_at = now
        outcome, detail = "refused", {"refused": decision.kind.value, "seq": decision.seq}
    else:
        _keep_report(device, body, decision, now=now)
        outcome = "success"
        detail = {
            "running_version": device.running_version,
            "head": device.log_head_seq,
            # R31: the new entries' types, which critical.RULES alert on (A3).
            "events": critical.event_types(decision.new),
        }
    record(
        request_event(
            Action.DEVICE_REPORT,
            object=f"device:{device.id}",
            outcome=outcome,
            detail=detail,
            actor=f"device:{device.id}"[:64],
            role="device",
        )
    )
    g.db.commit()
    return jsonify(device_log.answer(decision))


def _report_decision(device: Device, body: Any) -> device_log.Decision:
    reported = device_log.read_status(body)
    if isinstance(reported, device_log.Refused):
        return reported
    if (reported.device_id, reported.hardware_model) != (device.id, device.hardware_model):
        return device_log.Refused(
            device_log.Refusal.MALFORMED,
            None,
            f"the report names {reported.device_id} ({reported.hardware_model}); it was signed"
            f" by {device.id} ({device.hardware_model})",
        )
    head = None
    if device.log_head_seq is not None and device.log_head_hash is not None:
        head = Link(device.log_head_seq, device.log_head_hash)
    return device_log.check_report(body.get("entries"), head=head)


def _keep_report(
    device: Device, body: Any, decision: device_log.Continues, *, now: datetime
) -> None:
    status = device_log.read_status(body)
    if isinstance(status, device_log.Refused):  # read in _report_decision already
        return
    device.running_version = status.running_version
    device.slot = status.slot
    device.security_floor = status.security_floor
    device.mode = status.mode
    device.metadata_expires = dict(status.metadata_expires)
    device.last_result = status.last_type
    device.last_report_at = now
    if decision.head is not None:
        device.log_head_seq, device.log_head_hash = decision.head.seq, decision.head.digest
    if decision.anchored_from is not None and device.log_anchored_from is None:
        device.log_anchored_from = decision.anchored_from
    # I6: what the device did with technicians' authorizations settles them.
    issuing.note_outcomes(g.db, device, decision.new, now=now, source=request.remote_addr or "-")
    # S1-S3, D5: the device's status in its deployments, and their waves.
    deployment_views.note_report(device, decision.new)


@blueprint.get("/api/v1/device/authorizations")
@device_route
def device_authorizations() -> ResponseReturnValue:
    """The technicians' authorizations the signing device may still use (I5: delivery audited)."""
    device: Device = g.device
    rows = issuing.deliver(g.db, device, now=_services().clock(), source=request.remote_addr or "-")
    g.db.commit()
    return jsonify({"authorizations": [json.loads(row.document) for row in rows]})


def _change(device_id: str, change: str) -> ResponseReturnValue:
    now = _services().clock()
    try:
        device = _visible(device_id)
        registry.change(g.db, device, change, now=now, actor=_actor())
    except ServerError as refused:
        g.db.rollback()
        registry.audit_refusal(
            g.db, device_id, change, reason=refused.detail, now=now, actor=_actor()
        )
        g.db.commit()
        raise
    g.db.commit()
    return jsonify(registry.summary(device))


def _visible(device_id: str) -> Device:
    """The device, if the caller's scope holds it; else 404 (no leak of its existence)."""
    device = g.db.get(Device, device_id)
    visible = device is not None and scope.in_scope(g.db, g.user, device)
    return registry.get(g.db, device_id, visible=visible)


def _refuse_registration(reason: str, error: ServerError) -> NoReturn:
    """E4: audited (coalesced like access refusals: an unauthenticated flood), then raised."""
    g.db.rollback()
    refusal = refusals.Refusal(
        action=Action.DEVICE_REGISTER.value,
        actor="-",
        role="-",
        source=request.remote_addr or "-",
        route=f"{request.method} {request.path}",
        reason=reason[:200],
        status=error.status,
        now=_services().clock(),
    )
    window = _services().config.refusal_audit_window
    for event in refusals.tally(g.db, refusal, window=window):
        record(event)
    g.db.commit()
    raise error


def _public_key(data: dict[str, Any]) -> Key:
    try:
        fields = {name: data[name] for name in ("keytype", "scheme", "keyval")}
        return Key.from_dict(enrolment.key_id(fields), fields)
    except (KeyError, TypeError, ValueError, KeyIdError) as exc:
        raise BadRequestError(f"public_key is not a securesystemslib public key ({exc})") from None


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


def _actor() -> Actor:
    return registry.actor_of(g.user, request.remote_addr or "-")


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
