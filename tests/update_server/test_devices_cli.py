"""``fwserver device`` and ``fwserver user scope``: an administrator on the server's host.

Threats: a technician of one hospital seeing (or accepting) another's
devices (R6); a decommissioned device still heard (R62); an enrolment token
left where it can be read (stored only as its hash, shown once).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from tests.clocks import FakeClock
from tests.update_server.devices_helpers import FakeDevice, audit_entries, detail
from tests.update_server.people import create_user, enrolled_user
from update_server.audit.actions import Action
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.models import Role

pytestmark = pytest.mark.usefixtures("fast_hashing")


def fwserver(config: ServerConfig, clock: FakeClock, *args: str) -> Result:
    argv = [args[0], *args[1:2], "--data-dir", str(config.data_dir), *args[2:]]
    return CliRunner().invoke(main, argv, obj=CommandClock(clock))


def _token(config: ServerConfig, clock: FakeClock, *options: str) -> str:
    result = fwserver(config, clock, "device", "enrol-token", "--model", "pump-x100", *options)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_enrol_token_printed_once_then_a_device_registers_and_is_accepted(
    app: Flask, client: FlaskClient, config: ServerConfig, clock: FakeClock
) -> None:
    token = _token(config, clock, "--site", "ward-3")
    device = FakeDevice("pump-1")
    assert device.register(client, token, now=clock.now).status_code == 201
    listed = fwserver(config, clock, "device", "list")
    assert "pump-1" in listed.output and "pending" in listed.output
    accepted = fwserver(config, clock, "device", "accept", "pump-1")
    assert (accepted.exit_code, accepted.output.strip()) == (0, "pump-1 is accepted")
    assert device.report(client, now=clock.now, running_version="2.0.0").status_code == 200
    shown = fwserver(config, clock, "device", "show", "pump-1").output
    assert "running_version:   2.0.0" in shown and "site:              ward-3" in shown
    (issued,) = audit_entries(app, Action.ENROLMENT_TOKEN)
    assert issued.actor.startswith("cli:") and token not in issued.detail


def test_decommission_from_the_cli_revokes_the_key_at_once_r62(
    client: FlaskClient, config: ServerConfig, clock: FakeClock
) -> None:
    device = FakeDevice("pump-1")
    device.register(client, _token(config, clock, "--accept"), now=clock.now)
    assert device.report(client, now=clock.now).status_code == 200
    result = fwserver(config, clock, "device", "decommission", "--yes", "pump-1")
    assert result.exit_code == 0, result.output
    assert device.report(client, now=clock.now).status_code == 401
    again = fwserver(config, clock, "device", "accept", "pump-1")
    assert again.exit_code == 1 and "decommissioning is final" in again.output


def test_unknown_device_is_one_line_and_exit_1(config: ServerConfig, clock: FakeClock) -> None:
    result = fwserver(config, clock, "device", "show", "ghost")
    assert result.exit_code == 1
    assert "no device ghost" in result.output and "Traceback" not in result.output


def test_token_lifetime_past_the_maximum_is_refused(config: ServerConfig, clock: FakeClock) -> None:
    result = fwserver(
        config, clock, "device", "enrol-token", "--model", "pump-x100", "--expires-in", "10000"
    )
    assert result.exit_code == 2 and "--expires-in" in result.output


def test_technician_sees_only_the_devices_of_their_sites_r6(
    app: Flask, client: FlaskClient, config: ServerConfig, clock: FakeClock
) -> None:
    """A device of another site is 404 to them (its existence does not leak), not 403."""
    for name, site in (("pump-1", "ward-3"), ("pump-2", "other-hospital")):
        FakeDevice(name).register(client, _token(config, clock, "--site", site), now=clock.now)
    tech = enrolled_user(app, client, clock, "tom", Role.TECHNICIAN)
    assert client.get("/api/v1/devices", headers=tech.headers).get_json() == {"devices": []}
    scoped = fwserver(config, clock, "user", "scope", "tom", "--site", "ward-3")
    assert scoped.exit_code == 0, scoped.output
    listed = client.get("/api/v1/devices", headers=tech.headers).get_json()["devices"]
    assert [device["device_id"] for device in listed] == ["pump-1"]
    assert client.get("/api/v1/devices/pump-2", headers=tech.headers).status_code == 404
    foreign = client.post("/api/v1/devices/pump-2/accept", headers=tech.headers)
    assert foreign.status_code == 404
    own = client.post("/api/v1/devices/pump-1/accept", headers=tech.headers)
    assert own.get_json()["state"] == "accepted"
    (scope_entry,) = audit_entries(app, Action.USER_SCOPE)
    assert detail(scope_entry) == {"sites": ["ward-3"]}
    cleared = fwserver(config, clock, "user", "scope", "tom", "--clear")
    assert cleared.exit_code == 0
    assert client.get("/api/v1/devices", headers=tech.headers).get_json() == {"devices": []}


def test_a_technician_cannot_decommission_r6(
    app: Flask, client: FlaskClient, config: ServerConfig, clock: FakeClock
) -> None:
    FakeDevice("pump-1").register(client, _token(config, clock, "--site", "s1"), now=clock.now)
    tech = enrolled_user(app, client, clock, "tom", Role.TECHNICIAN)
    fwserver(config, clock, "user", "scope", "tom", "--site", "s1")
    headers = {**tech.headers, "X-OTP": tech.next_otp(clock)}
    assert client.post("/api/v1/devices/pump-1/decommission", headers=headers).status_code == 403


def test_scope_is_for_technicians_only(app: Flask, config: ServerConfig, clock: FakeClock) -> None:
    create_user(app, clock, "rita", Role.RELEASE_MANAGER)
    result = fwserver(config, clock, "user", "scope", "rita", "--site", "ward-3")
    assert result.exit_code == 1 and "a scope is for technicians" in result.output
