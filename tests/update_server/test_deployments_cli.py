"""``fwserver deployment`` and ``fwserver group``: fleet operations from the server's host.

The same rules as the API: four eyes (R9, D3: an operator cannot approve
their own deployment), each change and refusal audited as the operator.
"""

from __future__ import annotations

import pwd

import pytest
from click.testing import CliRunner, Result

from tests.update_server.deployments_helpers import Pump, add_pump, publish
from tests.update_server.devices_helpers import audit_entries
from tests.update_server.repo_world import World
from update_server import cli_users
from update_server.audit.actions import Action
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.deployments.rollout import same_person

PATH = "pump-x100/fw-2.0.0.bin"


def fwserver(world: World, *args: str) -> Result:
    argv = [args[0], args[1], "--data-dir", str(world.config.data_dir), *args[2:]]
    return CliRunner().invoke(main, argv, obj=CommandClock(world.clock))


@pytest.fixture
def pumps(world: World) -> list[Pump]:
    publish(world, "2.0.0")
    return [add_pump(world, f"pump-0{n}") for n in range(4)]


def test_r9_a_deployment_made_on_the_cli_is_approved_by_another_operator_only(
    world: World, pumps: list[Pump], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_users, "operator_login", lambda: "ops-anna")
    assert fwserver(world, "group", "create", "canary").exit_code == 0
    added = fwserver(world, "group", "add", "canary", "pump-00", "pump-01")
    assert added.output.strip() == "added: pump-00, pump-01"
    made = fwserver(
        world, "deployment", "create", "--target", PATH, "--group", "canary",
        "--wave", "1", "--success", "100", "--failure", "0",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "awaiting another operator's approval" in made.output

    own = fwserver(world, "deployment", "approve", "1")

    assert own.exit_code == 1
    assert "another release manager approves it" in own.output
    monkeypatch.setattr(cli_users, "operator_login", lambda: "ops-ben")
    approved = fwserver(world, "deployment", "approve", "1")
    assert (approved.exit_code, approved.output.strip()) == (0, "deployment 1 is running")
    shown = fwserver(world, "deployment", "show", "1").output
    assert "wave 1: 1 devices, 0 installed, 0 failed or refused (started)" in shown
    assert "assigned" in shown
    outcomes = [(e.actor, e.outcome) for e in audit_entries(world.app, Action.DEPLOYMENT_APPROVE)]
    assert outcomes == [("cli:ops-anna", "refused"), ("cli:ops-ben", "success")]
    assert fwserver(world, "deployment", "pause", "1").output.strip() == "deployment 1 is paused"
    assert fwserver(world, "deployment", "abort", "1").output.strip() == "deployment 1 is aborted"
    assert "aborted" in fwserver(world, "deployment", "list").output


def test_a_groups_window_is_set_and_checked_on_the_cli(world: World, pumps: list[Pump]) -> None:
    fwserver(world, "group", "create", "north", "--match", "site=north")
    wrong = fwserver(
        world, "group", "window", "north", "--days", "mon", "--start", "25:00",
        "--minutes", "60", "--timezone", "Europe/Paris",
    )  # fmt: skip
    assert wrong.exit_code == 1
    assert "HH:MM" in wrong.output
    done = fwserver(
        world, "group", "window", "north", "--days", "mon,tue", "--start", "01:00",
        "--minutes", "60", "--timezone", "Europe/Paris",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    shown = fwserver(world, "group", "show", "north").output
    assert "Europe/Paris" in shown and "pump-03" in shown


def test_a_fleets_install_setting_is_set_on_the_cli_and_audited(world: World) -> None:
    """Issue 11: "newest eligible release" is explicit, per fleet; "assigned" is the default."""
    assert fwserver(world, "fleet", "list").output.strip() == "default: assigned"
    wrong = fwserver(world, "fleet", "install", "pump x100", "newest")
    assert wrong.exit_code == 1
    assert fwserver(world, "fleet", "list").output.strip() == "default: assigned"

    done = fwserver(world, "fleet", "install", "pump-x100", "newest")

    assert (done.exit_code, done.output.strip()) == (0, "fleet pump-x100: newest")
    assert "pump-x100  newest" in fwserver(world, "fleet", "list").output
    outcomes = [(e.object, e.outcome) for e in audit_entries(world.app, Action.FLEET_INSTALL)]
    assert outcomes == [("fleet:pump x100", "refused"), ("fleet:pump-x100", "success")]


def test_r9_the_operator_is_the_effective_user_not_the_user_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """USER=someone-else does not make another operator (four eyes would fall to one person)."""
    real = cli_users.operator_login()
    monkeypatch.setenv("USER", "not-" + real)
    monkeypatch.setenv("LOGNAME", "not-" + real)
    assert cli_users.operator_login() == real


def test_r9_the_same_name_through_the_api_and_on_the_host_is_one_person() -> None:
    """D3: mona creates through the API; cli:mona (her shell login) may not approve it."""
    assert same_person("cli:mona", "mona") and same_person("mona", "cli:mona")
    assert not same_person("cli:max", "mona")


def test_r9_the_operator_is_who_logged_in_not_the_account_a_command_runs_as() -> None:
    """mona and max both run ``runuser -u fwupdate -- fwserver ...``: still two people.

    The login uid (kept across sudo and runuser) names the person; a process
    no login started (loginuid unset) is its effective user.
    """
    root, nobody = pwd.getpwnam("root"), pwd.getpwnam("nobody")
    assert cli_users.login_name(root.pw_uid, nobody.pw_uid) == "root"
    assert cli_users.login_name(cli_users.NO_LOGINUID, nobody.pw_uid) == "nobody"
    assert cli_users.login_name(None, nobody.pw_uid) == "nobody"
    assert cli_users.login_name(2**31 - 7, nobody.pw_uid) == f"uid-{2**31 - 7}"
