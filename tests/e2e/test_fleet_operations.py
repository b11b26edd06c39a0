"""Fleet operations end to end: a wave that stops itself, a freeze two officers lift (issue 11).

The real ``fwserver serve`` (gunicorn, TLS, two workers) with a webhook
receiver and a syslog collector on loopback; three real ``fwclient`` pumps,
registered, on a fleet left at its default ("assigned": R9, a device
installs only what a deployment gives it).

1. A pump with no deployment installs nothing (``no_assignment``).
2. manager1 deploys 2.0.0 to the fleet in two waves (failure threshold 0 %);
   their own approval is refused (R9, four eyes); manager2 approves with a
   fresh code; wave 1's pump installs it, fails its health check, rolls
   back and reports: the server stops the deployment by itself, and wave
   2's pumps are assigned nothing.
3. officer1 freezes the system with a fresh code (R24, R33, R34): a pump's
   poll says frozen and it installs nothing; an approval is refused (423).
   officer2's vote alone does not lift it; officer3's second vote does.
4. Each step shows in the audit log (its chain verified), in syslog (RFC
   5424), in the webhook receiver (HMAC-checked, each alert once), on the
   status (R38) and in ``/metrics``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import RunningServer, fwclient, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.people import Person, call, enrolled
from tests.e2e.ward import Ward, pump
from tests.update_server.webhook_receiver import WebhookReceiver, receiving
from update_server.config import CONFIG_FILE, ServerConfig

TARGET = f"{LINE}/pump-fw-2.0.0.bin"
PUMPS = ("pump-0001", "pump-0002", "pump-0003")
#: How long the alert worker may take to deliver (it passes every 2 s).
DELIVERY_WAIT = 30.0
#: Audit entries read per request.
PAGE = 500


@dataclass
class Fleet:
    ward: Ward
    receiver: WebhookReceiver
    syslog: socket.socket
    pumps: dict[str, list[str]]

    @property
    def server(self) -> RunningServer:
        return self.ward.server


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet-e2e")
    data_dir = new_data_dir(work)
    config = ServerConfig.load(data_dir)
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(64 * 1024))
    offline = work / "offline"
    info = FirmwareInfo(version="2.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(offline, config, image, info, authorization=False)
    import_repository(data_dir, offline, targets_dir=work)
    secret = os.urandom(32).hex().encode()
    (data_dir / "siem.secret").write_bytes(secret)
    (data_dir / "siem.secret").chmod(0o600)
    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(0.2)
    with receiving(secret, time.time) as receiver:
        settings = json.loads((data_dir / CONFIG_FILE).read_text())
        settings["syslog_address"] = f"udp://127.0.0.1:{syslog.getsockname()[1]}"
        settings["alert_webhooks"] = [
            {"name": "siem", "url": receiver.url, "secret_file": "siem.secret"}
        ]
        (data_dir / CONFIG_FILE).write_text(json.dumps(settings))
        with start_server(data_dir) as server:
            ward = Ward(server, offline / "metadata" / "1.root.json", work)
            yield Fleet(ward, receiver, syslog, {name: pump(ward, name) for name in PUMPS})
    syslog.close()


def _fresh(person: Person) -> dict[str, str]:
    return {**person.headers, "X-OTP": person.unused_code()}


def _deployment(fleet: Fleet, person: Person) -> dict[str, Any]:
    status, shown, _ = call(fleet.server, "GET", "/api/v1/deployments/1", None, person.headers)
    assert status == 200, shown
    return shown


def _syslog_lines(sock: socket.socket) -> list[str]:
    lines = []
    while True:
        try:
            lines.append(sock.recv(65536).decode("utf-8", "replace"))
        except TimeoutError:
            return lines


def _alert_classes(receiver: WebhookReceiver, wanted: Counter[str]) -> Counter[str]:
    """How many alerts of each class were received, once ``wanted`` are in (bounded wait)."""
    deadline = time.monotonic() + DELIVERY_WAIT
    while True:
        classes = Counter(name for alert in receiver.alerts.values() for name in alert["classes"])
        if not wanted - classes or time.monotonic() > deadline:
            return classes
        time.sleep(0.2)


PLAN = {
    "target_path": TARGET, "fleets": [LINE], "waves": [{"count": 1}, {"count": 2}],
    "success_percent": 100, "failure_percent": 0,
}  # fmt: skip


def test_a_wave_stops_itself_and_a_freeze_needs_two_officers_to_lift(fleet: Fleet) -> None:
    idle = fwclient("update", *fleet.pumps["pump-0001"])
    assert idle.returncode == 0, idle.stderr
    assert "installs only what a deployment assigns to it" in idle.stdout, idle.stdout
    waiting = _a_wave_stops_itself(fleet)
    frozen_out = _a_freeze_lifted_by_two_officers(fleet, waiting)
    _each_step_shows(fleet, frozen_out)


def _a_wave_stops_itself(fleet: Fleet) -> list[str]:
    """Step 2: four eyes, then a failure past the threshold stops it; the pumps still waiting."""
    server = fleet.server
    manager1 = enrolled(server, "manager1", role="release_manager")
    manager2 = enrolled(server, "manager2", role="release_manager")
    status, made, _ = call(server, "POST", "/api/v1/deployments", PLAN, manager1.headers)
    assert status == 201, made
    approve = f"/api/v1/deployments/{made['id']}/approve"
    status, own, _ = call(server, "POST", approve, None, _fresh(manager1))
    assert status == 403, own
    assert "another release manager approves it" in own["detail"], own
    status, approved, _ = call(server, "POST", approve, None, _fresh(manager2))
    assert (status, approved["state"]) == (200, "running"), approved
    waves = {row["device_id"]: row["wave"] for row in _deployment(fleet, manager1)["devices"]}
    (in_wave_1,) = [device for device, wave in waves.items() if wave == 1]

    failed = fwclient("update", *fleet.pumps[in_wave_1], "--tries", "1", "--health-check", "false")
    assert failed.returncode != 0, failed.stdout
    shown = _deployment(fleet, manager1)
    assert shown["state"] == "stopped", shown
    assert {row["device_id"]: row["status"] for row in shown["devices"]}[in_wave_1] == "failed"
    later = [device for device, wave in waves.items() if wave == 2]
    untouched = fwclient("update", *fleet.pumps[later[0]])
    assert untouched.returncode == 0, untouched.stderr
    assert "2.0.0" not in _installed(fleet, later[0])
    return later


def _a_freeze_lifted_by_two_officers(fleet: Fleet, pumps: list[str]) -> int:
    """Step 3: one officer freezes, two others lift; the deployment the freeze held back."""
    server = fleet.server
    officers = [enrolled(server, f"officer{n}", role="security_officer") for n in (1, 2, 3)]
    freeze = {"reason": "a signing key may have leaked"}
    status, frozen, _ = call(server, "POST", "/api/v1/freeze", freeze, _fresh(officers[0]))
    assert status in (200, 201), frozen
    polled = fwclient("update", *fleet.pumps[pumps[1]])
    assert polled.returncode == 0, polled.stderr
    assert "failsafe freeze: nothing is installed" in polled.stdout, polled.stdout
    manager3 = enrolled(server, "manager3", role="release_manager")
    manager4 = enrolled(server, "manager4", role="release_manager")
    status, made2, _ = call(server, "POST", "/api/v1/deployments", PLAN, manager3.headers)
    assert status == 201, made2  # planning goes on; nothing it plans starts
    again = f"/api/v1/deployments/{made2['id']}/approve"
    status, refused, _ = call(server, "POST", again, None, _fresh(manager4))
    assert status == 423, refused
    assert "a signing key may have leaked" in refused["detail"], refused
    status, vote, _ = call(server, "POST", "/api/v1/freeze/lift", None, _fresh(officers[1]))
    assert (status, vote["vote"]) == (200, "first"), vote
    status, still, _ = call(server, "GET", "/api/v1/freeze", None, officers[1].headers)
    assert still["mode"] == "frozen", still
    status, lifted, _ = call(server, "POST", "/api/v1/freeze/lift", None, _fresh(officers[2]))
    assert (status, lifted["vote"]) == (200, "lifted"), lifted
    held: int = made2["id"]
    return held


def _each_step_shows(fleet: Fleet, held: int) -> None:
    """Step 4: status, audit log and its chain, webhook receiver, syslog, /metrics."""
    server = fleet.server
    auditor = enrolled(server, "audrey", role="auditor")
    status, report, _ = call(server, "GET", "/api/v1/status", None, auditor.headers)
    assert status == 200, report
    assert report["mode"]["mode"] == "normal"
    assert report["fleet"]["by_state"]["accepted"] == len(PUMPS)
    # Deployment 1 stopped; deployment 2 waits for an approval the freeze refused.
    assert [d["id"] for d in report["deployments"]] == [held], report["deployments"]

    status, verified, _ = call(server, "GET", "/api/v1/audit/verify", None, auditor.headers)
    assert (status, verified["ok"]) == (200, True), verified
    actions = _audit_actions(fleet, auditor)
    for action in ("deployment.create", "deployment.approve", "deployment.stopped",
                   "freeze.enter", "freeze.vote", "freeze.leave"):  # fmt: skip
        assert action in actions, action

    # A pump with nothing else to run enters failsafe when its first firmware fails.
    wanted = Counter(deployment_stopped=1, device_update_failed=1, freeze_changed=2)
    classes = _alert_classes(fleet.receiver, wanted)
    assert not wanted - classes, classes  # entered and left: two freeze alerts
    assert not [r for r in fleet.receiver.received if r.duplicate or r.status == 401]

    logged = "\n".join(_syslog_lines(fleet.syslog))
    for action in ("deployment.stopped", "freeze.enter", "freeze.leave"):
        assert action in logged, action

    with server.pool() as pool:
        metrics = pool.request("GET", f"{server.url}/metrics").data.decode()
    assert 'fwserver_device_checkins_total{route="/api/v1/device/poll"' in metrics
    assert "fwserver_device_update_results_total" in metrics
    assert 'fwserver_alerts_total{outcome="sent"}' in metrics


def _installed(fleet: Fleet, device: str) -> str:
    shown = fwclient("status", "--state", fleet.pumps[device][1])
    assert shown.returncode == 0, shown.stderr
    return next(
        (line for line in shown.stdout.splitlines() if line.startswith("installed_version")), ""
    )


def _audit_actions(fleet: Fleet, auditor: Person) -> set[str]:
    found: set[str] = set()
    after = 0
    while True:
        status, page, _ = call(
            fleet.server, "GET", f"/api/v1/audit?after={after}&limit={PAGE}", None, auditor.headers
        )
        assert status == 200, page
        found |= {entry["action"] for entry in page["entries"]}
        if len(page["entries"]) < PAGE:  # each read is audited: the log grows as it is read
            return found
        after = page["next_after"]
