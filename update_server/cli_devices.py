"""``fwserver device``: enrolment tokens and the device inventory; ``fwserver user scope``.

Thin commands over ``update_server.devices`` for an administrator on the
server's host, operating on the data directory like the other commands.
Each runs in one transaction that also holds its audit entry; a refused
change is audited in a transaction of its own and exits 1.
``enrol-token`` prints the token once: only its SHA-256 is stored.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from update_server import users
from update_server.audit import append, audit_event
from update_server.audit.actions import Action
from update_server.cli_common import cli_services, command_now, data_dir_option, database
from update_server.cli_users import _actor as operator
from update_server.config import ENROLMENT_TOKEN_MAX
from update_server.db import transaction
from update_server.devices import enrolment, registry, scope
from update_server.errors import BadRequestError, ServerError
from update_server.models import Role


@click.group("device")
def device() -> None:
    """Enrolment tokens and the devices the server knows."""


@device.command("enrol-token")
@data_dir_option
@click.option("--model", "hardware_model", required=True, help="The device's hardware model.")
@click.option("--device-id", help="Only this device id may register with the token.")
@click.option("--site", help="The site the device belongs to (technicians' scope).")
@click.option("--accept", is_flag=True, help="Accept the device at registration (pre-authorize).")
@click.option(
    "--expires-in",
    "hours",
    default=24,
    show_default=True,
    type=click.IntRange(1, ENROLMENT_TOKEN_MAX.days * 24),
    help="Hours the token stays valid.",
)
def enrol_token(
    *,
    data_dir: Path,
    hardware_model: str,
    device_id: str | None,
    site: str | None,
    accept: bool,
    hours: int,
) -> None:
    """Issue a one-time enrolment token and print it (once)."""
    with database(data_dir) as db:
        issued = enrolment.issue_token(
            db,
            hardware_model=hardware_model,
            device_id=device_id,
            site=site,
            pre_authorized=accept,
            lifetime=timedelta(hours=hours),
            now=command_now(),
            actor=operator(),
        )
        expires = issued.row.expires_at
    bound = f" for {device_id}" if device_id else ""
    state = "accepted" if accept else "pending (accept it after it registers)"
    click.echo(f"enrolment token{bound} ({hardware_model}), valid until {expires:%Y-%m-%d %H:%M}Z;")
    click.echo(f"the device registers once with it and is then {state}.")
    click.echo("token (shown once; give it to the device in FWCLIENT_ENROLMENT_TOKEN or a file):")
    click.echo(issued.token)


@device.command("list")
@data_dir_option
def list_devices(data_dir: Path) -> None:
    """Every device: id, state, model, site, running version, last seen, last result, mode."""
    with database(data_dir) as db:
        rows = [registry.summary(row) for row in registry.all_devices(db)]
    for row in rows:
        click.echo(
            "  ".join(
                f"{_text(row[name]):<{width}}"
                for name, width in (
                    ("device_id", 20),
                    ("state", 14),
                    ("hardware_model", 14),
                    ("site", 10),
                    ("running_version", 10),
                    ("last_seen_at", 25),
                    ("last_result", 14),
                    ("mode", 8),
                )
            ).rstrip()
        )


@device.command("show")
@data_dir_option
@click.argument("device_id")
def show(data_dir: Path, device_id: str) -> None:
    """Everything the inventory holds about DEVICE_ID."""
    with database(data_dir) as db:
        row = registry.summary(registry.get(db, device_id))
    for name, value in row.items():
        click.echo(f"{name + ':':<18} {_text(value)}")


@device.command("accept")
@data_dir_option
@click.argument("device_id")
def accept(data_dir: Path, device_id: str) -> None:
    """Accept DEVICE_ID: its signed requests are served from now on."""
    _change(data_dir, device_id, "accept")


@device.command("reject")
@data_dir_option
@click.argument("device_id")
def reject(data_dir: Path, device_id: str) -> None:
    """Reject the pending DEVICE_ID: its requests are refused; the id stays taken."""
    _change(data_dir, device_id, "reject")


@device.command("decommission")
@data_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.argument("device_id")
def decommission(data_dir: Path, yes: bool, device_id: str) -> None:
    """Decommission DEVICE_ID for good (R62): its key is revoked at once, its records stay."""
    if not yes and not _confirmed(f"decommission {device_id} for good?"):
        raise click.ClickException(f"nothing changed: {device_id} was not decommissioned")
    _change(data_dir, device_id, "decommission")


@click.command("scope")
@data_dir_option
@click.option("--site", "sites", multiple=True, help="A site whose devices NAME sees (repeat).")
@click.option("--clear", is_flag=True, help="Remove every site: NAME sees no device.")
@click.argument("name")
def user_scope(data_dir: Path, sites: tuple[str, ...], clear: bool, name: str) -> None:
    """Set the sites technician NAME sees (and may accept or reject devices of)."""
    if clear == bool(sites):
        raise click.UsageError("give --site S (one or more) or --clear, not both")
    with database(data_dir) as db:
        person = users.get(db, name)
        if person.role != Role.TECHNICIAN:
            raise BadRequestError(
                f"{name} is {person.role}: a scope is for technicians (an admin sees every device)"
            )
        for site in sites:
            enrolment.check_name("site", site)
        scope.set_sites(db, person, list(sites))
        now = command_now()
        append(
            db,
            audit_event(
                Action.USER_SCOPE,
                actor=operator(),
                object=f"user:{name}",
                outcome="success",
                time=now,
                detail={"sites": sorted(set(sites))},
            ),
        )
    shown = ", ".join(sorted(set(sites))) or "none (sees no device)"
    click.echo(f"{name}'s sites: {shown}")


def _change(data_dir: Path, device_id: str, change: str) -> None:
    try:
        with cli_services(data_dir) as services:
            try:
                with transaction(services.sessions) as db:
                    row = registry.change(
                        db,
                        registry.get(db, device_id),
                        change,
                        now=command_now(),
                        actor=operator(),
                    )
                    state = row.state
            except ServerError as refused:
                with transaction(services.sessions) as db:
                    registry.audit_refusal(
                        db,
                        device_id,
                        change,
                        reason=refused.detail,
                        now=command_now(),
                        actor=operator(),
                    )
                raise
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"{device_id} is {state}")


def _confirmed(question: str) -> bool:
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        return False


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
