"""Issuing a technician's authorization, and following what became of it (R9, R25, R58).

The document's format and the device's check are ``repo_metadata.authorization``;
this module decides when the server may sign one. Rules:

- I1 (R9): only a technician, confirming with a fresh one-time code (a code
  used to log in cannot confirm: the access layer's ``fresh_otp``).
- I2 (R6): every device named is in the technician's scope (else 404, as if
  it did not exist) and accepted (a pending, rejected or decommissioned
  device gets nothing: 409).
- I3: the release is published, signed for each device's hardware model,
  and requires an authorization (else 409: there is nothing to authorize);
  the document binds the SHA-256 the published metadata signs, never one
  the caller gives.
- I4: one code confirms one release for an explicit list of at most
  ``MAX_DEVICES`` devices, each getting its own document (bound to one
  device, its own random 256-bit nonce); a lifetime of 1 to
  ``MAX_LIFETIME_MINUTES`` minutes (15 by default); all or nothing.
- I5 (R27): each document issued is one audit entry (who, which device,
  which release and hash, when, from where, until when); each delivery to
  the device and each outcome the device reports too. A refused request is
  one entry (``refused``: who, which devices, which release, why), and the
  fresh code it came with stays spent: the caller commits the refusal, and
  ``issue`` writes its rows inside a savepoint, so a refusal leaves none.
- I6: the device's report decides the status: ``authorization_accepted``
  means the device bound it to the install it allows (``accepted``: the
  install may still be deferred while the device is in use, R52);
  ``authorization_used`` that the install is being activated (``used``); a
  refusal event names why the device refused it (on the device it names,
  the row's outcome; a refusal by another device is audited against it,
  the row unchanged). A document never accepted after its expiry is
  ``expired``.
- I7 (freeze F3, R24): nothing is issued while the system is frozen (423,
  saying who froze it, since when and why), on the API and the
  technician's page alike; the refusal is audited as in I5.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from securesystemslib.signer import Signer
from sqlalchemy import select
from sqlalchemy.orm import Session

from repo_metadata.authorization import DEFAULT_GRACE, Authorization, sign
from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo
from update_server.audit import Actor, append, audit_event
from update_server.audit.actions import Action
from update_server.authorizations.models import IssuedAuthorization
from update_server.devices import scope
from update_server.devices.models import Device, DeviceState
from update_server.errors import BadRequestError, ConflictError, NotFoundError
from update_server.freeze import state as freeze_state
from update_server.models import Role, User
from update_server.publication.repository import OnlineRepository

MAX_DEVICES = 20
DEFAULT_LIFETIME_MINUTES = 15
MAX_LIFETIME_MINUTES = 60
#: Device events (their ``type``) that settle an authorization's outcome (I6).
OUTCOME_EVENTS = frozenset(
    {
        "authorization_accepted",
        "authorization_used",
        "authorization_replayed",
        "authorization_expired",
        "authorization_wrong_device",
        "authorization_wrong_release",
        "authorization_bad_signature",
        "authorization_untrusted_key",
    }
)


class Status(StrEnum):
    """What a technician sees of an authorization."""

    PENDING = "pending"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    USED = "used"
    REFUSED = "refused"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Release:
    """A published release, as its signed metadata says (I3)."""

    path: str
    sha256: str
    info: FirmwareInfo


def published_release(repository: OnlineRepository, path: str) -> Release:
    """I3: ``path`` as the published metadata signs it; 404 if no published role lists it."""
    target = repository.published_target(path)
    if target is not None:
        try:
            return Release(path, target.hashes["sha256"], FirmwareInfo.from_target(target))
        except InvalidFieldError:
            pass
    raise NotFoundError(f"{path[:300]!r} is not a published firmware release")


def issue(
    db: Session,
    *,
    technician: User,
    device_ids: Sequence[str],
    release: Release,
    lifetime: timedelta,
    signer: Signer,
    now: datetime,
    source: str,
) -> list[IssuedAuthorization]:
    """I2 to I7: one signed document per device, recorded and audited; nothing on refusal."""
    freeze_state.refuse_if_frozen(db)  # I7
    _check_request(device_ids, lifetime)
    if not release.info.requires_authorization:
        raise ConflictError(
            f"{release.path} does not require an authorization: devices install it without one"
        )
    devices = [_device_in_scope(db, technician, device_id) for device_id in device_ids]
    for device in devices:
        if device.state != DeviceState.ACCEPTED:
            raise ConflictError(
                f"device {device.id} is {device.state}: only an accepted device can be authorized"
            )
        if device.hardware_model not in release.info.hardware_models:
            raise ConflictError(
                f"{release.path} is not signed for {device.id}'s model {device.hardware_model}"
            )
    actor = Actor(technician.name, technician.role, source)
    with db.begin_nested():
        issued = [
            _issue_one(db, actor, device, release, lifetime=lifetime, signer=signer, now=now)
            for device in devices
        ]
        db.flush()
    return issued


def audit_refusal(
    db: Session,
    *,
    technician: User,
    source: str,
    device_ids: Sequence[str],
    target_path: str,
    reason: str,
    now: datetime,
) -> None:
    """I5: a refused request, audited in the caller's transaction (which keeps its code spent)."""
    append(
        db,
        audit_event(
            Action.AUTHORIZATION_ISSUE,
            actor=Actor(technician.name, technician.role, source),
            object=f"release:{target_path[:300]}",
            outcome="refused",
            time=now,
            detail={"devices": [str(d)[:64] for d in device_ids[:MAX_DEVICES]], "reason": reason},
        ),
    )


def listed_for(db: Session, user: User, *, limit: int = 500) -> list[IssuedAuthorization]:
    """The authorizations ``user`` may read, newest first (a technician: their sites')."""
    query = select(IssuedAuthorization).order_by(IssuedAuthorization.id.desc()).limit(limit)
    if user.role == Role.TECHNICIAN:
        visible = scope.visible_to(db, user, select(Device.id))
        query = query.where(IssuedAuthorization.device_id.in_(visible))
    return list(db.scalars(query))


def shown_to(db: Session, user: User, authorization_id: int) -> IssuedAuthorization:
    """One authorization ``user`` may read; 404 otherwise (as if it did not exist)."""
    row = db.get(IssuedAuthorization, authorization_id)
    device = None if row is None else db.get(Device, row.device_id)
    visible = device is not None and (
        user.role != Role.TECHNICIAN or scope.in_scope(db, user, device)
    )
    if row is None or not visible:
        raise NotFoundError(f"no authorization {authorization_id}")
    return row


def status(row: IssuedAuthorization, *, now: datetime) -> Status:
    if row.outcome == "authorization_used":
        return Status.USED
    if row.outcome == "authorization_accepted":
        return Status.ACCEPTED
    if row.outcome is not None:
        return Status.REFUSED
    if now > _aware(row.expires_at, now):
        return Status.EXPIRED
    return Status.DELIVERED if row.delivered_at is not None else Status.PENDING


def summary(row: IssuedAuthorization, *, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "device_id": row.device_id,
        "target_path": row.target_path,
        "sha256": row.sha256,
        "technician": row.technician,
        "issued_at": row.issued_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "status": status(row, now=now).value,
        "outcome": row.outcome,
    }


def deliver(
    db: Session, device: Device, *, now: datetime, source: str
) -> list[IssuedAuthorization]:
    """The documents a device may still use, oldest first; a first delivery is audited (I5)."""
    rows = list(
        db.scalars(
            select(IssuedAuthorization)
            .where(IssuedAuthorization.device_id == device.id)
            .where(IssuedAuthorization.outcome.is_(None))
            .order_by(IssuedAuthorization.id)
        )
    )
    usable = [row for row in rows if now <= _aware(row.expires_at, now)]
    for row in usable:
        if row.delivered_at is None:
            row.delivered_at = now
            _audit(db, Action.AUTHORIZATION_DELIVER, row, _device_actor(device, source), now)
    return usable


def note_outcomes(
    db: Session,
    device: Device,
    entries: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    source: str,
) -> int:
    """I6: settle authorizations from the device's reported log entries; how many changed.

    An entry names its document by nonce (``authorization_accepted`` and a
    refused handed-over document), else by target: the newest unsettled
    document for that release on this device.
    """
    changed = 0
    for entry in entries:
        kind = entry.get("type")
        detail = entry.get("detail")
        if kind not in OUTCOME_EVENTS or not isinstance(detail, Mapping):
            continue
        row = _named_by(db, device, detail)
        if row is None or row.outcome not in _SETTLES_FROM:
            continue
        actor = _device_actor(device, source)
        if row.device_id != device.id:  # another device refused it: shown, the row unchanged
            _audit(db, Action.AUTHORIZATION_OUTCOME, row, actor, now, outcome=str(kind))
            continue
        row.outcome = str(kind)
        row.outcome_at = now
        _audit(db, Action.AUTHORIZATION_OUTCOME, row, actor, now)
        changed += 1
    return changed


#: I6: what a reported event may follow: nothing yet, or a bound (accepted) document.
_SETTLES_FROM = frozenset({None, "authorization_accepted"})


def _check_request(device_ids: Sequence[str], lifetime: timedelta) -> None:
    if not device_ids:
        raise BadRequestError("name at least one device")
    if len(device_ids) > MAX_DEVICES:
        raise BadRequestError(f"one code confirms at most {MAX_DEVICES} devices; split the list")
    if len(set(device_ids)) != len(device_ids):
        raise BadRequestError("a device is named twice; each gets one authorization")
    minutes = lifetime / timedelta(minutes=1)
    if not 1 <= minutes <= MAX_LIFETIME_MINUTES:
        raise BadRequestError(
            f"an authorization lasts 1 to {MAX_LIFETIME_MINUTES} minutes (default"
            f" {DEFAULT_LIFETIME_MINUTES})"
        )


def _device_in_scope(db: Session, technician: User, device_id: str) -> Device:
    device = db.get(Device, device_id)
    if device is None or not scope.in_scope(db, technician, device):
        raise NotFoundError(f"no device {device_id}")
    return device


def _issue_one(
    db: Session,
    actor: Actor,
    device: Device,
    release: Release,
    *,
    lifetime: timedelta,
    signer: Signer,
    now: datetime,
) -> IssuedAuthorization:
    issued_at = now.replace(microsecond=0)
    authorization = Authorization(
        device_id=device.id,
        target_path=release.path,
        sha256=release.sha256,
        nonce=secrets.token_hex(32),
        issued=issued_at,
        expires=issued_at + lifetime,
        technician=actor.name,
        grace=DEFAULT_GRACE,
    )
    document = sign(authorization, signer)
    row = IssuedAuthorization(
        nonce=authorization.nonce,
        device_id=device.id,
        target_path=release.path,
        sha256=release.sha256,
        technician=actor.name,
        source=actor.source,
        issued_at=authorization.issued,
        expires_at=authorization.expires,
        grace_seconds=int(authorization.grace.total_seconds()),
        document=document.to_bytes().decode("utf-8"),
    )
    db.add(row)
    _audit(db, Action.AUTHORIZATION_ISSUE, row, actor, now)
    return row


def _named_by(db: Session, device: Device, detail: Mapping[str, Any]) -> IssuedAuthorization | None:
    """The document an entry names: by nonce (unique, whichever device it was for), else the
    newest unsettled one for that release on this device."""
    nonce = detail.get("nonce")
    if isinstance(nonce, str):
        found = select(IssuedAuthorization).where(IssuedAuthorization.nonce == nonce)
        return db.scalars(found).first()
    query = select(IssuedAuthorization).where(IssuedAuthorization.device_id == device.id)
    target = detail.get("target")
    if not isinstance(target, str):
        return None
    return db.scalars(
        query.where(IssuedAuthorization.target_path == target)
        .where(IssuedAuthorization.outcome.is_(None))
        .order_by(IssuedAuthorization.id.desc())
    ).first()


def _audit(
    db: Session,
    action: Action,
    row: IssuedAuthorization,
    actor: Actor,
    now: datetime,
    *,
    outcome: str | None = None,
) -> None:
    detail: dict[str, Any] = {
        "target": row.target_path,
        "sha256": row.sha256,
        "technician": row.technician,
        "issued_from": row.source,
        "expires": row.expires_at.isoformat(),
        "nonce": row.nonce[:16],
    }
    if outcome is not None or row.outcome is not None:
        detail["outcome"] = outcome or row.outcome
    if outcome is not None:
        detail["reported_by"] = actor.name
    append(
        db,
        audit_event(
            action,
            actor=actor,
            object=f"device:{row.device_id}",
            outcome="success",
            time=now,
            detail=detail,
        ),
    )


def _device_actor(device: Device, source: str) -> Actor:
    return Actor(f"device:{device.id}"[:64], "device", source)


def _aware(moment: datetime, like: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns: they are UTC."""
    if moment.tzinfo is None and like.tzinfo is not None:
        return moment.replace(tzinfo=like.tzinfo)
    return moment
