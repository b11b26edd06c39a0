"""Enrolment, registration and signed device requests on the app (R10, R25, R27, R62).

Each test is named after what an attacker (or a confused device) does; each
refusal is a 401 with an audit entry saying why.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from securesystemslib.signer import CryptoSigner

from client.events import EventLog, EventType
from tests.clocks import FakeClock
from tests.update_server.devices_helpers import (
    REPORTS,
    FakeDevice,
    audit_entries,
    detail,
    issue_token,
)
from tests.update_server.people import LoggedIn, enrolled_user
from tests.update_server.test_device_log import rehash
from update_server.access import OTP_HEADER
from update_server.audit.actions import Action
from update_server.db import transaction
from update_server.devices import enrolment
from update_server.devices.models import Device, EnrolmentToken
from update_server.devices.signatures import Refusal
from update_server.errors import AuthenticationError
from update_server.models import Role

pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def admin(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "alice", Role.ADMIN)


@pytest.fixture
def accepted(client: FlaskClient, admin: LoggedIn, clock: FakeClock) -> FakeDevice:
    """A pre-authorized device, registered: accepted at once."""
    device = FakeDevice("pump-1")
    token = issue_token(client, admin, clock, accept=True)
    assert device.register(client, token, now=clock.now).get_json()["state"] == "accepted"
    return device


def _refused_for(app: Flask, reason: str) -> list[str]:
    """The actors of access refusals audited with ``reason``."""
    entries = audit_entries(app, Action.ACCESS_REFUSED)
    return [entry.actor for entry in entries if detail(entry).get("reason") == reason]


def test_enrolment_token_needs_a_fresh_code_and_is_stored_only_as_its_hash_r10(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    no_code = client.post(
        "/api/v1/enrolment-tokens", json={"hardware_model": "pump-x100"}, headers=admin.headers
    )
    assert no_code.status_code == 401
    token = issue_token(client, admin, clock, site="ward-3", expires_in_hours=2)
    with transaction(app.extensions["fw"].sessions) as db:
        (row,) = db.query(EnrolmentToken).all()
        assert row.token_hash == enrolment.token_hash(token)
        assert (row.site, row.pre_authorized) == ("ward-3", False)
    (entry,) = audit_entries(app, Action.ENROLMENT_TOKEN)
    assert entry.actor == "alice" and token not in entry.detail


def test_a_technician_cannot_issue_enrolment_tokens_r6(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    tech = enrolled_user(app, client, clock, "tom", Role.TECHNICIAN)
    headers = {**tech.headers, OTP_HEADER: tech.next_otp(clock)}
    response = client.post(
        "/api/v1/enrolment-tokens", json={"hardware_model": "pump-x100"}, headers=headers
    )
    assert response.status_code == 403


def test_registration_records_a_pending_device_with_its_key_r10(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    device = FakeDevice("pump-1")
    token = issue_token(client, admin, clock, site="ward-3")
    response = device.register(client, token, now=clock.now)
    assert response.status_code == 201
    assert response.get_json() == {"device_id": "pump-1", "state": "pending"}
    with transaction(app.extensions["fw"].sessions) as db:
        row = db.get(Device, "pump-1")
        assert row is not None
        assert (row.site, row.key_id) == ("ward-3", device.signer.public_key.keyid)
    (entry,) = audit_entries(app, Action.DEVICE_REGISTER)
    assert (entry.actor, entry.outcome) == ("device:pump-1", "success")


def test_enrolment_token_reused_is_refused_r25(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    token = issue_token(client, admin, clock)
    assert FakeDevice("pump-1").register(client, token, now=clock.now).status_code == 201
    again = FakeDevice("pump-2").register(client, token, now=clock.now)
    assert again.status_code == 401
    assert "used already" in again.get_json()["detail"]
    refusals = [e for e in audit_entries(app, Action.DEVICE_REGISTER) if e.outcome == "refused"]
    assert len(refusals) == 1 and "used already" in detail(refusals[0])["reason"]


def test_enrolment_token_expired_is_refused_r25(
    client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    token = issue_token(client, admin, clock, expires_in_hours=1)
    clock.advance(seconds=3601)
    response = FakeDevice("pump-1").register(client, token, now=clock.now)
    assert response.status_code == 401
    assert "expired" in response.get_json()["detail"]


def test_enrolment_token_for_another_model_or_device_is_refused(
    client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    token = issue_token(client, admin, clock, device_id="pump-7")
    other_model = FakeDevice("pump-7", model="infusion-y2")
    assert other_model.register(client, token, now=clock.now).status_code == 403
    other_id = FakeDevice("pump-8")
    assert other_id.register(client, token, now=clock.now).status_code == 403
    assert FakeDevice("pump-7").register(client, token, now=clock.now).status_code == 201


def test_registration_without_possession_of_the_key_is_refused_r10(
    client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    """A stolen token and someone else's public key: the request is not signed by that key."""
    token = issue_token(client, admin, clock)
    device = FakeDevice("pump-1")
    impostor = FakeDevice("pump-1", signer=CryptoSigner.generate_ed25519())
    body = {
        "device_id": "pump-1",
        "hardware_model": "pump-x100",
        "public_key": device.signer.public_key.to_dict(),
        "token": token,
    }
    response = impostor.signed(client, "POST", "/api/v1/devices/register", body, now=clock.now)
    assert response.status_code == 401
    # The token was not spent by the refused attempt.
    assert device.register(client, token, now=clock.now).status_code == 201


def test_two_registrations_racing_with_one_token_one_wins_r25(
    app: Flask,
    admin: LoggedIn,
    client: FlaskClient,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """E2: both read the token unused; the conditional update lets only the first use it."""
    token = issue_token(client, admin, clock)
    sessions = app.extensions["fw"].sessions
    with transaction(sessions) as db:
        stale = db.query(EnrolmentToken).one()
    monkeypatch.setattr(enrolment, "_valid_token", lambda *_a, **_k: stale)
    actor = enrolment.Actor("device", "device", "test")
    for name, wins in (("pump-1", True), ("pump-2", False)):
        key = CryptoSigner.generate_ed25519().public_key
        with transaction(sessions) as db:
            if wins:
                enrolment.register(
                    db, token=token, device_id=name, hardware_model="pump-x100",
                    public_key=key, now=clock.now, actor=actor,
                )  # fmt: skip
                continue
            with pytest.raises(AuthenticationError, match="used already"):
                enrolment.register(
                    db, token=token, device_id=name, hardware_model="pump-x100",
                    public_key=key, now=clock.now, actor=actor,
                )  # fmt: skip
    with transaction(sessions) as db:
        assert [device.id for device in db.query(Device).all()] == ["pump-1"]


def test_accepted_device_reports_what_it_runs_r38(
    app: Flask, client: FlaskClient, accepted: FakeDevice, admin: LoggedIn, clock: FakeClock
) -> None:
    response = accepted.report(client, now=clock.now, running_version="1.2.0", security_floor=3)
    assert response.get_json() == {"acked_seq": 0, "acked_hash": None}
    shown = client.get("/api/v1/devices/pump-1", headers=admin.headers).get_json()
    assert (shown["running_version"], shown["security_floor"], shown["mode"]) == (
        "1.2.0",
        3,
        "normal",
    )
    assert shown["last_seen_at"] is not None and shown["last_report_at"] is not None
    (entry,) = audit_entries(app, Action.DEVICE_REPORT)
    assert entry.actor == "device:pump-1"


def _log(path: Path, count: int) -> list[dict[str, Any]]:
    """``count`` entries of a device's real event log (``client.events``)."""
    log = EventLog(path / "events.log")
    for n in range(count):
        log.append(EventType.NO_UPDATE, f"poll {n}", now=datetime(2027, 1, 1, n, tzinfo=UTC))
    return list(log.entries())


def test_report_entries_anchor_the_device_log_and_continue_it_r27(
    client: FlaskClient, accepted: FakeDevice, admin: LoggedIn, clock: FakeClock, tmp_path: Path
) -> None:
    entries = _log(tmp_path, 5)
    first = accepted.report(client, now=clock.now, entries=entries[:3]).get_json()
    assert first == {"acked_seq": 3, "acked_hash": entries[2]["hash"]}
    second = accepted.report(client, now=clock.now, entries=entries[3:]).get_json()
    assert second == {"acked_seq": 5, "acked_hash": entries[4]["hash"]}
    shown = client.get("/api/v1/devices/pump-1", headers=admin.headers).get_json()
    assert (shown["log_head"], shown["log_anchored_from"], shown["log_alert"]) == (5, 1, None)


def test_report_whose_event_chain_forks_is_refused_and_shown_as_an_alert_r27(
    app: Flask,
    client: FlaskClient,
    accepted: FakeDevice,
    admin: LoggedIn,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    """A device whose log was rewritten after the server anchored it: a second history."""
    entries = _log(tmp_path, 4)
    accepted.report(client, now=clock.now, entries=entries[:2], running_version="1.0.0")
    forged = rehash(entries[2:], prev="0" * 64)  # re-chained: a second history
    answer = accepted.report(client, now=clock.now, entries=forged, running_version="6.6.6")
    assert answer.status_code == 200
    assert answer.get_json()["refused"] == "fork"
    shown = client.get("/api/v1/devices/pump-1", headers=admin.headers).get_json()
    assert shown["log_alert"].startswith("fork") and shown["log_head"] == 2
    assert shown["running_version"] == "1.0.0"  # nothing of a refused report is kept
    refused = [e for e in audit_entries(app, Action.DEVICE_REPORT) if e.outcome == "refused"]
    assert detail(refused[0])["refused"] == "fork"


def test_a_report_naming_another_device_is_refused(
    client: FlaskClient, accepted: FakeDevice, clock: FakeClock
) -> None:
    answer = accepted.report(client, now=clock.now, device_id="pump-2").get_json()
    assert answer["refused"] == "malformed" and "signed by pump-1" in answer["reason"]


def test_a_device_with_no_authorization_issued_picks_up_an_empty_list(
    client: FlaskClient, accepted: FakeDevice, clock: FakeClock
) -> None:
    response = accepted.signed(client, "GET", "/api/v1/device/authorizations", None, now=clock.now)
    assert response.status_code == 200
    assert response.get_json() == {"authorizations": []}


def test_device_request_replayed_is_refused_r25(
    app: Flask, client: FlaskClient, accepted: FakeDevice, clock: FakeClock
) -> None:
    body = {"running_version": "1.0.0"}
    first = accepted.signed(client, "POST", REPORTS, body, now=clock.now, nonce="once")
    assert first.status_code == 200
    replay = accepted.signed(client, "POST", REPORTS, body, now=clock.now, nonce="once")
    assert replay.status_code == 401
    assert _refused_for(app, Refusal.REPLAYED) == ["device:pump-1"]


def test_device_request_stale_is_refused_r25(
    app: Flask, client: FlaskClient, accepted: FakeDevice, clock: FakeClock
) -> None:
    response = accepted.report(client, now=clock.now - timedelta(seconds=61))
    assert response.status_code == 401
    assert "clock" in response.get_json()["detail"]
    assert _refused_for(app, Refusal.STALE) == ["device:pump-1"]


def test_device_request_unsigned_is_refused_r10(
    app: Flask, client: FlaskClient, accepted: FakeDevice
) -> None:
    response = client.post(REPORTS, json={"running_version": "6.6.6"})
    assert response.status_code == 401
    assert _refused_for(app, Refusal.UNSIGNED) == ["-"]


def test_device_request_body_not_matching_its_digest_is_refused_r10(
    app: Flask, client: FlaskClient, accepted: FakeDevice, clock: FakeClock
) -> None:
    forged = b'{"running_version": "6.6.6"}'
    response = accepted.signed(
        client, "POST", REPORTS, {"running_version": "1.0.0"}, now=clock.now, sent_body=forged
    )
    assert response.status_code == 401
    assert _refused_for(app, Refusal.BODY_DIGEST) == ["-"]


def test_device_request_from_an_unknown_device_is_refused(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    assert FakeDevice("ghost").report(client, now=clock.now).status_code == 401
    assert _refused_for(app, Refusal.UNKNOWN_DEVICE) == ["-"]


def test_an_unknown_id_and_a_wrong_key_get_the_same_answer_so_ids_cannot_be_enumerated(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    """D6: only the audit tells the two apart, never the caller."""
    FakeDevice("pump-1").register(
        client, issue_token(client, admin, clock, accept=True), now=clock.now
    )
    impostor = FakeDevice("pump-1").report(client, now=clock.now)
    ghost = FakeDevice("ghost").report(client, now=clock.now)
    assert impostor.status_code == ghost.status_code == 401
    assert impostor.get_json()["detail"] == ghost.get_json()["detail"]
    assert _refused_for(app, Refusal.BAD_SIGNATURE) == ["-"]
    assert _refused_for(app, Refusal.UNKNOWN_DEVICE) == ["-"]


def test_pending_device_cannot_report_yet(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    device = FakeDevice("pump-1")
    device.register(client, issue_token(client, admin, clock), now=clock.now)
    assert device.report(client, now=clock.now).status_code == 401
    assert _refused_for(app, Refusal.PENDING) == ["device:pump-1"]
    accept = client.post("/api/v1/devices/pump-1/accept", headers=admin.headers)
    assert accept.get_json()["state"] == "accepted"
    assert device.report(client, now=clock.now).status_code == 200


def test_device_request_from_a_rejected_device_is_refused(
    app: Flask, client: FlaskClient, admin: LoggedIn, clock: FakeClock
) -> None:
    device = FakeDevice("pump-1")
    device.register(client, issue_token(client, admin, clock), now=clock.now)
    reject = client.post("/api/v1/devices/pump-1/reject", headers=admin.headers)
    assert reject.get_json()["state"] == "rejected"
    assert device.report(client, now=clock.now).status_code == 401
    assert _refused_for(app, Refusal.REJECTED) == ["device:pump-1"]


def test_device_request_from_a_decommissioned_device_is_refused_and_records_stay_r62(
    app: Flask, client: FlaskClient, accepted: FakeDevice, admin: LoggedIn, clock: FakeClock
) -> None:
    assert accepted.report(client, now=clock.now, running_version="1.2.0").status_code == 200
    path = "/api/v1/devices/pump-1/decommission"
    assert client.post(path, headers=admin.headers).status_code == 401  # no fresh code
    headers = {**admin.headers, OTP_HEADER: admin.next_otp(clock)}
    assert client.post(path, headers=headers).get_json()["state"] == "decommissioned"
    assert accepted.report(client, now=clock.now).status_code == 401
    assert _refused_for(app, Refusal.DECOMMISSIONED) == ["device:pump-1"]
    kept = client.get("/api/v1/devices/pump-1", headers=admin.headers).get_json()
    assert (kept["state"], kept["running_version"]) == ("decommissioned", "1.2.0")
    again = client.post("/api/v1/devices/pump-1/accept", headers=admin.headers)
    assert again.status_code == 409


def test_a_persons_session_never_opens_a_device_route(
    client: FlaskClient, accepted: FakeDevice, admin: LoggedIn
) -> None:
    response = client.post(REPORTS, json={"running_version": "6.6.6"}, headers=admin.headers)
    assert response.status_code == 401


def test_a_device_signature_never_opens_a_persons_route(
    client: FlaskClient, accepted: FakeDevice, clock: FakeClock
) -> None:
    response = accepted.signed(client, "GET", "/api/v1/devices", None, now=clock.now)
    assert response.status_code == 401
