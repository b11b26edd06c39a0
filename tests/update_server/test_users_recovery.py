"""An administrator recovers people from mistakes (R9, R47): reset, enable, remove.

``fwserver user reset/enable/remove`` run through ``CliRunner`` on the app's
own data directory and clock, so what they change is seen through the API.
Each change is audited (actor, target, outcome); a refused one changes
nothing, is audited as refused, and exits 1 with one line saying why.
"""

from __future__ import annotations

import json
import re

import pyotp
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.people import (
    LoggedIn,
    bearer,
    create_user,
    enrolled_user,
    login,
    new_password,
    otp_at,
)
from update_server import users
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.models import AuditEntry, LoginThrottle, Role, User

ME, ENROLL, CONFIRM = "/api/v1/auth/me", "/api/v1/auth/totp/enroll", "/api/v1/auth/totp/confirm"


pytestmark = pytest.mark.usefixtures("fast_hashing")


def fwserver(config: ServerConfig, clock: FakeClock, *args: str) -> Result:
    argv = ["user", *args, "--data-dir", str(config.data_dir)]
    return CliRunner().invoke(main, argv, obj=CommandClock(clock))


def printed_password(result: Result) -> str:
    found = re.search(r"at next login\): (\S+)$", result.output.strip())
    assert found is not None, result.output
    return found.group(1)


def changes(app: Flask) -> list[tuple[str, str, str, dict[str, object]]]:
    """The ``user.change`` audit entries: actor, object, outcome, detail."""
    with app.extensions["fw"].sessions() as db:
        rows = db.execute(
            select(AuditEntry.actor, AuditEntry.object, AuditEntry.outcome, AuditEntry.detail)
            .where(AuditEntry.action == "user.change")
            .order_by(AuditEntry.seq)
        ).all()
    return [(actor, target, outcome, json.loads(detail)) for actor, target, outcome, detail in rows]


def stored(app: Flask, name: str) -> User:
    with app.extensions["fw"].sessions() as db:
        user = db.scalars(select(User).where(User.name == name)).one()
        db.expunge(user)
    return user


def enrol_again(client: FlaskClient, clock: FakeClock, name: str, initial: str) -> LoggedIn:
    """First login once more, in one step: enrol, confirm with the new password, log in."""
    token = login(client, name, initial).get_json()["token"]
    secret = client.post(ENROLL, headers=bearer(token)).get_json()["secret"]
    code_source = pyotp.TOTP(secret)
    password = f"{new_password(name)}-again"
    body = {
        "otp": otp_at(code_source, clock),
        "current_password": initial,
        "new_password": password,
    }
    assert client.post(CONFIRM, json=body, headers=bearer(token)).status_code == 200
    clock.advance(seconds=30)
    token = login(client, name, password, otp_at(code_source, clock)).get_json()["token"]
    return LoggedIn(name, token, code_source, password)


def test_r47_reset_of_a_lost_phone_means_first_login_again_with_a_fresh_secret(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    result = fwserver(config, clock, "reset", "alice")
    assert result.exit_code == 0, result.output
    initial = printed_password(result)
    # Every session ended; the old password and the old phone are both dead.
    assert client.get(ME, headers=alice.headers).status_code == 401
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 401
    first = login(client, "alice", initial).get_json()
    assert (first["must_change_password"], first["totp_enrolled"]) == (True, False)
    assert client.get("/api/v1/repository", headers=bearer(first["token"])).status_code == 403
    again = enrol_again(client, clock, "alice", initial)
    assert again.totp.secret != alice.totp.secret
    assert client.get(ME, headers=again.headers).status_code == 200
    assert "first-login" not in fwserver(config, clock, "list").output


def test_r25_a_reset_person_may_use_the_new_secret_at_once(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    """Replay is per secret: the old secret's last step does not hold back the new one's codes."""
    enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)  # a code of this step used
    initial = printed_password(fwserver(config, clock, "reset", "alice"))
    again = enrol_again(client, clock, "alice", initial)  # a code of this same step
    assert client.get(ME, headers=again.headers).status_code == 200


def test_reset_clears_a_lockout_and_keeps_the_old_password_out(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    """R9: the password that was replaced (it may have leaked) cannot be chosen again."""
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    for _ in range(config.max_failed_logins):
        login(client, "alice", "a-wrong-password-guess")
    assert "locked" in fwserver(config, clock, "list").output
    initial = printed_password(fwserver(config, clock, "reset", "alice"))
    with app.extensions["fw"].sessions() as db:
        assert db.get(LoginThrottle, "alice") is None
    token = login(client, "alice", initial).get_json()["token"]
    secret = client.post(ENROLL, headers=bearer(token)).get_json()["secret"]
    body = {
        "otp": otp_at(pyotp.TOTP(secret), clock),
        "current_password": initial,
        "new_password": alice.password,
    }
    refused = client.post(CONFIRM, json=body, headers=bearer(token))
    assert refused.status_code == 422
    assert "used this password recently" in refused.get_json()["detail"]


def test_reset_is_audited_without_the_password(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    result = fwserver(config, clock, "reset", "alice")
    initial = printed_password(result)
    [(actor, target, outcome, detail)] = changes(app)
    assert actor.startswith("cli:")
    assert (target, outcome) == ("user:alice", "success")
    assert detail == {"change": "reset", "sessions": 1}
    with app.extensions["fw"].sessions() as db:
        assert not any(initial in entry for entry in db.scalars(select(AuditEntry.detail)))


def test_reset_leaves_a_disabled_person_disabled(
    app: Flask, clock: FakeClock, config: ServerConfig
) -> None:
    create_user(app, clock, "bob", Role.AUDITOR)
    assert fwserver(config, clock, "disable", "bob").exit_code == 0
    assert fwserver(config, clock, "reset", "bob").exit_code == 0
    assert stored(app, "bob").disabled is True


def test_enable_undoes_disable(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    assert fwserver(config, clock, "disable", "alice").exit_code == 0
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 401
    result = fwserver(config, clock, "enable", "alice")
    assert result.exit_code == 0, result.output
    assert result.output == "enabled alice\n"
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 200
    assert [(outcome, detail) for _, _, outcome, detail in changes(app)] == [
        ("success", {"change": "disable", "sessions": 1}),
        ("success", {"change": "enable"}),
    ]


def test_enable_of_a_person_not_disabled_is_refused(
    app: Flask, clock: FakeClock, config: ServerConfig
) -> None:
    create_user(app, clock, "bob", Role.AUDITOR)
    result = fwserver(config, clock, "enable", "bob")
    assert result.exit_code == 1
    assert "bob is not disabled" in result.output


def test_r47_a_removed_name_cannot_log_in_nor_come_back(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    removed_on = clock.now
    result = fwserver(config, clock, "remove", "--yes", "alice")
    assert result.exit_code == 0, result.output
    assert "1 session(s) ended" in result.output
    assert client.get(ME, headers=alice.headers).status_code == 401
    assert login(client, "alice", alice.password, alice.next_otp(clock)).status_code == 401
    person = stored(app, "alice")
    assert person.removed_at is not None and users.aware(person.removed_at) == removed_on
    assert person.disabled and person.password_hash == users.UNUSABLE_HASH
    assert re.search(r"^alice\s+release_engineer\s+removed", fwserver(config, clock, "list").output)
    for command in (["enable"], ["reset"], ["disable"], ["unlock"], ["remove", "--yes"]):
        refused = fwserver(config, clock, *command, "alice")
        assert refused.exit_code == 1, command
        assert "alice was removed" in refused.output
    taken = fwserver(config, clock, "add", "--role", "auditor", "alice")
    assert taken.exit_code == 1
    assert "never reused" in taken.output


def test_remove_keeps_the_history_of_the_name(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig
) -> None:
    """R27: the audit log's entries for the name still name one person, whose row stays."""
    enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    with app.extensions["fw"].sessions() as db:
        before = db.scalars(select(AuditEntry.seq).where(AuditEntry.object == "user:alice")).all()
    fwserver(config, clock, "remove", "--yes", "alice")
    with app.extensions["fw"].sessions() as db:
        after = db.scalars(select(AuditEntry.seq).where(AuditEntry.object == "user:alice")).all()
    assert after[: len(before)] == before
    assert stored(app, "alice").created_at is not None
    assert changes(app)[-1][1:] == ("user:alice", "success", {"change": "remove", "sessions": 1})


def test_remove_asks_first_and_changes_nothing_unless_confirmed(
    app: Flask, clock: FakeClock, config: ServerConfig
) -> None:
    create_user(app, clock, "bob", Role.AUDITOR)
    argv = ["user", "remove", "bob", "--data-dir", str(config.data_dir)]
    declined = CliRunner().invoke(main, argv, input="n\n", obj=CommandClock(clock))
    assert declined.exit_code == 1
    assert "nothing changed: bob was not removed" in declined.output
    no_terminal = CliRunner().invoke(main, argv, obj=CommandClock(clock))
    assert no_terminal.exit_code == 1
    assert "Traceback" not in no_terminal.output
    assert stored(app, "bob").disabled is False
    assert changes(app) == []
    accepted = CliRunner().invoke(main, argv, input="y\n", obj=CommandClock(clock))
    assert accepted.exit_code == 0, accepted.output


@pytest.mark.parametrize(
    "command", [["reset"], ["enable"], ["disable"], ["unlock"], ["remove", "--yes"]]
)
def test_unknown_names_are_refused_audited_and_change_nothing(
    app: Flask, clock: FakeClock, config: ServerConfig, command: list[str]
) -> None:
    result = fwserver(config, clock, *command, "ghost")
    assert result.exit_code == 1
    assert result.output.strip().endswith("no user named ghost")
    assert "Traceback" not in result.output
    with app.extensions["fw"].sessions() as db:
        assert db.scalars(select(User)).all() == []
    [(actor, target, outcome, detail)] = changes(app)
    assert actor.startswith("cli:")
    assert (target, outcome) == ("user:ghost", "refused")
    assert detail == {"change": command[0], "reason": "no user named ghost"}


@pytest.mark.parametrize("command", [["disable"], ["remove", "--yes"]])
def test_the_last_active_administrator_cannot_be_disabled_nor_removed(
    app: Flask, client: FlaskClient, clock: FakeClock, config: ServerConfig, command: list[str]
) -> None:
    """R9: someone must always be able to repair accounts."""
    enrolled_user(app, client, clock, "root-admin", Role.ADMIN)
    create_user(app, clock, "second", Role.ADMIN)
    assert fwserver(config, clock, "disable", "second").exit_code == 0
    refused = fwserver(config, clock, *command, "root-admin")
    assert refused.exit_code == 1
    assert "last active administrator" in refused.output
    assert stored(app, "root-admin").disabled is False
    assert changes(app)[-1][2] == "refused"
    # With another active administrator, it may go.
    assert fwserver(config, clock, "enable", "second").exit_code == 0
    assert fwserver(config, clock, *command, "root-admin").exit_code == 0


def test_only_the_documented_user_commands_exist() -> None:
    group = main.commands["user"]
    assert set(group.commands) == {  # type: ignore[attr-defined]
        "add",
        "list",
        "reset",
        "disable",
        "enable",
        "unlock",
        "remove",
        "scope",
    }
