"""An offline install reaches the server with the device's next report (issue 13, O8, R38).

The entries are a real device's log after ``fwclient update --bundle``
(``tests.client.bundles``); the route is the real one, with its chain check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.client.bundles import offline_device
from tests.client.sim import DEVICE, Sim
from tests.clocks import FakeClock
from tests.update_server.devices_helpers import FakeDevice, audit_entries, detail, issue_token
from tests.update_server.people import LoggedIn, enrolled_user
from update_server.audit.actions import Action
from update_server.models import Role

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def admin(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "alice", Role.ADMIN)


def test_a_report_carrying_an_offline_install_is_accepted_and_its_event_audited_o8_r38(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock, tmp_path: Path
) -> None:
    sim = Sim(tmp_path / "sim")
    state = offline_device(tmp_path, sim)  # 1.0.0 installed from a bundle
    entries = list(state.events.entries())
    assert "offline_install" in [entry["type"] for entry in entries]
    device = FakeDevice(DEVICE)
    token = issue_token(client, admin, clock, accept=True)
    assert device.register(client, token, now=clock.now).get_json()["state"] == "accepted"
    answer = device.report(client, now=clock.now, entries=entries, running_version="1.0.0")
    assert answer.get_json() == {"acked_seq": entries[-1]["seq"], "acked_hash": entries[-1]["hash"]}
    reports = [e for e in audit_entries(app, Action.DEVICE_REPORT) if e.outcome == "success"]
    assert "offline_install" in detail(reports[-1])["events"]
