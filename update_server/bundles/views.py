"""``POST /api/v1/devices/<device_id>/bundle``: a technician's bundle through the API.

What ``fwsign bundle`` calls from the technician's own computer: the same
bundle the device's web page makes, by the same call (``bundles.technician``
T1-T4), with the authorization its release requires. Rules:

A1 (R9, R25) Only a technician, with a fresh one-time code in ``X-OTP``
   (``access.enforce``: later than the login's, spent once, a wrong one
   counted like a failed login), exactly as ``POST /api/v1/authorizations``.
A2 The body is ``{}`` or ``{"from_root": N}``, held to the OpenAPI document
   before the view (``request_validation``): the root version the device
   trusts, the chain starting after it (1 by default: the whole chain).
A3 Refusals are problems a person can act on, issue nothing and are audited
   as refused (T4): 404 a device outside the technician's sites (as if
   absent), 409 a device not accepted or nothing to carry, 413 a bundle over
   ``fwcommon.bundle.DEFAULT_MAX_BYTES``, 423 frozen, 503 a publication in
   progress (try again), 507 the server's disk failing the write.
A4 The answer is the file (``application/x-tar``, attachment, ``no-store``),
   written to a temporary directory, opened and unlinked before it is
   streamed: nothing of it stays on the server.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, current_app, g, request
from flask.typing import ResponseReturnValue

from fwcommon.bundle import DEFAULT_MAX_BYTES, BundleError
from update_server.access import allow
from update_server.app import Services
from update_server.authorizations import issuing
from update_server.bundles import technician
from update_server.errors import InsufficientStorageError, PayloadTooLargeError
from update_server.models import Role

blueprint = Blueprint("bundle_api", __name__)


@blueprint.post("/api/v1/devices/<device_id>/bundle")
@allow(Role.TECHNICIAN, fresh_otp=True)
def make_bundle(device_id: str) -> ResponseReturnValue:
    """A1-A4: the fresh code was spent by ``access.enforce``; then the bundle, as a whole."""
    body = request.get_json(silent=True) or {}  # A2: checked against the document already
    order = technician.Order(
        technician=g.user,
        device_id=device_id,
        lifetime=timedelta(minutes=issuing.DEFAULT_LIFETIME_MINUTES),
        source=request.remote_addr or "-",
        root_from=body.get("from_root"),
    )
    services: Services = current_app.extensions["fw"]
    work = Path(tempfile.mkdtemp(prefix="fw-bundle-"))
    try:
        delivered = technician.make(g.db, services, order, work, max_bytes=DEFAULT_MAX_BYTES)
        stream = delivered.made.path.open("rb")
    except BundleError as refused:  # A3: audited as refused by ``make``
        if isinstance(refused.__cause__, OSError):  # the server's disk, not the request
            raise InsufficientStorageError(
                "no bundle was made: the server could not write it; try again later, or tell"
                " an operator (free space in the server's temporary directory)"
            ) from None
        raise PayloadTooLargeError(
            f"no bundle was made: {refused}. An operator can make a larger one on the server"
            " (fwserver bundle --max-bytes) for you to carry"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)  # A4: the open stream outlives its name
    return technician.attachment(stream, delivered.name)
