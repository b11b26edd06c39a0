"""When the server may sign a technician's authorization, at the edges of I2, I3 and I6.

Written for the coverage gate of the security cores (``tools/coverage_gate.toml``,
R36). R9, R58: a device of another model is never authorized for a release;
I3: a published target that is not firmware is no release; I6: a report
that names no unsettled document changes nothing; R6: the list an
administrator reads holds every site.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select
from tuf.api.metadata import TargetFile

from tests.update_server.repo_world import World
from tests.update_server.test_authorizations_issue import (
    _issued,
    add_device,
    audit,
    post,
    publish,
    technician,
)
from update_server.audit.actions import Action
from update_server.authorizations import issuing
from update_server.authorizations.models import IssuedAuthorization
from update_server.db import transaction
from update_server.devices.models import Device
from update_server.errors import BadRequestError, NotFoundError
from update_server.models import Role, User


@pytest.fixture
def ward(world: World) -> dict[str, Any]:
    """Two pumps on the north ward, where tom works; a release that needs an authorization."""
    add_device(world, "pump-0001", site="north")
    add_device(world, "pump-0002", site="north")
    return {"tom": technician(world, "tom", "north"), "path": publish(world, "2.0.0")}


class _Published:
    """The one method ``published_release`` reads of the online repository."""

    def __init__(self, target: TargetFile | None) -> None:
        self.target = target

    def published_target(self, path: str) -> TargetFile | None:
        return self.target


def test_i3_a_published_target_that_is_not_firmware_is_no_release() -> None:
    """An SBOM or any plain file is signed without firmware fields: nothing to authorize."""
    plain = TargetFile(4, {"sha256": "ab" * 32}, "pump-x100/fw-2.0.0.spdx.json")
    with pytest.raises(NotFoundError, match="not a published firmware release"):
        issuing.published_release(cast(Any, _Published(plain)), plain.path)


def test_r58_a_device_of_another_model_is_not_authorized_and_nothing_is_issued(
    world: World, ward: dict[str, Any]
) -> None:
    with transaction(world.services.sessions) as db:
        device = db.get(Device, "pump-0002")
        assert device is not None
        device.hardware_model = "pump-x200"
    body = {"device_ids": ["pump-0001", "pump-0002"], "target_path": ward["path"]}
    answer = post(world, ward["tom"], body)
    assert answer.status_code == 409
    assert "is not signed for pump-0002's model pump-x200" in answer.get_json()["detail"]
    with transaction(world.services.sessions) as db:
        assert list(db.scalars(select(IssuedAuthorization))) == []


@pytest.mark.parametrize(
    ("devices", "minutes", "message"),
    [
        (issuing.MAX_DEVICES + 1, 15, f"at most {issuing.MAX_DEVICES} devices"),
        (1, 0, "an authorization lasts 1 to"),
        (1, issuing.MAX_LIFETIME_MINUTES + 1, "an authorization lasts 1 to"),
    ],
    ids=["too-many-devices", "no-lifetime", "too-long"],
)
def test_i2_a_request_the_api_document_refuses_is_refused_by_the_core_too(
    world: World, ward: dict[str, Any], devices: int, minutes: int, message: str
) -> None:
    """Behind the API document's limits, the core refuses on its own (the web page calls it)."""
    release = issuing.Release(ward["path"], "ab" * 32, cast(Any, None))
    with transaction(world.services.sessions) as db:
        tom = db.scalars(select(User).where(User.name == "tom")).one()
        with pytest.raises(BadRequestError, match=message):
            issuing.issue(
                db,
                technician=tom,
                device_ids=[f"pump-{i:04}" for i in range(1, devices + 1)],
                release=release,
                lifetime=timedelta(minutes=minutes),
                signer=cast(Any, None),
                now=world.now,
                source="-",
            )
    with transaction(world.services.sessions) as db:
        assert list(db.scalars(select(IssuedAuthorization))) == []


def test_i6_a_report_naming_no_unsettled_document_changes_nothing(
    world: World, ward: dict[str, Any]
) -> None:
    (issued,) = _issued(world, ward, "pump-0001")
    nonce = issued["document"]["signed"]["nonce"]

    def report(*entries: dict[str, Any]) -> int:
        with transaction(world.services.sessions) as db:
            device = db.get(Device, "pump-0001")
            assert device is not None
            return issuing.note_outcomes(db, device, entries, now=world.now, source="-")

    assert report({"type": "authorization_used", "detail": {"nonce": nonce}}) == 1
    assert report({"type": "authorization_used", "detail": {"nonce": nonce}}) == 0  # settled
    assert report({"type": "authorization_expired", "detail": {"nonce": "0f" * 32}}) == 0
    assert report({"type": "authorization_expired", "detail": {"version": "2.0.0"}}) == 0
    assert len(audit(world, Action.AUTHORIZATION_OUTCOME)) == 1


def test_r6_an_administrator_lists_the_authorizations_of_every_site(
    world: World, ward: dict[str, Any]
) -> None:
    _issued(world, ward, "pump-0001")
    world.login("ada", Role.ADMIN)
    with transaction(world.services.sessions) as db:
        ada = db.scalars(select(User).where(User.name == "ada")).one()
        assert [row.device_id for row in issuing.listed_for(db, ada)] == ["pump-0001"]
