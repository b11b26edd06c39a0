"""``fwserver user``: add, list, disable and unlock the people of the server.

Thin commands over ``update_server.users``; each runs in one transaction
that also holds its audit entry. ``add`` prints the one-time initial
password, the only time it exists in clear (R47: no default credentials).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy.orm import Session

from update_server import users
from update_server.cli_common import cli_services, command_now, data_dir_option
from update_server.db import transaction
from update_server.errors import ServerError
from update_server.models import Role, User


@click.group("user")
def user() -> None:
    """Manage the people who use the server."""


@user.command("add")
@data_dir_option
@click.option(
    "--role", required=True, type=click.Choice([role.value for role in Role]), help="Their role."
)
@click.argument("name")
def add(data_dir: Path, role: str, name: str) -> None:
    """Create NAME with ROLE and print a one-time initial password."""
    with _database(data_dir) as db:
        password = users.add_user(db, name=name, role=role, now=command_now(), actor=_actor())
    click.echo(f"created {name} ({role})")
    click.echo(
        f"one-time initial password (shown once; give it to {name} in person,"
        f" who must change it and enrol TOTP at first login): {password}"
    )


@user.command("list")
@data_dir_option
def list_users(data_dir: Path) -> None:
    """List every person, their role and state."""
    with _database(data_dir) as db:
        now = command_now()
        rows = [
            (person, users.locked_until(db, person.name, now=now)) for person in users.all_users(db)
        ]
    for person, locked in rows:
        last = person.last_login_at.strftime("%Y-%m-%d %H:%M") if person.last_login_at else "never"
        click.echo(
            f"{person.name:<24} {person.role:<18} {_state(person, locked is not None):<12} {last}"
        )


@user.command("disable")
@data_dir_option
@click.argument("name")
def disable(data_dir: Path, name: str) -> None:
    """Disable NAME and end their sessions."""
    with _database(data_dir) as db:
        ended = users.disable(db, name, now=command_now(), actor=_actor())
    click.echo(f"disabled {name}; {ended} session(s) ended")


@user.command("unlock")
@data_dir_option
@click.argument("name")
def unlock(data_dir: Path, name: str) -> None:
    """Lift a lockout after failed logins on NAME."""
    with _database(data_dir) as db:
        users.unlock(db, name, now=command_now(), actor=_actor())
    click.echo(f"unlocked {name}")


@contextmanager
def _database(data_dir: Path) -> Iterator[Session]:
    """One transaction on the server's database; errors become one line."""
    try:
        with cli_services(data_dir) as services, transaction(services.sessions) as db:
            yield db
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None


def _actor() -> users.Actor:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return users.Actor(name=f"cli:{who}"[:64], role="operator", source="local")


def _state(person: User, locked: bool) -> str:
    if person.disabled:
        return "disabled"
    if locked:
        return "locked"
    if person.must_change_password or not person.totp_enrolled:
        return "first-login"
    return "active"
