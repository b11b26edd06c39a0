"""``fwserver deployment``, ``group`` and ``fleet``: fleet operations from the server's host.

Thin commands over ``update_server.deployments`` for an operator on the
server's host, audited as the operator (``cli:<login>``) like ``fwserver
device``. The same rules as the API hold: the creator of a deployment
cannot approve it (R9, D3), the freeze stops approvals and resumes (D7),
and each read lets the deployments progress (D5, D6). A refused change is
audited in a transaction of its own and exits 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from update_server.app import Services
from update_server.audit.actions import Action
from update_server.authorizations.issuing import published_release
from update_server.cli_common import cli_services, command_now, data_dir_option, database
from update_server.cli_users import _actor as operator
from update_server.db import transaction
from update_server.deployments import groups, rollout
from update_server.deployments.windows import DAYS, Schedule
from update_server.errors import BadRequestError, ServerError
from update_server.freeze.state import is_frozen, refuse_if_frozen
from update_server.publication.repository import OnlineRepository


@click.group("deployment")
def deployment() -> None:
    """Deployments of a published release to groups and fleets, in waves (R9: four eyes)."""


@deployment.command("list")
@data_dir_option
def list_deployments(data_dir: Path) -> None:
    """Every deployment, newest first: id, state, target, waves started, statuses."""
    with cli_services(data_dir) as services, transaction(services.sessions) as db:
        rollout.evaluate_live(db, now=command_now(), signed=_signed(services), frozen=is_frozen(db))
        rows = [rollout.summary(db, row) for row in rollout.listed(db)]
    for row in rows:
        started = sum(wave["started"] for wave in row["waves"])
        counts = " ".join(f"{name}={n}" for name, n in row["statuses"].items() if n)
        click.echo(
            f"{row['id']:>5}  {row['state']:<18} {row['target_path']}  waves"
            f" {started}/{len(row['waves'])}  {counts}"
        )


@deployment.command("show")
@data_dir_option
@click.argument("deployment_id", type=int)
def show(data_dir: Path, deployment_id: int) -> None:
    """DEPLOYMENT_ID: its plan, its waves and each device's status."""
    with cli_services(data_dir) as services, transaction(services.sessions) as db:
        row = rollout.get(db, deployment_id)
        rollout.evaluate(db, row, now=command_now(), signed=_signed(services), frozen=is_frozen(db))
        shown = rollout.summary(db, row)
        devices = [rollout.device_summary(device) for device in rollout.devices_of(db, row)]
    for name in ("id", "state", "reason", "target_path", "sha256", "version", "groups", "fleets"):
        click.echo(f"{name + ':':<18} {_text(shown[name])}")
    click.echo(f"{'thresholds:':<18} success {shown['success_percent']}%,"
               f" failure > {shown['failure_percent']}% stops")  # fmt: skip
    for name in ("created_by", "approved_by", "state_changed_by"):
        click.echo(f"{name + ':':<18} {_text(shown[name])}")
    for wave in shown["waves"]:
        state = "started" if wave["started"] else "waiting"
        click.echo(f"wave {wave['wave']}: {wave['devices']} devices, {wave['installed']}"
                   f" installed, {wave['failed']} failed or refused ({state})")  # fmt: skip
    for device in devices:
        why = " ".join(_text(device[k]) for k in ("event", "reason") if device[k])
        click.echo(f"  {device['device_id']:<20} wave {device['wave']}  {device['status']:<12}"
                   f" {why}".rstrip())  # fmt: skip


@deployment.command("create")
@data_dir_option
@click.option("--target", "target_path", required=True, help="The published target's path.")
@click.option("--group", "group_names", multiple=True, help="A group to deploy to (repeat).")
@click.option("--fleet", "fleets", multiple=True, help="Every device of a hardware model.")
@click.option("--wave", "wave_list", multiple=True, help="A wave: N devices, or P% (repeat).")
@click.option("--success", "success_percent", type=int, required=True,
              help="% of a wave that must run the target before the next starts.")  # fmt: skip
@click.option("--failure", "failure_percent", type=int, required=True,
              help="% of a wave failing or refusing past which the deployment stops.")  # fmt: skip
def create(
    *,
    data_dir: Path,
    target_path: str,
    group_names: tuple[str, ...],
    fleets: tuple[str, ...],
    wave_list: tuple[str, ...],
    success_percent: int,
    failure_percent: int,
) -> None:
    """Deploy a published target; it waits for another operator's approval."""

    def made(db: Session, services: Services) -> str:
        plan = rollout.plan_of(
            group_names=group_names,
            fleets=fleets,
            wave_list=[_wave(text) for text in wave_list],
            success_percent=success_percent,
            failure_percent=failure_percent,
        )
        repository = _repository(services)
        repository.require_initialised()
        release = published_release(repository, target_path)
        row = rollout.create(db, release=release, plan=plan, actor=operator(), now=command_now())
        return f"deployment {row.id}: {len(rollout.devices_of(db, row))} devices in waves" \
            f" {row.wave_sizes}, awaiting another operator's approval"  # fmt: skip

    _apply(data_dir, Action.DEPLOYMENT_CREATE, f"new:{target_path[:300]}", made)


@deployment.command("approve")
@data_dir_option
@click.argument("deployment_id", type=int)
def approve(data_dir: Path, deployment_id: int) -> None:
    """Approve DEPLOYMENT_ID (not your own: four eyes, R9); its first wave starts."""

    def approved(db: Session, services: Services) -> str:
        refuse_if_frozen(db)
        row = rollout.get(db, deployment_id)
        rollout.approve(db, row, actor=operator(), now=command_now(),
                        signed=_signed(services), frozen=False)  # fmt: skip
        return f"deployment {row.id} is {row.state}"

    _apply(data_dir, Action.DEPLOYMENT_APPROVE, deployment_id, approved)


def _state_command(change: str, action: Action, summary: str) -> None:
    @deployment.command(change, help=summary)
    @data_dir_option
    @click.argument("deployment_id", type=int)
    def command(data_dir: Path, deployment_id: int) -> None:
        def changed(db: Session, services: Services) -> str:
            if change == "resume":
                refuse_if_frozen(db)
            row = rollout.get(db, deployment_id)
            rollout.change(db, row, change, actor=operator(), now=command_now(),
                           signed=_signed(services), frozen=is_frozen(db))  # fmt: skip
            return f"deployment {row.id} is {row.state}"

        _apply(data_dir, action, deployment_id, changed)


_state_command("pause", Action.DEPLOYMENT_PAUSE, "Pause DEPLOYMENT_ID: nothing is assigned.")
_state_command("resume", Action.DEPLOYMENT_RESUME, "Resume the paused DEPLOYMENT_ID.")
_state_command("abort", Action.DEPLOYMENT_ABORT, "Abort DEPLOYMENT_ID for good.")


# -- groups ---------------------------------------------------------------------------


@click.group("group")
def group() -> None:
    """Device groups (static, or dynamic by model, site or a device field) and their windows."""


@group.command("list")
@data_dir_option
def list_groups(data_dir: Path) -> None:
    """Every group: name, kind, criteria, window."""
    with database(data_dir) as db:
        rows = [groups.summary(row) for row in groups.all_groups(db)]
    for row in rows:
        click.echo(f"{row['name']:<20} {row['kind']:<8} {_text(row['criteria'])}"
                   f"  window {_text(row['window'])}")  # fmt: skip


@group.command("show")
@data_dir_option
@click.argument("name")
def show_group(data_dir: Path, name: str) -> None:
    """NAME and its devices now."""
    with database(data_dir) as db:
        row = groups.get(db, name)
        shown = groups.summary(row, [device.id for device in groups.members(db, row)])
    for key, value in shown.items():
        click.echo(f"{key + ':':<12} {_text(value)}")


@group.command("create")
@data_dir_option
@click.option("--match", "criteria", multiple=True,
              help="field=value: a dynamic group of the devices matching (repeat).")  # fmt: skip
@click.argument("name")
def create_group(data_dir: Path, criteria: tuple[str, ...], name: str) -> None:
    """Make group NAME: static, or dynamic with --match (hardware_model, site, ...)."""
    matched = dict(_pair(text) for text in criteria)
    kind = groups.Kind.DYNAMIC if matched else groups.Kind.STATIC

    def made(db: Session) -> str:
        groups.create(
            db, name=name, kind=kind, criteria=matched or None, actor=operator(), now=command_now()
        )
        return f"group {name} ({kind.value}) made"

    _group_apply(data_dir, name, "create", made)


@group.command("add")
@data_dir_option
@click.argument("name")
@click.argument("device_ids", nargs=-1, required=True)
def add(data_dir: Path, name: str, device_ids: tuple[str, ...]) -> None:
    """Add DEVICE_IDS to the static group NAME."""

    def added(db: Session) -> str:
        done = groups.add_members(
            db, groups.get(db, name), device_ids, actor=operator(), now=command_now()
        )
        return "added: " + (", ".join(done) or "none (members already)")

    _group_apply(data_dir, name, "add", added)


@group.command("remove")
@data_dir_option
@click.argument("name")
@click.argument("device_id")
def remove(data_dir: Path, name: str, device_id: str) -> None:
    """Remove DEVICE_ID from the static group NAME."""

    def removed(db: Session) -> str:
        groups.remove_member(db, groups.get(db, name), device_id, actor=operator(),
                             now=command_now())  # fmt: skip
        return f"{device_id} removed from {name}"

    _group_apply(data_dir, name, "remove", removed)


@group.command("window")
@data_dir_option
@click.option("--days", help=f"Comma-separated: {','.join(DAYS)}.")
@click.option("--start", help="Local start time HH:MM.")
@click.option("--minutes", type=int, help="How long it stays open (1 to 1440).")
@click.option("--timezone", help="The site's IANA time zone, e.g. Europe/Paris.")
@click.option("--clear", is_flag=True, help="Remove the window: activation any time.")
@click.argument("name")
def window(
    *,
    data_dir: Path,
    days: str | None,
    start: str | None,
    minutes: int | None,
    timezone: str | None,
    clear: bool,
    name: str,
) -> None:
    """Set (or --clear) the maintenance window of group NAME."""
    given = (days, start, minutes, timezone)
    if clear == all(value is not None for value in given) or (not clear and None in given):
        raise click.UsageError("give --days, --start, --minutes and --timezone, or --clear")

    def set_it(db: Session) -> str:
        schedule = None if clear else _schedule(days, start, minutes, timezone)
        groups.set_window(db, groups.get(db, name), schedule, actor=operator(), now=command_now())
        return f"{name}'s window: {'none' if schedule is None else schedule}"

    _group_apply(data_dir, name, "window", set_it)


# -- helpers --------------------------------------------------------------------------


@click.group("fleet")
def fleet() -> None:
    """Per hardware model: what a registered device installs (assigned by default)."""


@fleet.command("list")
@data_dir_option
def list_fleets(data_dir: Path) -> None:
    """Each model whose setting was changed; every other model installs only what is assigned."""
    with cli_services(data_dir) as services, transaction(services.sessions) as db:
        rows = [
            (row.hardware_model, row.install, row.changed_by) for row in groups.fleet_settings(db)
        ]
    click.echo(f"default: {groups.Install.ASSIGNED.value}")
    for model, install, changed_by in rows:
        click.echo(f"{model}  {install}  (set by {changed_by})")


@fleet.command("install")
@data_dir_option
@click.argument("hardware_model")
@click.argument("install", type=click.Choice([item.value for item in groups.Install]))
def fleet_install(data_dir: Path, hardware_model: str, install: str) -> None:
    """HARDWARE_MODEL's devices install what is assigned, or the newest eligible release."""
    try:
        with cli_services(data_dir) as services:
            try:
                with transaction(services.sessions) as db:
                    rollout.refuse_newest_if_frozen(db, install)
                    groups.set_install(db, hardware_model, install, actor=operator(),
                                       now=command_now())  # fmt: skip
            except ServerError as refused:
                with transaction(services.sessions) as db:
                    groups.audit_install_refusal(db, hardware_model, reason=refused.detail,
                                                 actor=operator(), now=command_now())  # fmt: skip
                raise
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"fleet {hardware_model}: {install}")


def _apply(
    data_dir: Path,
    action: Action,
    deployment_id: int | str,
    change: Callable[[Session, Services], str],
) -> None:
    try:
        with cli_services(data_dir) as services:
            try:
                with transaction(services.sessions) as db:
                    said = change(db, services)
            except ServerError as refused:
                with transaction(services.sessions) as db:
                    rollout.audit_refusal(db, action, deployment_id, reason=refused.detail,
                                          actor=operator(), now=command_now())  # fmt: skip
                raise
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(said)


def _group_apply(data_dir: Path, name: str, change: str, apply: Callable[[Session], Any]) -> None:
    try:
        with cli_services(data_dir) as services:
            try:
                with transaction(services.sessions) as db:
                    said = apply(db)
            except ServerError as refused:
                with transaction(services.sessions) as db:
                    groups.audit_refusal(db, name, change, reason=refused.detail,
                                         actor=operator(), now=command_now())  # fmt: skip
                raise
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(said)


def _schedule(days: Any, start: Any, minutes: Any, timezone: Any) -> Schedule:
    try:
        return Schedule(tuple(str(days).split(",")), str(start), int(minutes), str(timezone))
    except ValueError as exc:
        raise BadRequestError(str(exc)) from None


def _wave(text: str) -> dict[str, int]:
    try:
        return {"percent": int(text[:-1])} if text.endswith("%") else {"count": int(text)}
    except ValueError:
        raise BadRequestError(
            f"a wave is a number of devices or a percentage, not {text!r}"
        ) from None


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise click.UsageError(f"--match takes field=value, not {text!r}")
    return name, value


def _repository(services: Services) -> OnlineRepository:
    return OnlineRepository(services.config.repository_dir, now=command_now())


def _signed(services: Services) -> rollout.SignedTargets:
    return rollout.SignedTargets(_repository(services))


def _text(value: Any) -> str:
    return "-" if value is None or value == [] else str(value)
