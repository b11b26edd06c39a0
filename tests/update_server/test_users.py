"""People: creation without default credentials (R47), names, roles, disable, unlock.

``fwserver user`` commands are tested through ``CliRunner`` on the app's own
data directory, so a person the CLI creates logs in through the API.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import RUN_START as START
from tests.clocks import FakeClock
from tests.update_server.people import (
    create_user,
    enrolled_user,
    login,
    otp_at,
)
from update_server import users
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.errors import BadRequestError, ConflictError, NotFoundError
from update_server.models import AuditEntry, Role, User

pytestmark = pytest.mark.usefixtures("fast_hashing")


def fwserver(config: ServerConfig, clock: FakeClock, *args: str) -> Result:
    """``fwserver user ARGS`` on the test's clock, like the app it shares a database with."""
    argv = ["user", *args, "--data-dir", str(config.data_dir)]
    return CliRunner().invoke(main, argv, obj=CommandClock(clock))


@pytest.mark.parametrize("name", ["alice", "a", "j.doe-2_x", "0day", "a" * 64])
def test_valid_names(name: str) -> None:
    assert users.valid_name(name)


@pytest.mark.parametrize(
    "name", ["", "Alice", ".alice", "-alice", "al ice", "alice/..", "a" * 65, "é", "alice\n"]
)
def test_invalid_names_are_refused(app: Flask, clock: FakeClock, name: str) -> None:
    assert not users.valid_name(name)
    with pytest.raises(BadRequestError, match="not allowed"):
        create_user(app, clock, name, Role.AUDITOR)


def test_unknown_role_is_refused_with_the_choices(app: Flask, clock: FakeClock) -> None:
    with app.extensions["fw"].sessions.begin() as db, pytest.raises(BadRequestError) as caught:
        users.add_user(db, name="bob", role="superuser", now=clock.now)
    assert "release_engineer" in caught.value.detail


def test_a_name_is_taken_once(app: Flask, clock: FakeClock) -> None:
    create_user(app, clock, "bob", Role.AUDITOR)
    with pytest.raises(ConflictError, match="already exists"):
        create_user(app, clock, "bob", Role.ADMIN)


def test_user_creation_is_audited_without_the_password(app: Flask, clock: FakeClock) -> None:
    password = create_user(app, clock, "bob", Role.AUDITOR)
    with app.extensions["fw"].sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "user.create")).one()
    assert (entry.object, entry.outcome, entry.detail) == (
        "user:bob",
        "success",
        '{"role":"auditor"}',
    )
    assert password not in entry.detail


def test_cli_add_prints_a_one_time_password_that_logs_in_once_changed(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    result = fwserver(config, clock, "add", "--role", "release_engineer", "erin")
    assert result.exit_code == 0, result.output
    password = re.search(r"at first login\): (\S+)$", result.output.strip())
    assert password is not None
    body = login(client, "erin", password.group(1)).get_json()
    assert body["must_change_password"] is True
    with app.extensions["fw"].sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "user.create")).one()
    assert entry.actor.startswith("cli:")
    assert entry.role == "operator"


def test_cli_add_refusals_are_one_line_errors(
    config: ServerConfig, app: Flask, clock: FakeClock
) -> None:
    assert fwserver(config, clock, "add", "--role", "admin", "Bad Name").exit_code == 1
    assert fwserver(config, clock, "add", "--role", "root", "bob").exit_code == 2  # click's choice
    assert fwserver(config, clock, "add", "--role", "admin", "bob").exit_code == 0
    again = fwserver(config, clock, "add", "--role", "admin", "bob")
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert "Traceback" not in again.output


def test_cli_refuses_a_directory_that_is_not_initialised(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["user", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "fwserver init" in result.output


def test_cli_list_shows_roles_and_states(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    enrolled_user(app, client, clock, "alice", Role.SECURITY_OFFICER)
    create_user(app, clock, "bob", Role.AUDITOR)
    result = fwserver(config, clock, "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert re.match(rf"alice\s+security_officer\s+active\s+{START:%Y-%m-%d %H:%M}", lines[0])
    assert re.match(r"bob\s+auditor\s+first-login\s+never", lines[1])


def test_cli_disable_ends_sessions_and_refuses_login(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    result = fwserver(config, clock, "disable", "alice")
    assert result.exit_code == 0
    assert "1 session(s) ended" in result.output
    assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 401
    assert login(client, "alice", alice.password, otp_at(alice.totp, clock, 1)).status_code == 401
    assert "disabled" in fwserver(config, clock, "list").output
    assert fwserver(config, clock, "disable", "nobody").exit_code == 1


def test_cli_unlock_lifts_a_lockout(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    for _ in range(config.max_failed_logins):
        login(client, "alice", "a-wrong-password-guess")
    assert "locked" in fwserver(config, clock, "list").output
    assert login(client, "alice", alice.password, otp_at(alice.totp, clock, 1)).status_code == 401
    assert fwserver(config, clock, "unlock", "alice").exit_code == 0
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 200
    with app.extensions["fw"].sessions() as db:
        changes = db.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "user.change")
        ).all()
    assert changes == ['{"change":"unlock"}']


def test_unlock_and_disable_name_an_existing_user(app: Flask, clock: FakeClock) -> None:
    with app.extensions["fw"].sessions() as db:
        with pytest.raises(NotFoundError):
            users.unlock(db, "ghost", now=clock.now)
        with pytest.raises(NotFoundError):
            users.disable(db, "ghost", now=clock.now)


def test_only_the_user_group_is_a_top_level_command() -> None:
    assert "user" in main.commands
    assert {"add", "list", "disable", "unlock"} <= set(main.commands["user"].commands)  # type: ignore[attr-defined]
    assert "add" not in main.commands
    assert "unlock" not in main.commands


def test_disabled_state_is_stored(app: Flask, clock: FakeClock) -> None:
    create_user(app, clock, "bob", Role.AUDITOR)
    with app.extensions["fw"].sessions.begin() as db:
        users.disable(db, "bob", now=clock.now)
    with app.extensions["fw"].sessions() as db:
        assert db.scalars(select(User.disabled).where(User.name == "bob")).one() is True


@pytest.mark.parametrize(
    ("typed", "recorded"),
    [
        ("alice", "alice"),
        ("", "-"),
        ("\ud800", "\\ud800"),
        ("eve\nlogin success", "eve\\nlogin success"),
        ("é" * 100, "\\xe9" * 16),
    ],
)
def test_log_forging_a_name_typed_at_login_is_recorded_escaped(typed: str, recorded: str) -> None:
    """R27: a name that cannot be a user name reaches the audit log as printable ASCII."""
    assert users.printable(typed) == recorded
    assert users.printable(typed).isascii()
    assert len(users.printable(typed)) <= 64
