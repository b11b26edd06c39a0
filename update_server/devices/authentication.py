"""The signed device request decision (``signatures``) applied to the current request.

``access.enforce`` calls ``authenticate`` for a view marked
``@device_route``: it looks the signing device up, verifies the request
(D1-D4), refuses any device but an accepted one (D6), and records the
nonce (D5): a row whose primary key is (device, nonce), so a second use is
refused atomically across workers; rows older than twice the skew window
are pruned as new ones arrive. The device's ``last_seen_at`` is updated.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import g, request
from securesystemslib.signer import Key
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fwcommon.message_signatures import Message
from update_server.devices.models import Device, DeviceNonce, DeviceState
from update_server.devices.signatures import (
    DeviceRequestRefused,
    Refusal,
    SignedRequest,
    claimed_device,
    verify,
)

_STATE_REFUSALS = {
    DeviceState.PENDING.value: Refusal.PENDING,
    DeviceState.REJECTED.value: Refusal.REJECTED,
    DeviceState.DECOMMISSIONED.value: Refusal.DECOMMISSIONED,
}


def current_message() -> Message:
    """The current request as the signature profile reads it."""
    return Message(request.method, request.url, dict(request.headers.items()))


def authenticate(db: Session, *, now: datetime, skew: timedelta) -> Device:
    """The accepted device that signed this request (D1-D6), or ``DeviceRequestRefused``."""
    message = current_message()
    device_id = claimed_device(message.headers)
    device = db.get(Device, device_id)
    if device is None:
        raise DeviceRequestRefused(Refusal.UNKNOWN_DEVICE)
    signed = verify(
        message,
        body=request.get_data(cache=True),
        key=registered_key(device),
        device_id=device.id,
        now=now,
        skew=skew,
    )
    refusal = _STATE_REFUSALS.get(device.state)
    if refusal is not None:
        raise DeviceRequestRefused(refusal, device_id=device.id)
    remember_nonce(db, signed, now=now, skew=skew)
    device.last_seen_at = now
    g.device = device
    return device


def verify_registration(
    *, key: Key, device_id: str, now: datetime, skew: timedelta
) -> SignedRequest:
    """E3: the registration is signed by the key it registers, for its device id."""
    message = current_message()
    claimed_device(message.headers)
    return verify(
        message,
        body=request.get_data(cache=True),
        key=key,
        device_id=device_id,
        now=now,
        skew=skew,
    )


def registered_key(device: Device) -> Key:
    return Key.from_dict(device.key_id, dict(device.public_key))


def remember_nonce(db: Session, signed: SignedRequest, *, now: datetime, skew: timedelta) -> None:
    """D5: record the nonce, or refuse it as replayed; prune those past the window."""
    db.execute(delete(DeviceNonce).where(DeviceNonce.seen_at < now - 2 * skew))
    try:
        with db.begin_nested():
            db.add(DeviceNonce(device_id=signed.device_id, nonce=signed.nonce, seen_at=now))
    except IntegrityError:
        raise DeviceRequestRefused(Refusal.REPLAYED, device_id=signed.device_id) from None
