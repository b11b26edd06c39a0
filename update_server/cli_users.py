"""``fwserver user``: add, list, reset, disable, enable, unlock and remove people.

Thin commands over ``update_server.users``; each runs in one transaction
that also holds its audit entry. A change that is refused (an unknown name,
the last administrator) changes nothing, is audited as refused in a
transaction of its own (R27) and exits 1. ``add`` and ``reset`` print a
one-time initial password, the only time it exists in clear (R47: no
default credentials); it goes to stdout, never to a log or the audit log.

Managing people is a local administrator's task, on the server's host:
there is no HTTP API for it (a stolen session cannot reset anyone).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy.orm import Session

from update_server import users
from update_server.cli_common import cli_services, command_now, data_dir_option, database
from update_server.config import ServerConfig
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
    with database(data_dir) as db:
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
    with database(data_dir) as db:
        now = command_now()
        rows = [
            (person, users.locked_until(db, person.name, now=now)) for person in users.all_users(db)
        ]
    for person, locked in rows:
        last = person.last_login_at.strftime("%Y-%m-%d %H:%M") if person.last_login_at else "never"
        click.echo(
            f"{person.name:<24} {person.role:<18} {_state(person, locked is not None):<12} {last}"
        )


@user.command("reset")
@data_dir_option
@click.argument("name")
def reset(data_dir: Path, name: str) -> None:
    """Give NAME a new one-time password and clear their TOTP and lockout.

    For a lost phone or a forgotten password: NAME does first login again,
    like a new account (new password, fresh TOTP enrolment).
    """
    with _change(data_dir, "reset", name) as (db, config):
        password = users.reset(db, name, now=command_now(), config=config, actor=_actor())
    click.echo(f"reset {name}: TOTP enrolment, lockout and sessions cleared")
    click.echo(
        f"one-time initial password (shown once; give it to {name} in person, who must"
        f" change it and enrol TOTP again at next login): {password}"
    )


@user.command("disable")
@data_dir_option
@click.argument("name")
def disable(data_dir: Path, name: str) -> None:
    """Disable NAME and end their sessions (undo with 'enable')."""
    with _change(data_dir, "disable", name) as (db, _):
        ended = users.disable(db, name, now=command_now(), actor=_actor())
    click.echo(f"disabled {name}; {ended} session(s) ended")


@user.command("enable")
@data_dir_option
@click.argument("name")
def enable(data_dir: Path, name: str) -> None:
    """Enable NAME again after 'disable'."""
    with _change(data_dir, "enable", name) as (db, _):
        users.enable(db, name, now=command_now(), actor=_actor())
    click.echo(f"enabled {name}")


@user.command("unlock")
@data_dir_option
@click.argument("name")
def unlock(data_dir: Path, name: str) -> None:
    """Lift a lockout after failed logins on NAME."""
    with _change(data_dir, "unlock", name) as (db, _):
        users.unlock(db, name, now=command_now(), actor=_actor())
    click.echo(f"unlocked {name}")


@user.command("remove")
@data_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.argument("name")
def remove(data_dir: Path, yes: bool, name: str) -> None:
    """Remove NAME for good: their sessions end and the name is never used again.

    The audit log keeps NAME's history, so the name stays taken.
    """
    if not yes and not _confirmed(f"remove {name} for good (the name can never be used again)?"):
        raise click.ClickException(f"nothing changed: {name} was not removed")
    with _change(data_dir, "remove", name) as (db, _):
        ended = users.remove(db, name, now=command_now(), actor=_actor())
    click.echo(f"removed {name}; {ended} session(s) ended")


@contextmanager
def _change(data_dir: Path, change: str, name: str) -> Iterator[tuple[Session, ServerConfig]]:
    """One transaction changing NAME; a refusal is audited on its own, then one line."""
    try:
        with cli_services(data_dir) as services:
            try:
                with transaction(services.sessions) as db:
                    yield db, services.config
            except ServerError as refused:
                with transaction(services.sessions) as db:
                    users.audit_refusal(
                        db, change, name, reason=refused.detail, now=command_now(), actor=_actor()
                    )
                raise
    except ServerError as exc:
        raise click.ClickException(exc.detail) from None


def _confirmed(question: str) -> bool:
    try:
        return click.confirm(question, default=False)
    except click.Abort:  # no terminal, or Ctrl-C: nothing was confirmed
        return False


def _actor() -> users.Actor:
    return users.Actor(name=f"cli:{operator_login()}"[:64], role="operator", source="local")


#: The kernel's record of who logged in (pam_loginuid): kept across sudo,
#: su and runuser, and settable only with CAP_AUDIT_CONTROL.
LOGINUID_FILE = Path("/proc/self/loginuid")
#: The loginuid of a process no login started (a daemon, some containers).
NO_LOGINUID = 2**32 - 1


def operator_login() -> str:
    """Who runs this command (R9): the person who logged in, else the effective user.

    Host commands run as the data directory's owner (``runuser -u fwupdate
    -- fwserver ...``, R6), so the effective user alone would make every
    operator ``fwupdate`` and four eyes would refuse two different people (or
    one person under two accounts would pass). The login uid names the person
    whose session it is. Never ``getpass.getuser()``: it believes ``LOGNAME``
    and ``USER``, so ``USER=someone-else fwserver deployment approve`` would
    pass four eyes.
    """
    return login_name(_login_uid(), os.geteuid())


def login_name(login_uid: int | None, effective_uid: int) -> str:
    """The name of ``login_uid`` if a login set one, else of ``effective_uid``."""
    uid = effective_uid if login_uid in (None, NO_LOGINUID) else login_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


def _login_uid() -> int | None:
    try:
        return int(LOGINUID_FILE.read_text().strip())
    except (OSError, ValueError):  # no audit support in this kernel: the effective user
        return None


def _state(person: User, locked: bool) -> str:
    if users.removed(person):
        return "removed"
    if person.disabled:
        return "disabled"
    if locked:
        return "locked"
    if person.must_change_password or not person.totp_enrolled:
        return "first-login"
    return "active"
