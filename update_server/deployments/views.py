"""The HTTP side of fleet operations: groups, fleets, deployments and the device poll.

Views orchestrate and persist; the rules live in ``groups`` (GR1-GR5),
``rollout`` (D1-D8), ``waves`` (W1-W5), ``windows`` (MW1-MW4), ``status``
(S1-S4) and ``poll`` (P1-P5). Every change and every refusal is audited; a
refusal is committed before the answer. Each read of a deployment first
lets it progress (D5: waves, a withdrawn target).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from update_server.access import allow, device_route
from update_server.app import Services
from update_server.audit import Actor
from update_server.audit.actions import Action
from update_server.authorizations.issuing import published_release
from update_server.deployments import groups, poll, rollout
from update_server.deployments.windows import DAYS, Schedule
from update_server.devices.models import Device
from update_server.errors import BadRequestError, ServerError
from update_server.freeze.state import is_frozen, refuse_if_frozen
from update_server.models import Role
from update_server.publication.repository import OnlineRepository

blueprint = Blueprint("deployments", __name__)

#: Who reads groups, fleets and deployments.
READERS = (
    Role.RELEASE_MANAGER,
    Role.RELEASE_ENGINEER,
    Role.ADMIN,
    Role.SECURITY_OFFICER,
    Role.AUDITOR,
)
#: Who shapes groups (members, windows).
GROUP_EDITORS = (Role.RELEASE_MANAGER, Role.ADMIN)


# -- groups ---------------------------------------------------------------------------


@blueprint.get("/api/v1/groups")
@allow(*READERS)
def list_groups() -> ResponseReturnValue:
    return jsonify({"groups": [groups.summary(group) for group in groups.all_groups(g.db)]})


@blueprint.post("/api/v1/groups")
@allow(*GROUP_EDITORS)
def create_group() -> ResponseReturnValue:
    body = _json()
    name = str(body["name"])
    group = _group_change(
        name,
        "create",
        lambda: groups.create(
            g.db,
            name=name,
            kind=body["kind"],
            criteria=body.get("criteria"),
            actor=_actor(),
            now=_now(),
        ),
    )
    return jsonify(groups.summary(group, _member_ids(group))), 201


@blueprint.get("/api/v1/groups/<name>")
@allow(*READERS)
def show_group(name: str) -> ResponseReturnValue:
    group = groups.get(g.db, name)
    return jsonify(groups.summary(group, _member_ids(group)))


@blueprint.delete("/api/v1/groups/<name>")
@allow(*GROUP_EDITORS)
def delete_group(name: str) -> ResponseReturnValue:
    _group_change(
        name,
        "delete",
        lambda: groups.delete(g.db, groups.get(g.db, name), actor=_actor(), now=_now()),
    )
    return "", 204


@blueprint.post("/api/v1/groups/<name>/members")
@allow(*GROUP_EDITORS)
def add_members(name: str) -> ResponseReturnValue:
    device_ids = [str(device) for device in _json()["device_ids"]]

    def add() -> list[str]:
        return groups.add_members(
            g.db, groups.get(g.db, name), device_ids, actor=_actor(), now=_now()
        )

    _group_change(name, "add", add)
    group = groups.get(g.db, name)
    return jsonify(groups.summary(group, _member_ids(group)))


@blueprint.delete("/api/v1/groups/<name>/members/<device_id>")
@allow(*GROUP_EDITORS)
def remove_member(name: str, device_id: str) -> ResponseReturnValue:
    _group_change(
        name,
        "remove",
        lambda: groups.remove_member(
            g.db, groups.get(g.db, name), device_id, actor=_actor(), now=_now()
        ),
    )
    group = groups.get(g.db, name)
    return jsonify(groups.summary(group, _member_ids(group)))


@blueprint.put("/api/v1/groups/<name>/window")
@allow(*GROUP_EDITORS)
def set_window(name: str) -> ResponseReturnValue:
    body = _json()

    def set_it() -> None:
        schedule = _schedule(body)
        groups.set_window(g.db, groups.get(g.db, name), schedule, actor=_actor(), now=_now())

    _group_change(name, "window", set_it)
    return jsonify(groups.summary(groups.get(g.db, name)))


@blueprint.delete("/api/v1/groups/<name>/window")
@allow(*GROUP_EDITORS)
def remove_window(name: str) -> ResponseReturnValue:
    _group_change(
        name,
        "window",
        lambda: groups.set_window(g.db, groups.get(g.db, name), None, actor=_actor(), now=_now()),
    )
    return jsonify(groups.summary(groups.get(g.db, name)))


# -- fleets ---------------------------------------------------------------------------


@blueprint.get("/api/v1/fleets")
@allow(*READERS)
def list_fleets() -> ResponseReturnValue:
    rows = groups.fleet_settings(g.db)
    return jsonify(
        {
            "default": groups.Install.ASSIGNED.value,
            "fleets": [_fleet(row.hardware_model, row.install, row.changed_by) for row in rows],
        }
    )


@blueprint.put("/api/v1/fleets/<hardware_model>")
@allow(Role.RELEASE_MANAGER, fresh_otp=True)
def set_fleet_install(hardware_model: str) -> ResponseReturnValue:
    body = _json()
    try:
        rollout.refuse_newest_if_frozen(g.db, body["install"])
        row = groups.set_install(g.db, hardware_model, body["install"], actor=_actor(), now=_now())
    except ServerError as refused:
        g.db.rollback()
        groups.audit_install_refusal(
            g.db, hardware_model, reason=refused.detail, actor=_actor(), now=_now()
        )
        g.db.commit()
        raise
    g.db.commit()
    return jsonify(_fleet(row.hardware_model, row.install, row.changed_by))


# -- deployments ----------------------------------------------------------------------


@blueprint.get("/api/v1/deployments")
@allow(*READERS)
def list_deployments() -> ResponseReturnValue:
    rollout.evaluate_live(g.db, now=_now(), signed=_signed(), frozen=_frozen())
    g.db.commit()
    shown = [rollout.summary(g.db, deployment) for deployment in rollout.listed(g.db)]
    return jsonify({"deployments": shown})


@blueprint.post("/api/v1/deployments")
@allow(Role.RELEASE_MANAGER)
def create_deployment() -> ResponseReturnValue:
    body = _json()
    path = str(body["target_path"])
    try:
        plan = rollout.plan_of(
            group_names=[str(name) for name in body.get("groups", [])],
            fleets=[str(name) for name in body.get("fleets", [])],
            wave_list=list(body.get("waves", [])),
            success_percent=body["success_percent"],
            failure_percent=body["failure_percent"],
        )
        repository = _repository()
        repository.require_initialised()
        release = published_release(repository, path)
        deployment = rollout.create(g.db, release=release, plan=plan, actor=_actor(), now=_now())
    except ServerError as refused:
        _refused(Action.DEPLOYMENT_CREATE, f"new:{path[:300]}", refused)
    g.db.commit()
    return jsonify(_detail(deployment)), 201


@blueprint.get("/api/v1/deployments/<int:deployment_id>")
@allow(*READERS)
def show_deployment(deployment_id: int) -> ResponseReturnValue:
    deployment = rollout.get(g.db, deployment_id)
    rollout.evaluate(g.db, deployment, now=_now(), signed=_signed(), frozen=_frozen())
    g.db.commit()
    return jsonify(_detail(deployment))


@blueprint.post("/api/v1/deployments/<int:deployment_id>/approve")
@allow(Role.RELEASE_MANAGER, fresh_otp=True)
def approve_deployment(deployment_id: int) -> ResponseReturnValue:
    def approve() -> None:
        refuse_if_frozen(g.db)  # D7: approval would start a wave
        rollout.approve(
            g.db,
            rollout.get(g.db, deployment_id),
            actor=_actor(),
            now=_now(),
            signed=_signed(),
            frozen=_frozen(),
        )

    return _deployment_change(deployment_id, Action.DEPLOYMENT_APPROVE, approve)


@blueprint.post("/api/v1/deployments/<int:deployment_id>/pause")
@allow(Role.RELEASE_MANAGER)
def pause_deployment(deployment_id: int) -> ResponseReturnValue:
    return _change(deployment_id, "pause", Action.DEPLOYMENT_PAUSE)


@blueprint.post("/api/v1/deployments/<int:deployment_id>/resume")
@allow(Role.RELEASE_MANAGER)
def resume_deployment(deployment_id: int) -> ResponseReturnValue:
    return _change(deployment_id, "resume", Action.DEPLOYMENT_RESUME)


@blueprint.post("/api/v1/deployments/<int:deployment_id>/abort")
@allow(Role.RELEASE_MANAGER, fresh_otp=True)
def abort_deployment(deployment_id: int) -> ResponseReturnValue:
    return _change(deployment_id, "abort", Action.DEPLOYMENT_ABORT)


# -- the device's poll ----------------------------------------------------------------


@blueprint.get("/api/v1/device/poll")
@device_route
def device_poll() -> ResponseReturnValue:
    """P1-P5: mode, install setting, assignment and maintenance window for the signing device."""
    device: Device = g.device
    answer = poll.directive(
        g.db,
        device,
        now=_now(),
        signed=_signed(),
        frozen=_frozen(),
        source=request.remote_addr or "-",
    )
    g.db.commit()
    return jsonify(answer)


def note_report(device: Device, entries: Any) -> None:
    """S1-S3 and D5 for a device's accepted report (``devices.views``), in its transaction."""
    rollout.note_report(g.db, device, entries, now=_now(), signed=_signed(), frozen=_frozen())


# -- helpers --------------------------------------------------------------------------


def _change(deployment_id: int, change: str, action: Action) -> ResponseReturnValue:
    def apply() -> None:
        if change == "resume":
            refuse_if_frozen(g.db)  # D7: resuming is progress
        rollout.change(
            g.db,
            rollout.get(g.db, deployment_id),
            change,
            actor=_actor(),
            now=_now(),
            signed=_signed(),
            frozen=_frozen(),
        )

    return _deployment_change(deployment_id, action, apply)


def _deployment_change(
    deployment_id: int, action: Action, apply: Callable[[], None]
) -> ResponseReturnValue:
    try:
        apply()
    except ServerError as refused:
        _refused(action, deployment_id, refused)
    g.db.commit()
    return jsonify(_detail(rollout.get(g.db, deployment_id)))


def _refused(action: Action, deployment: int | str, refused: ServerError) -> NoReturn:
    """D3, D4: the refusal audited and committed on its own, then raised."""
    g.db.rollback()
    rollout.audit_refusal(
        g.db, action, deployment, reason=refused.detail, actor=_actor(), now=_now()
    )
    g.db.commit()
    raise refused


def _group_change(name: str, change: str, apply: Callable[[], Any]) -> Any:
    """GR5: the change, or its refusal audited and committed on its own."""
    try:
        done = apply()
    except ServerError as refused:
        g.db.rollback()
        groups.audit_refusal(g.db, name, change, reason=refused.detail, actor=_actor(), now=_now())
        g.db.commit()
        raise
    g.db.commit()
    return done


def _detail(deployment: Any) -> dict[str, Any]:
    devices = [rollout.device_summary(row) for row in rollout.devices_of(g.db, deployment)]
    return {**rollout.summary(g.db, deployment), "devices": devices}


def _member_ids(group: Any) -> list[str]:
    return [device.id for device in groups.members(g.db, group)]


def _schedule(body: dict[str, Any]) -> Schedule:
    try:
        return Schedule(
            days=tuple(str(day) for day in body["days"]),
            start=str(body["start"]),
            minutes=int(body["duration_minutes"]),
            timezone=str(body["timezone"]),
        )
    except ValueError as exc:
        raise BadRequestError(f"{exc} (days: {', '.join(DAYS)})") from None


def _fleet(hardware_model: str, install: str, changed_by: str | None) -> dict[str, Any]:
    return {"hardware_model": hardware_model, "install": install, "changed_by": changed_by}


def _repository() -> OnlineRepository:
    return OnlineRepository(_services().config.repository_dir, now=_now())


def _signed() -> rollout.SignedTargets:
    """The published targets, read once per request (``g``)."""
    if "fw_signed_targets" not in g:
        g.fw_signed_targets = rollout.SignedTargets(_repository())
    signed: rollout.SignedTargets = g.fw_signed_targets
    return signed


def _frozen() -> bool:
    return is_frozen(g.db)


def _json() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


def _actor() -> Actor:
    return Actor(g.user.name, g.user.role, request.remote_addr or "-")


def _now() -> Any:
    return _services().clock()


def _services() -> Services:
    services: Services = current_app.extensions["fw"]
    return services
