"""A fleet for deployment tests: devices with their own keys and event logs, release managers.

Devices are put straight into the registry, accepted, with a key made in the
test; each signs its polls and reports as the client does
(``tests.update_server.devices_helpers.FakeDevice``) and keeps a real event
log (``client.events``) whose new entries its reports carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from werkzeug.test import TestResponse

from client.events import EventLog, EventType
from fwcommon.message_signatures import public_key_dict
from signer.authoring import revoke_release
from signer.signing import sign_roles
from tests.update_server.devices_helpers import FakeDevice
from tests.update_server.repo_world import World
from update_server.db import transaction
from update_server.devices.enrolment import key_id
from update_server.devices.models import Device
from update_server.models import Role

POLL = "/api/v1/device/poll"
DEPLOYMENTS = "/api/v1/deployments"


@dataclass
class Pump:
    """A device in the fleet: it polls, logs events and reports them."""

    world: World
    device: FakeDevice
    log: EventLog
    running: str = "1.0.0"
    sent: int = field(default=0)

    @property
    def id(self) -> str:
        return self.device.device_id

    def poll(self) -> TestResponse:
        return self.device.signed(self.world.client, "GET", POLL, None, now=self.world.now)

    def logs(self, kind: str, message: str = "", **detail: Any) -> Pump:
        self.log.append(EventType(kind), message or kind, now=self.world.now, **detail)
        return self

    def report(self, *, running: str | None = None) -> TestResponse:
        if running is not None:
            self.running = running
        entries = list(self.log.entries())
        new, self.sent = entries[self.sent :], len(entries)
        answer = self.device.report(
            self.world.client, now=self.world.now, running_version=self.running, entries=new
        )
        assert answer.status_code == 200, answer.get_json()
        assert "refused" not in answer.get_json(), answer.get_json()
        return answer


def add_pump(world: World, name: str, *, site: str = "north", running: str = "1.0.0") -> Pump:
    device = FakeDevice(name)
    fields = public_key_dict(device.signer.public_key)
    with transaction(world.services.sessions) as db:
        db.add(
            Device(
                id=name,
                hardware_model=device.model,
                site=site,
                state="accepted",
                public_key=fields,
                key_id=key_id(fields),
                registered_at=world.now,
                running_version=running,
            )
        )
    logs = world.tmp / "logs" / name
    return Pump(world, device, EventLog(logs / "events.log"), running)


def publish(world: World, version: str) -> str:
    release = world.release("alice", version)
    answer = world.publish("alice", release)
    assert answer.status_code == 200, answer.get_json()
    return f"pump-x100/fw-{version}.bin"


def withdraw(world: World, path: str) -> None:
    """``fwsign revoke-release`` and a publication of the line without it (R56)."""
    revoke_release(world.open_offline("alice"), path=path)
    sign_roles(world.open_offline("bob"), roles=["pump-x100"])
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201, answer.get_json()
    published = world.publish("alice", answer.get_json()["id"])
    assert published.status_code == 200, published.get_json()


def manager(world: World, name: str) -> dict[str, str]:
    return world.as_(name, Role.RELEASE_MANAGER)


def fresh(world: World, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "X-OTP": world.otp.code()}


def create(world: World, who: str, **body: Any) -> TestResponse:
    return world.client.post(DEPLOYMENTS, json=body, headers=manager(world, who))


def act(world: World, who: str, deployment: int, action: str, *, code: bool = True) -> TestResponse:
    headers = manager(world, who)
    return world.client.post(
        f"{DEPLOYMENTS}/{deployment}/{action}", headers=fresh(world, headers) if code else headers
    )


def shown(world: World, deployment: int) -> dict[str, Any]:
    answer = world.client.get(f"{DEPLOYMENTS}/{deployment}", headers=manager(world, "manager1"))
    assert answer.status_code == 200, answer.get_json()
    body: dict[str, Any] = answer.get_json()
    return body


def in_waves(world: World, deployment: int) -> list[list[str]]:
    waves: dict[int, list[str]] = {}
    for row in shown(world, deployment)["devices"]:
        waves.setdefault(row["wave"], []).append(row["device_id"])
    return [waves[number] for number in sorted(waves)]
