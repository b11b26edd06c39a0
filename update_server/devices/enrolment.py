"""Enrolment tokens and device registration (R10).

Rules:

- E1 A token is random (256 bits), shown once when issued and stored only
  as its SHA-256. It is bound to a hardware model, optionally a device id
  and a site, and expires (default 24 h, at most ``ENROLMENT_TOKEN_MAX``).
- E2 A token works once: registration marks it used with a conditional
  update (``used_at IS NULL``) in the registration's transaction, so of two
  concurrent registrations with one token exactly one wins, on every worker.
- E3 Registration proves possession of the key it registers: the request
  is signed with it (``signatures``; the view checks it before calling
  ``register``). The device id is new, the model and device id are the
  ones the token is bound to; the device is ``accepted`` if the token was
  pre-authorized, else ``pending``.
- E4 Unknown, expired and used tokens are 401 (the token is the
  credential); a token bound to another model or device id is 403; an id
  already registered is 409. Issuing, registering and every refusal are
  audited (the caller audits refusals, committed on their own).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from securesystemslib.signer import Key
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fwcommon.keyid import default_keyid
from fwcommon.message_signatures import UnsupportedKeyError, algorithm_for
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.config import ENROLMENT_TOKEN_MAX
from update_server.devices.models import Device, DeviceState, EnrolmentToken
from update_server.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
)

TOKEN_PREFIX = "fwenrol_"  # noqa: S105 - a prefix, not a secret
DEFAULT_LIFETIME = timedelta(hours=24)
MIN_LIFETIME = timedelta(minutes=5)
#: Device ids, models and sites: what the client accepts as a device id.
DEVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
_DEVICE_NAME = re.compile(DEVICE_NAME)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``token`` is its only clear copy (E1)."""

    token: str
    row: EnrolmentToken


def key_id(fields: dict[str, Any]) -> str:
    """The default keyid of a public key's fields (keytype, scheme, keyval)."""
    return default_keyid(fields["keytype"], fields["scheme"], fields["keyval"])


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a valid device id, hardware model or site; else 400."""
    if not _DEVICE_NAME.match(value):
        raise BadRequestError(
            f"{kind} {value!r} is not valid: 1 to 64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def issue_token(
    db: Session,
    *,
    hardware_model: str,
    device_id: str | None,
    site: str | None,
    pre_authorized: bool,
    lifetime: timedelta,
    now: datetime,
    actor: Actor,
) -> IssuedToken:
    """Issue a one-time enrolment token (E1), audited."""
    check_name("hardware model", hardware_model)
    if device_id is not None:
        check_name("device id", device_id)
    if site is not None:
        check_name("site", site)
    if not MIN_LIFETIME <= lifetime <= ENROLMENT_TOKEN_MAX:
        raise BadRequestError(
            f"an enrolment token lives from {MIN_LIFETIME} to {ENROLMENT_TOKEN_MAX.days} days;"
            f" not {lifetime}"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = EnrolmentToken(
        token_hash=token_hash(token),
        hardware_model=hardware_model,
        device_id=device_id,
        site=site,
        pre_authorized=pre_authorized,
        created_by=actor.name,
        created_at=now,
        expires_at=now + lifetime,
    )
    db.add(row)
    db.flush()
    detail = {
        "token": row.id,
        "hardware_model": hardware_model,
        "device_id": device_id,
        "site": site,
        "pre_authorized": pre_authorized,
        "expires_at": row.expires_at.isoformat(),
    }
    append(
        db,
        audit_event(
            Action.ENROLMENT_TOKEN,
            actor=actor,
            object=f"enrolment-token:{row.id}",
            outcome="success",
            time=now,
            detail=detail,
        ),
    )
    return IssuedToken(token, row)


def register(
    db: Session,
    *,
    token: str,
    device_id: str,
    hardware_model: str,
    public_key: Key,
    now: datetime,
    actor: Actor,
) -> Device:
    """Register ``device_id`` with ``public_key`` using ``token`` (E2-E4), audited."""
    check_name("device id", device_id)
    check_name("hardware model", hardware_model)
    try:
        algorithm_for(public_key)
    except UnsupportedKeyError as exc:
        raise BadRequestError(str(exc)) from None
    row = _valid_token(db, token, now=now)
    if row.hardware_model != hardware_model:
        raise ForbiddenError(
            f"this enrolment token is for hardware model {row.hardware_model}, not {hardware_model}"
        )
    if row.device_id is not None and row.device_id != device_id:
        raise ForbiddenError(f"this enrolment token is for device {row.device_id}, not {device_id}")
    if db.get(Device, device_id) is not None:
        raise ConflictError(
            f"device {device_id} is registered already; a device registers once"
            " (decommissioned ids stay taken)"
        )
    used = db.execute(
        update(EnrolmentToken)
        .where(EnrolmentToken.id == row.id, EnrolmentToken.used_at.is_(None))
        .values(used_at=now, used_by=device_id)
    )
    if getattr(used, "rowcount", 0) != 1:  # E2: another registration used it first
        raise AuthenticationError(USED)
    state = DeviceState.ACCEPTED if row.pre_authorized else DeviceState.PENDING
    device = Device(
        id=device_id,
        hardware_model=hardware_model,
        site=row.site,
        state=state.value,
        public_key=public_key.to_dict(),
        key_id=public_key.keyid,
        enrolment_token_id=row.id,
        registered_at=now,
    )
    db.add(device)
    db.flush()
    append(
        db,
        audit_event(
            Action.DEVICE_REGISTER,
            actor=actor,
            object=f"device:{device_id}",
            outcome="success",
            time=now,
            detail={
                "token": row.id,
                "hardware_model": hardware_model,
                "site": row.site,
                "state": state.value,
                "key_id": public_key.keyid,
            },
        ),
    )
    return device


UNKNOWN = "this enrolment token is not valid: ask the administrator for a new one"
EXPIRED = "this enrolment token has expired: ask the administrator for a new one"
USED = "this enrolment token was used already (a token works once): ask for a new one"


def _valid_token(db: Session, token: str, *, now: datetime) -> EnrolmentToken:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise AuthenticationError(UNKNOWN)
    row = db.scalars(
        select(EnrolmentToken).where(EnrolmentToken.token_hash == token_hash(token))
    ).first()
    if row is None:
        raise AuthenticationError(UNKNOWN)
    if row.used_at is not None:
        raise AuthenticationError(USED)
    if now >= _aware(row.expires_at):
        raise AuthenticationError(EXPIRED)
    return row


def _aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; every time stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
