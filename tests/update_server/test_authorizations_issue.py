"""Issuing technicians' authorizations (update_server.authorizations, rules I1 to I6).

R9 (a fresh code confirms), R6 (scope), R25 (one nonce each), R27 (audited),
R47 (signed by the authorization key), R58 (a technician authorizes on site).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from client.events import AUTHORIZATION_REFUSALS, EventType
from fwcommon.keyref import public_key_from_uri
from repo_metadata.authorization import AuthorizationKeys, SignedAuthorization, check
from tests.update_server.repo_world import World
from update_server.audit.actions import Action
from update_server.authorizations import issuing
from update_server.authorizations.models import IssuedAuthorization
from update_server.db import transaction
from update_server.devices.models import Device, DeviceState, TechnicianSite
from update_server.models import AuditEntry, Role, User

URL = "/api/v1/authorizations"


def add_device(world: World, device_id: str, *, site: str, state: str = "accepted") -> None:
    with transaction(world.services.sessions) as db:
        db.add(
            Device(
                id=device_id,
                hardware_model="pump-x100",
                site=site,
                state=state,
                public_key={"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00"}},
                key_id="00" * 32,
                registered_at=world.now,
            )
        )


def technician(world: World, name: str, *sites: str) -> dict[str, str]:
    headers = world.login(name, Role.TECHNICIAN)
    with transaction(world.services.sessions) as db:
        user = db.scalars(select(User).where(User.name == name)).one()
        for site in sites:
            db.add(TechnicianSite(user_id=user.id, site=site))
    return headers


def publish(world: World, version: str, *, requires_authorization: bool = True) -> str:
    release = world.release("alice", version, requires_authorization=requires_authorization)
    assert world.publish("alice", release).status_code == 200
    return f"pump-x100/fw-{version}.bin"


@pytest.fixture
def ward(world: World) -> dict[str, Any]:
    """Two pumps on the north ward, one in the south; tom works in the north."""
    add_device(world, "pump-0001", site="north")
    add_device(world, "pump-0002", site="north")
    add_device(world, "pump-0009", site="south")
    return {"tom": technician(world, "tom", "north"), "path": publish(world, "2.0.0")}


def post(world: World, headers: dict[str, str], body: dict[str, Any], *, code: bool = True):  # type: ignore[no-untyped-def]
    sent = {**headers, "X-OTP": world.otp.code()} if code else headers
    return world.client.post(URL, json=body, headers=sent)


def audit(world: World, action: str) -> list[AuditEntry]:
    with transaction(world.services.sessions) as db:
        return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def trusted(world: World) -> AuthorizationKeys:
    key = public_key_from_uri(world.config.online_keys["authorization"])
    return AuthorizationKeys({key.keyid: key})


def test_one_code_authorizes_a_list_of_devices_each_bound_to_one_device_r9_r58(
    world: World, ward: dict[str, Any]
) -> None:
    answer = post(
        world, ward["tom"], {"device_ids": ["pump-0001", "pump-0002"], "target_path": ward["path"]}
    )
    assert answer.status_code == 201, answer.get_json()
    issued = answer.get_json()["authorizations"]
    assert [a["device_id"] for a in issued] == ["pump-0001", "pump-0002"]
    published = world.role_json("pump-x100")["signed"]["targets"][ward["path"]]["hashes"]["sha256"]
    nonces = set()
    for item in issued:
        document = SignedAuthorization.from_dict(item["document"])
        auth = document.authorization
        assert (auth.target_path, auth.sha256, auth.technician) == (ward["path"], published, "tom")
        assert auth.expires - auth.issued == timedelta(minutes=15)
        nonces.add(auth.nonce)
        found = check(
            document,
            trusted=trusted(world),
            device_id=item["device_id"],
            target_path=ward["path"],
            sha256=published,
            at=auth.issued,
            nonces={},
        )
        assert found is None, found
        assert item["status"] == "pending"
    assert len(nonces) == 2
    entries = audit(world, Action.AUTHORIZATION_ISSUE)
    assert [e.object for e in entries] == ["device:pump-0001", "device:pump-0002"]
    assert {e.actor for e in entries} == {"tom"}
    assert json.loads(entries[0].detail)["target"] == ward["path"]


def test_without_a_fresh_code_nothing_is_issued_r9(world: World, ward: dict[str, Any]) -> None:
    answer = post(
        world, ward["tom"], {"device_ids": ["pump-0001"], "target_path": ward["path"]}, code=False
    )
    assert answer.status_code == 401
    assert audit(world, Action.AUTHORIZATION_ISSUE) == []


def test_a_device_out_of_the_technicians_scope_is_not_found_and_nothing_is_issued_r6(
    world: World, ward: dict[str, Any]
) -> None:
    body = {"device_ids": ["pump-0001", "pump-0009"], "target_path": ward["path"]}
    answer = post(world, ward["tom"], body)
    assert answer.status_code == 404
    assert "pump-0009" in answer.get_json()["detail"]
    [refused] = audit(world, Action.AUTHORIZATION_ISSUE)  # I5: the refusal, nothing issued
    assert (refused.actor, refused.outcome, refused.object) == (
        "tom",
        "refused",
        f"release:{ward['path']}",
    )
    assert json.loads(refused.detail)["devices"] == ["pump-0001", "pump-0009"]
    with transaction(world.services.sessions) as db:
        assert list(db.scalars(select(IssuedAuthorization))) == []


@pytest.mark.parametrize("role", [Role.ADMIN, Role.RELEASE_MANAGER, Role.SECURITY_OFFICER])
def test_only_a_technician_authorizes(world: World, ward: dict[str, Any], role: Role) -> None:
    headers = world.login(f"someone-{role.value}"[:30], role)
    answer = post(world, headers, {"device_ids": ["pump-0001"], "target_path": ward["path"]})
    assert answer.status_code == 403


def test_a_device_not_accepted_gets_nothing(world: World, ward: dict[str, Any]) -> None:
    add_device(world, "pump-0003", site="north", state=DeviceState.PENDING)
    answer = post(world, ward["tom"], {"device_ids": ["pump-0003"], "target_path": ward["path"]})
    assert answer.status_code == 409
    assert "pending" in answer.get_json()["detail"]


def test_a_release_that_needs_no_authorization_or_is_not_published_is_refused(
    world: World, ward: dict[str, Any]
) -> None:
    free = publish(world, "2.1.0", requires_authorization=False)
    answer = post(world, ward["tom"], {"device_ids": ["pump-0001"], "target_path": free})
    assert answer.status_code == 409
    unknown = post(
        world, ward["tom"], {"device_ids": ["pump-0001"], "target_path": "pump-x100/fw-9.bin"}
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"device_ids": []}, "at least one"),
        ({"device_ids": ["pump-0001", "pump-0001"]}, "twice"),
        ({"device_ids": [f"pump-{i:04}" for i in range(21)]}, "at most 20"),
        ({"device_ids": ["pump-0001"], "lifetime_minutes": 0}, "lifetime_minutes"),
        ({"device_ids": ["pump-0001"], "lifetime_minutes": 61}, "lifetime_minutes"),
        ({"device_ids": ["pump-0001"], "lifetime_minutes": 10**14}, "lifetime_minutes"),
    ],
)
def test_a_request_that_makes_no_sense_is_a_400_with_nothing_issued(
    world: World, ward: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    answer = post(world, ward["tom"], {"target_path": ward["path"], **body})
    assert answer.status_code == 400, answer.get_json()
    assert message in answer.get_json()["detail"]
    with transaction(world.services.sessions) as db:
        assert list(db.scalars(select(IssuedAuthorization))) == []


def test_the_list_shows_a_technician_only_their_sites_and_the_status(
    world: World, ward: dict[str, Any]
) -> None:
    body = {"device_ids": ["pump-0001"], "target_path": ward["path"], "lifetime_minutes": 1}
    post(world, ward["tom"], body)
    south = technician(world, "sue", "south")
    assert world.client.get(URL, headers=south).get_json() == {"authorizations": []}
    listed = world.client.get(URL, headers=ward["tom"]).get_json()["authorizations"]
    assert [(a["device_id"], a["status"]) for a in listed] == [("pump-0001", "pending")]
    one = world.client.get(f"{URL}/{listed[0]['id']}", headers=south)
    assert one.status_code == 404
    world.clock.advance(seconds=61)
    listed = world.client.get(URL, headers=ward["tom"]).get_json()["authorizations"]
    assert listed[0]["status"] == "expired"


def test_the_document_is_shown_to_hand_over_as_a_file(world: World, ward: dict[str, Any]) -> None:
    issued = post(world, ward["tom"], {"device_ids": ["pump-0001"], "target_path": ward["path"]})
    item = issued.get_json()["authorizations"][0]
    shown = world.client.get(f"{URL}/{item['id']}", headers=ward["tom"]).get_json()
    assert shown["document"] == item["document"]
    assert isinstance(datetime.fromisoformat(shown["expires_at"]), datetime)


def _issued(world: World, ward: dict[str, Any], *devices: str) -> list[dict[str, Any]]:
    answer = post(world, ward["tom"], {"device_ids": list(devices), "target_path": ward["path"]})
    assert answer.status_code == 201, answer.get_json()
    items: list[dict[str, Any]] = answer.get_json()["authorizations"]
    return items


def _statuses(world: World, ward: dict[str, Any]) -> dict[str, str]:
    listed = world.client.get(URL, headers=ward["tom"]).get_json()["authorizations"]
    return {item["device_id"]: item["status"] for item in listed}


def test_delivery_to_the_device_is_audited_once_and_an_expired_one_is_not_delivered_i5(
    world: World, ward: dict[str, Any]
) -> None:
    _issued(world, ward, "pump-0001")
    for _ in range(2):
        with transaction(world.services.sessions) as db:
            device = db.get(Device, "pump-0001")
            assert device is not None
            rows = issuing.deliver(db, device, now=world.now, source="10.0.0.7")
            assert [row.device_id for row in rows] == ["pump-0001"]
    assert _statuses(world, ward) == {"pump-0001": "delivered"}
    [delivered] = audit(world, Action.AUTHORIZATION_DELIVER)
    assert (delivered.actor, delivered.source) == ("device:pump-0001", "10.0.0.7")
    world.clock.advance(seconds=16 * 60)
    with transaction(world.services.sessions) as db:
        device = db.get(Device, "pump-0001")
        assert device is not None
        assert issuing.deliver(db, device, now=world.now, source="-") == []


def test_the_devices_report_marks_an_authorization_used_or_refused_with_its_event_i6(
    world: World, ward: dict[str, Any]
) -> None:
    first, second = _issued(world, ward, "pump-0001", "pump-0002")
    nonce = first["document"]["signed"]["nonce"]

    def report(device_id: str, *entries: dict[str, Any]) -> int:
        with transaction(world.services.sessions) as db:
            device = db.get(Device, device_id)
            assert device is not None
            return issuing.note_outcomes(db, device, entries, now=world.now, source="-")

    assert report("pump-0001", {"type": "authorization_accepted", "detail": {"nonce": nonce}}) == 1
    assert _statuses(world, ward)["pump-0001"] == "accepted"  # bound; maybe deferred (R52)
    # pump-0002 is handed pump-0001's document: its refusal is shown, the row is unchanged.
    assert (
        report("pump-0002", {"type": "authorization_wrong_device", "detail": {"nonce": nonce}}) == 0
    )
    assert report("pump-0001", {"type": "authorization_used", "detail": {"nonce": nonce}}) == 1
    expired = {"type": "authorization_expired", "detail": {"target": second["target_path"]}}
    assert report("pump-0002", {"type": "no_update", "detail": {}}, expired) == 1
    assert _statuses(world, ward) == {"pump-0001": "used", "pump-0002": "refused"}
    entries = audit(world, Action.AUTHORIZATION_OUTCOME)
    seen = [(e.actor, json.loads(e.detail)["outcome"]) for e in entries]
    assert seen == [
        ("device:pump-0001", "authorization_accepted"),
        ("device:pump-0002", "authorization_wrong_device"),
        ("device:pump-0001", "authorization_used"),
        ("device:pump-0002", "authorization_expired"),
    ]


def test_the_server_knows_every_authorization_event_the_device_logs() -> None:
    """I6: a renamed device event must not leave the server's rows pending forever."""
    device_events = {e.value for e in AUTHORIZATION_REFUSALS} | {
        EventType.AUTHORIZATION_ACCEPTED.value,
        EventType.AUTHORIZATION_USED.value,
    }
    assert issuing.OUTCOME_EVENTS | {"authorization_malformed"} == device_events


def test_the_inventory_shows_a_technician_what_each_device_is_offered_to_authorize(
    world: World, ward: dict[str, Any]
) -> None:
    """A technician sees the devices in scope and the release each would be authorized for."""
    listed = world.client.get("/api/v1/devices", headers=ward["tom"]).get_json()["devices"]
    offered = {d["device_id"]: d["offered_for_authorization"] for d in listed}
    assert offered == {
        "pump-0001": {"target_path": ward["path"], "version": "2.0.0"},
        "pump-0002": {"target_path": ward["path"], "version": "2.0.0"},
    }
