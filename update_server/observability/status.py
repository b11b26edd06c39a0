"""What the server is and how it stands (R38): ``GET /api/v1/status`` and ``fwserver status``.

``server_status`` gathers, for people and their monitoring, in one JSON
object (docs/api.md):

- S1 ``server``: the fwserver version, and the database's schema revision
  beside the one this code needs (``migrations`` M3).
- S2 ``mode``: ``normal`` or ``frozen`` (the failsafe freeze, ``freeze``),
  with who froze, when and why.
- S3 ``ready``: the readiness checks (``readiness`` Y1-Y3), with their
  reasons: this answer is for authenticated people, not the public.
- S4 ``online_keys``: each configured online key's id, or why it does not
  load; for snapshot and timestamp, whether the published root trusts it.
- S5 ``metadata``: every published role's version and expiry, and the
  warnings of ``expiry`` (X1-X4) at the server's ``now``.
- S6 ``fleet``: the devices by state; the accepted ones by hardware model
  and by the version they last reported (``unknown``: none reported yet).
- S7 ``deployments`` in progress (awaiting approval, running, paused: each
  with its waves and device statuses) and the ``alerts`` delivery backlog
  of each configured webhook (``alerts.backlog``).
- S8 ``warnings``: every warning above as one line a person can act on; the
  CLI prints them and exits non-zero (``cli_status``).
- S9 ``clock``: whether the system clock is synchronized (``clock_sync``
  C1-C4): one-time codes allow 30 seconds of skew, so a clock that is not
  synchronized, or whose state cannot be read, is a warning.

Nothing here changes anything: reads only, and no secret is shown (a key
that fails to load is named with its error, never its PIN).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from tuf.api.metadata import Root, Snapshot, Timestamp

from update_server.alerts import backlog
from update_server.app import Services
from update_server.deployments import rollout
from update_server.deployments.models import Deployment
from update_server.devices.models import Device, DeviceState
from update_server.freeze.state import current as current_freeze
from update_server.migrations import current as current_revision
from update_server.migrations import head as head_revision
from update_server.observability.clock_sync import sync_of
from update_server.observability.expiry import ExpiryWarning, RoleExpiry, expiry_warnings
from update_server.observability.readiness import (
    KEY_ERRORS,
    ROOT_LISTED,
    Readiness,
    readiness,
)
from update_server.publication.errors import PublicationError
from update_server.publication.renewal import renew_at
from update_server.publication.repository import OnlineRepository
from update_server.publication.status import published_status

PACKAGE = "fwupdate"
#: S6: the label of devices that have not reported a version yet.
UNKNOWN = "unknown"
_INSTANT = "%Y-%m-%dT%H:%M:%SZ"


def server_status(services: Services, db: Session) -> dict[str, Any]:
    """S1-S9 at the server's ``now``."""
    now = services.clock()
    repo = OnlineRepository(services.config.repository_dir, now=now)
    ready = readiness(services, db)
    metadata, metadata_warnings = metadata_status(repo, services, now)
    keys = _online_keys(services, repo)
    # A key that does not load is a readiness failure already (Y3): said once.
    clock = sync_of(services.clock)
    warnings = [*_readiness_warnings(ready), *(w.message for w in metadata_warnings)]
    warnings += [clock.warning] if clock.warning else []
    return {
        "server": _server(db),
        "mode": _mode(db),
        "ready": {**ready.to_json(), "reasons": _reasons(ready)},
        "online_keys": keys,
        "metadata": metadata,
        "fleet": fleet_summary(db),
        "deployments": deployments_in_progress(db),
        "alerts": alert_backlog(db, services),
        "clock": clock.to_json(),
        "warnings": warnings,
    }


def server_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _server(db: Session) -> dict[str, Any]:
    """S1 (a database that does not answer has no revision: the readiness says why)."""
    try:
        schema = current_revision(db.connection())
    except SQLAlchemyError:
        db.rollback()
        schema = None
    return {"version": server_version(), "schema": schema, "schema_expected": head_revision()}


def _mode(db: Session) -> dict[str, Any]:
    """S2."""
    state = current_freeze(db)
    return {
        "mode": state.mode.value,
        "since": None if state.since is None else state.since.strftime(_INSTANT),
        "frozen_by": state.frozen_by,
        "reason": state.reason,
    }


def _reasons(ready: Readiness) -> dict[str, str]:
    return {check.value: reason for check, reason in ready.failures.items() if reason is not None}


def _readiness_warnings(ready: Readiness) -> list[str]:
    return [f"not ready: {check}: {reason}" for check, reason in _reasons(ready).items()]


def _online_keys(services: Services, repo: OnlineRepository) -> dict[str, dict[str, Any]]:
    """S4."""
    trusted = _root_keyids(repo)
    keys: dict[str, dict[str, Any]] = {}
    for role in sorted(services.config.online_keys):
        try:
            keyid = services.signer(role).public_key.keyid
        except KEY_ERRORS as exc:
            keys[role] = {"error": str(exc) or type(exc).__name__}
            continue
        keys[role] = {"keyid": keyid}
        if role in ROOT_LISTED and trusted is not None:
            keys[role]["trusted_by_root"] = keyid in trusted.get(role, ())
    return keys


def _root_keyids(repo: OnlineRepository) -> dict[str, list[str]] | None:
    try:
        root = repo.published(Root.type) if repo.is_initialised() else None
    except (PublicationError, OSError, ValueError):
        return None
    if root is None:
        return None
    return {role: list(root.signed.roles[role].keyids) for role in ROOT_LISTED}


def metadata_status(
    repo: OnlineRepository, services: Services, now: datetime
) -> tuple[dict[str, Any], list[ExpiryWarning]]:
    """S5: ``published_status``'s roles and the warnings about them (none published: empty)."""
    try:
        published = published_status(repo)
        roles = list(_role_expiries(repo, published, services.config.renew_at_fraction))
    except (PublicationError, OSError, ValueError):
        return {"roles": {}, "warnings": []}, []
    warnings = expiry_warnings(roles, now=now)
    return {
        "roles": {role.role: _role_json(role) for role in roles},
        "warnings": [_warning_json(warning) for warning in warnings],
    }, warnings


def _role_expiries(
    repo: OnlineRepository, published: dict[str, Any], fraction: float
) -> Iterable[RoleExpiry]:
    listed = {**published["roles"], **{r: published[r] for r in (Snapshot.type, Timestamp.type)}}
    for role, info in listed.items():
        online = role in (Snapshot.type, Timestamp.type)
        yield RoleExpiry(
            role=role,
            version=info["version"],
            expires=datetime.fromisoformat(info["expires"]),
            renew_at=renew_at(repo, role, fraction) if online else None,
        )


def _role_json(role: RoleExpiry) -> dict[str, Any]:
    out: dict[str, Any] = {"version": role.version, "expires": role.expires.strftime(_INSTANT)}
    if role.renew_at is not None:
        out["renew_at"] = role.renew_at.strftime(_INSTANT)
    return out


def _warning_json(warning: ExpiryWarning) -> dict[str, Any]:
    return {
        "role": warning.role,
        "kind": warning.kind.value,
        "severity": warning.severity.value,
        "expires": warning.expires.strftime(_INSTANT),
        "message": warning.message,
    }


def fleet_summary(db: Session) -> dict[str, Any]:
    """S6: counted by the database (one grouped query each), however large the fleet."""
    by_state = dict(db.execute(select(Device.state, func.count()).group_by(Device.state)).all())
    accepted = Device.state == DeviceState.ACCEPTED.value
    by_model = dict(
        db.execute(
            select(Device.hardware_model, func.count())
            .where(accepted)
            .group_by(Device.hardware_model)
        ).all()
    )
    versions = db.execute(
        select(Device.running_version, func.count())
        .where(accepted)
        .group_by(Device.running_version)
    ).all()
    return {
        "devices": sum(by_state.values()),
        "by_state": {state.value: by_state.get(state.value, 0) for state in DeviceState},
        "by_model": by_model,
        "by_running_version": {(name or UNKNOWN): count for name, count in versions},
    }


def deployments_in_progress(db: Session) -> list[dict[str, Any]]:
    """S7: each open deployment (awaiting approval, running, paused): its waves and statuses."""
    rows = db.scalars(
        select(Deployment)
        .where(Deployment.state.in_([state.value for state in rollout.OPEN]))
        .order_by(Deployment.id)
    )
    return [rollout.summary(db, row) for row in rows]


def alert_backlog(db: Session, services: Services) -> dict[str, Any]:
    """S7: per configured webhook, what waits to be delivered (``alerts.backlog``)."""
    webhooks = [hook.name for hook in services.config.alert_webhooks]
    return backlog(db, webhooks=webhooks, now=services.clock()).to_json()
