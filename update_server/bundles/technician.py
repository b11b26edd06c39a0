"""A technician's bundle for the device in front of them: one core for the page and the API.

The web page (``web.bundle_pages``) and ``POST /api/v1/devices/<id>/bundle``
(``bundles.views``, what ``fwsign bundle`` calls) make the same bundle by
the same call, ``make``. The fresh one-time code is checked and spent
before either reaches it (``access.enforce``, ``fresh_otp``: R9, R25).
Rules:

T1 (R6) Only a device of the technician's sites: one out of scope is
   ``NotFoundError`` (404), exactly as one that does not exist. Whether it
   may have a bundle (accepted: 409 otherwise) is ``making.device_request``'s.
T2 A frozen system makes no bundle (``freeze.state.refuse_if_frozen``, 423):
   the bundle issues an authorization, a change the freeze stops.
T3 (R9, R58) A release that requires an authorization gets one issued by
   ``authorizations.issuing.issue`` (the technician page's own call: rules
   I1-I7, the same audit), bound to this device and to the SHA-256 the
   published metadata signs; the bundle carries that document, as issued,
   as ``authorization.json`` (R46: what the device imports from media).
T4 All or nothing: the authorization, the bundle's audit entry
   (``bundle.create``) and the file are one transaction; a refusal (a
   ``ServerError``, or the bound: ``BundleError``) rolls the authorization
   back, is audited as refused and committed, then raised again for the
   caller to answer (the code stays spent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from flask import Response, send_file
from sqlalchemy.orm import Session

from fwcommon.bundle import BundleError
from update_server.audit import Actor
from update_server.authorizations import issuing
from update_server.bundles import making
from update_server.bundles.errors import UnusableError
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.errors import NotFoundError, ServerError
from update_server.freeze import state as freeze_state
from update_server.models import User
from update_server.publication.repository import OnlineRepository

if TYPE_CHECKING:
    from update_server.app import Services

MEDIA_TYPE = "application/x-tar"


@dataclass(frozen=True)
class Order:
    """A technician's request: the device, the authorization's lifetime, the root to start after."""

    technician: User
    device_id: str
    lifetime: timedelta
    source: str
    root_from: int | None = None


@dataclass(frozen=True)
class Delivered:
    """A bundle made (T4: committed), its file name and its authorization's expiry."""

    made: making.Made
    name: str
    expires: datetime | None


def device_in_scope(db: Session, technician: User, device_id: str) -> Device:
    """T1: the device, if in this technician's scope (404 otherwise, as if it did not exist)."""
    device: Device | None = db.get(Device, device_id)
    if device is None or not scope.in_scope(db, technician, device):
        raise NotFoundError(f"no device {device_id[:64]}")
    return device


def make(
    db: Session,
    services: Services,
    order: Order,
    work: Path,
    *,
    max_bytes: int,
    wait: float = making.PAGE_LOCK_WAIT,
) -> Delivered:
    """T1-T4: the bundle for ``order`` written in ``work``, audited and committed, or raised."""
    now = services.clock()
    actor = Actor(order.technician.name, order.technician.role, order.source)
    try:
        device = device_in_scope(db, order.technician, order.device_id)
        freeze_state.refuse_if_frozen(db)
        request = making.device_request(db, device.id, root_from=order.root_from, version=None)
        contents = making.collect(services.config, request, now=now, wait=wait)
        document, nonce, expires = _authorization(db, services, order, contents)
        name = f"bundle-{device.id}-{contents.release.info.version}.tar"
        made = making.write(
            contents, work / name, now=now, max_bytes=max_bytes, authorization=document
        )
        making.audit_made(db, made, actor=actor, now=now, nonce=nonce)
        db.commit()
    except (ServerError, BundleError) as refused:
        db.rollback()
        reason = refused.detail if isinstance(refused, ServerError) else str(refused)
        making.audit_refused(
            db,
            actor=actor,
            model=_model_of(db, order.device_id),
            device=order.device_id,
            reason=reason,
            now=now,
        )
        db.commit()
        raise
    return Delivered(made, name, expires)


def attachment(stream: BinaryIO, name: str) -> Response:
    """The bundle as the answer: a tar attachment, never cached, never sniffed."""
    response = send_file(stream, mimetype=MEDIA_TYPE, as_attachment=True, download_name=name)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _authorization(
    db: Session, services: Services, order: Order, contents: making.Contents
) -> tuple[bytes | None, str | None, datetime | None]:
    """T3: the release's authorization for the device, issued as the technician page does."""
    if not contents.release.info.requires_authorization:
        return None, None, None
    now = services.clock()
    repository = OnlineRepository(services.config.repository_dir, now=now)
    release = issuing.published_release(repository, contents.release.path)
    if release.sha256 != contents.release.sha256:
        raise UnusableError(f"{release.path} changed while the bundle was made: try again")
    (row,) = issuing.issue(
        db,
        technician=order.technician,
        device_ids=[order.device_id],
        release=release,
        lifetime=order.lifetime,
        signer=services.signer("authorization"),
        now=now,
        source=order.source,
    )
    return row.document.encode("utf-8"), row.nonce, row.expires_at


def _model_of(db: Session, device_id: str) -> str:
    device: Device | None = db.get(Device, device_id)
    return device.hardware_model if device is not None else "-"
