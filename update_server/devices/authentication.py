"""The signed device request decision (``signatures``) applied to the current request.

``access.enforce`` calls ``authenticate`` for a view marked
``@device_route``: it looks the signing device up, verifies the request
(D1-D4), refuses any device but an accepted one (D6), and records the
nonce (D5). The device's ``last_seen_at`` is updated. The nonce store:

- N1 A nonce is a row whose primary key is (device, nonce), inserted with
  ``ON CONFLICT DO NOTHING``: the database, shared by every worker, says
  in one statement whether it was new; none inserted is ``replayed``. (No
  savepoint: one round trip instead of three on PostgreSQL.) A concurrent
  insert of the same nonce waits for the other transaction; the loser
  finds the row and is refused.
- N2 A row older than twice the skew window is deleted: a request that
  reused its nonce now would be ``stale`` (D4: its ``created`` lies within
  the window of the first use, so now outside it), so the row stops
  nothing. Each process prunes at most once per ``PRUNE_EVERY`` (by the
  request's clock) rather than at every request: rows are kept a little
  longer, never less, and workers rarely delete the same rows at once.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from flask import g, request
from securesystemslib.signer import Key
from sqlalchemy import Insert, delete
from sqlalchemy.dialects import postgresql, sqlite
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

#: N2: how often one process prunes the nonces past the window.
PRUNE_EVERY = timedelta(seconds=10)

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
    """D5 (N1, N2): record the nonce, or refuse it as replayed; prune those past the window."""
    if _pruner.due(db, now):
        db.execute(delete(DeviceNonce).where(DeviceNonce.seen_at < now - 2 * skew))
    row = {"device_id": signed.device_id, "nonce": signed.nonce, "seen_at": now}
    insert = _insert_if_new(db)
    if insert is not None:
        new = db.execute(insert.values(row).returning(DeviceNonce.nonce)).first() is not None
    else:  # pragma: no cover - a database without ON CONFLICT: the savepoint
        new = _insert_in_savepoint(db, row)
    if not new:
        raise DeviceRequestRefused(Refusal.REPLAYED, device_id=signed.device_id)


def _insert_if_new(db: Session) -> Insert | None:
    """N1: ``INSERT ... ON CONFLICT DO NOTHING`` in the session's dialect (None: not known)."""
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(DeviceNonce).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(DeviceNonce).on_conflict_do_nothing()
    return None


def _insert_in_savepoint(db: Session, row: dict[str, object]) -> bool:  # pragma: no cover
    try:
        with db.begin_nested():
            db.add(DeviceNonce(**row))
    except IntegrityError:
        return False
    return True


class _Pruner:
    """N2: when this process last pruned each database's nonces."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, datetime] = {}

    def due(self, db: Session, now: datetime) -> bool:
        key = db.get_bind().engine.url.render_as_string(hide_password=True)
        with self._lock:
            last = self._last.get(key)
            if last is not None and last <= now < last + PRUNE_EVERY:
                return False
            self._last[key] = now
            return True


_pruner = _Pruner()
