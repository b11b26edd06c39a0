"""The fleet inventory page, nested in the ``web`` blueprint (the inventory API's rules).

It shows what ``GET /api/v1/devices`` shows of each device, on a phone.
Rules:

FL1 (R6) The inventory's readers only, each within their scope
    (``devices.scope``): an administrator sees every device, a technician
    the devices of their sites; nobody else sees a device.
FL2 Each device: id, model, site, state, the version it reports running,
    its last report, whether it runs a withdrawn release (``withdrawn``
    WD3, from the published metadata now and once: unknown before any
    publication or without a reported version), its log alert, and the
    newest deployment it is in with its status there (and the event or
    reason of a failure or refusal). A reader of deployments gets a link.
FL3 Devices are shown by id, ``PAGE`` at a time; the next page starts
    after the last id shown (no offset to drift while devices register).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from update_server.access import allow
from update_server.app import Services
from update_server.deployments import signed_releases
from update_server.deployments.models import Deployment, DeploymentDevice
from update_server.deployments.status import Status
from update_server.deployments.views import READERS as DEPLOYMENT_READERS
from update_server.deployments.withdrawn import running_withdrawn
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.devices.views import DEVICE_READERS
from update_server.models import User
from update_server.publication.repository import OnlineRepository
from update_server.web.forms import ActionForm

blueprint = Blueprint("fleet", __name__, url_prefix="/fleet")

#: FL3: devices per page.
PAGE = 200


@dataclass(frozen=True)
class InDeployment:
    """FL2: the newest deployment a device is in, and its status there."""

    deployment: int
    state: str
    status: str
    why: str | None


@dataclass(frozen=True)
class Row:
    device: Device
    #: FL2 (WD3): None when unknown.
    withdrawn: bool | None
    deployment: InDeployment | None


@blueprint.get("")
@allow(*DEVICE_READERS)
def inventory() -> ResponseReturnValue:
    """FL1-FL3: a page of the devices in the reader's scope."""
    user: User = g.user
    after = request.args.get("after", "")[:128]
    query = scope.visible_to(g.db, user, select(Device).where(Device.id > after))
    devices = list(g.db.scalars(query.order_by(Device.id).limit(PAGE + 1)))
    more = len(devices) > PAGE
    devices = devices[:PAGE]
    total = g.db.scalar(scope.visible_to(g.db, user, select(func.count()).select_from(Device)))
    return render_template(
        "fleet.html",
        rows=rows(g.db, devices, _published()),
        total=total or 0,
        after=after,
        next_after=devices[-1].id if more else None,
        deployment_reader=user.role in DEPLOYMENT_READERS,
        shown=_shown,
        logout=ActionForm(),
    )


def rows(
    db: Session, devices: Sequence[Device], signed: signed_releases.SignedReleases | None
) -> list[Row]:
    """FL2 for ``devices``: the withdrawn flag and the newest deployment of each.

    ``signed`` is None before any publication: whether a device runs a
    withdrawn release is unknown then.
    """
    newest = _newest_deployments(db, [device.id for device in devices])
    return [
        Row(device, None if signed is None else _withdrawn(device, signed), newest.get(device.id))
        for device in devices
    ]


def _withdrawn(device: Device, signed: signed_releases.SignedReleases) -> bool | None:
    return running_withdrawn(
        signed.now,
        hardware_model=device.hardware_model,
        running_version=device.running_version,
        once_signed=signed.once_signed(device.hardware_model),
    )


def _newest_deployments(db: Session, device_ids: list[str]) -> dict[str, InDeployment]:
    if not device_ids:
        return {}
    found = db.execute(
        select(DeploymentDevice, Deployment.state)
        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
        .where(DeploymentDevice.device_id.in_(device_ids))
        .order_by(DeploymentDevice.deployment_id)
    )
    newest: dict[str, InDeployment] = {}
    for row, state in found:  # ascending: the newest is written last
        why = row.event if row.status == Status.FAILED else row.reason
        newest[row.device_id] = InDeployment(row.deployment_id, state, row.status, why)
    return newest


def _published() -> signed_releases.SignedReleases | None:
    """FL2: what the published metadata signs now and once; None before any publication."""
    services = _services()
    repository = OnlineRepository(services.config.repository_dir, now=services.clock())
    return signed_releases.read(repository) if repository.is_initialised() else None


def _shown(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
