"""What the failsafe freeze stops, and what it does not (``freeze.rules`` F3; R24, R40).

On the real app with the publishing world (``repo_world``): while frozen, a
release is neither uploaded nor published and no technician's
authorization is issued (423, the message naming the officer, the time and
the reason, each refusal audited); after two officers lift the freeze the
same requests succeed. The online roles' renewal goes on while frozen, so
devices never see expired metadata (a freeze attack, R40).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.repo_world import World
from update_server.audit import Actor
from update_server.db import transaction
from update_server.devices.models import Device, TechnicianSite
from update_server.freeze.errors import FrozenError
from update_server.models import AuditEntry, Role, User
from update_server.publication.publish import publish_release
from update_server.publication.renewal import renew_if_due

REASON = "investigating a suspected signing key leak"


def _freeze(world: World) -> None:
    headers = {**world.login("olga", Role.SECURITY_OFFICER), "X-OTP": world.otp.code()}
    answer = world.client.post("/api/v1/freeze", json={"reason": REASON}, headers=headers)
    assert answer.status_code == 200, answer.get_json()


def _lift(world: World) -> None:
    for officer in ("olga", "paul"):
        headers = {**world.login(officer, Role.SECURITY_OFFICER), "X-OTP": world.otp.code()}
        answer = world.client.post("/api/v1/freeze/lift", headers=headers)
        assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["mode"] == "normal"


def _refusals(world: World, action: str) -> list[dict[str, str]]:
    with transaction(world.services.sessions) as db:
        query = select(AuditEntry).where(
            AuditEntry.action == action, AuditEntry.outcome == "refused"
        )
        return [json.loads(entry.detail) for entry in db.scalars(query)]


def _assert_frozen_refusal(answer: object) -> None:
    assert answer.status_code == 423, answer.get_json()  # type: ignore[attr-defined]
    detail = answer.get_json()["detail"]  # type: ignore[attr-defined]
    assert detail.startswith("the system is frozen by olga since ")
    assert REASON in detail
    assert detail.endswith("two security officers lift it")


def test_f3_no_release_is_published_while_frozen_and_it_publishes_once_lifted(
    world: World,
) -> None:
    release = world.release("alice", "1.1.0")  # uploaded before the freeze
    _freeze(world)
    _assert_frozen_refusal(world.publish("alice", release))
    (refused,) = _refusals(world, "release.publish")
    assert refused["rule"] == "freeze-F3"
    assert "frozen by olga" in refused["reason"]
    assert world.role_json("pump-x100")["signed"]["version"] > 0
    _lift(world)
    published = world.publish("alice", release)
    assert published.status_code == 200, published.get_json()


def test_f3_no_release_is_uploaded_while_frozen(world: World) -> None:
    world.add_release("1.2.0", line="pump-x100")
    _freeze(world)
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    _assert_frozen_refusal(answer)
    assert [r["rule"] for r in _refusals(world, "release.upload")] == ["freeze-F3"]
    _lift(world)
    assert world.upload("alice", {"pump-x100": world.role_json("pump-x100")}).status_code == 201


def _ward(world: World) -> tuple[dict[str, str], str]:
    """One accepted pump on the north ward, tom its technician, a release that needs him."""
    with transaction(world.services.sessions) as db:
        db.add(
            Device(
                id="pump-0001",
                hardware_model="pump-x100",
                site="north",
                state="accepted",
                public_key={"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "00"}},
                key_id="00" * 32,
                registered_at=world.now,
            )
        )
    headers = world.login("tom", Role.TECHNICIAN)
    with transaction(world.services.sessions) as db:
        tom = db.scalars(select(User).where(User.name == "tom")).one()
        db.add(TechnicianSite(user_id=tom.id, site="north"))
    release = world.release("alice", "2.0.0", requires_authorization=True)
    assert world.publish("alice", release).status_code == 200
    return headers, "pump-x100/fw-2.0.0.bin"


def test_f3_no_authorization_is_issued_while_frozen_and_one_is_once_lifted(
    world: World,
) -> None:
    tom, path = _ward(world)
    body = {"device_ids": ["pump-0001"], "target_path": path}

    def issue() -> object:
        headers = {**tom, "X-OTP": world.otp.code()}
        return world.client.post("/api/v1/authorizations", json=body, headers=headers)

    _freeze(world)
    _assert_frozen_refusal(issue())
    (refused,) = _refusals(world, "authorization.issue")
    assert "frozen by olga" in refused["reason"]
    assert world.client.get("/api/v1/authorizations", headers=tom).get_json() == {
        "authorizations": []
    }
    _lift(world)
    issued = issue()
    assert issued.status_code == 201, issued.get_json()  # type: ignore[attr-defined]


def test_r40_the_timestamp_and_snapshot_are_still_renewed_while_frozen(
    world: World, clock: FakeClock
) -> None:
    """Devices must not see expired metadata because the server froze (a freeze attack)."""
    _freeze(world)
    clock.advance(hours=12)
    assert renew_if_due(world.services, clock()) == ["timestamp"]
    clock.advance(days=3, hours=12)
    assert sorted(renew_if_due(world.services, clock())) == ["snapshot", "timestamp"]
    signed = json.loads((world.repository / "metadata" / "timestamp.json").read_bytes())["signed"]
    assert signed["expires"] > (clock() + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = world.client.get("/api/v1/freeze", headers=world.login("olga", Role.SECURITY_OFFICER))
    assert state.get_json()["mode"] == "frozen"


@pytest.mark.parametrize("reader", [Role.AUDITOR, Role.TECHNICIAN, Role.RELEASE_ENGINEER])
def test_f3_any_role_reads_who_froze_since_when_and_why(world: World, reader: Role) -> None:
    _freeze(world)
    shown = world.client.get("/api/v1/freeze", headers=world.login("reader", reader)).get_json()
    assert (shown["mode"], shown["by"], shown["reason"]) == ("frozen", "olga", REASON)


def test_f3_a_publication_checked_before_the_freeze_is_stopped_at_its_commit(
    world: World,
) -> None:
    """The view's check passed, then an officer froze: the switch refuses, nothing published.

    ``publish_release`` is what the publish view runs after its own freeze
    check; called once the freeze is on, it stands for a publication that
    was being checked and signed while the freeze was entered.
    """
    release = world.release("alice", "1.1.0")
    before = (world.repository / "metadata" / "timestamp.json").read_bytes()
    _freeze(world)
    with transaction(world.services.sessions) as db:
        alice = db.scalars(select(User).where(User.name == "alice")).one()
        user_id = alice.id
    with pytest.raises(FrozenError):
        publish_release(
            world.services, release, user_id=user_id,
            actor=Actor("alice", "release_engineer", "-"), now=world.now,
        )  # fmt: skip
    assert (world.repository / "metadata" / "timestamp.json").read_bytes() == before
    _lift(world)
    assert world.publish("alice", release).status_code == 200
