"""Every refusal of the access layer (401, 403) is audited; a flood is counted, never dropped (R27).

A technician-like user once made five requests to routes their role does
not allow, and one was audited. Each test is named after what an attacker
(or a confused user) does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
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
)
from update_server.access import OTP_HEADER
from update_server.app import create_app
from update_server.audit.actions import Action
from update_server.config import ServerConfig
from update_server.keys import signer_loader
from update_server.models import AuditEntry, Role

FORBIDDEN_TO_TECHNICIANS = [
    ("GET", "/api/v1/audit", "GET /api/v1/audit"),
    ("GET", "/api/v1/audit/verify", "GET /api/v1/audit/verify"),
    ("POST", "/api/v1/releases", "POST /api/v1/releases"),
    ("POST", "/api/v1/releases/7/publish", "POST /api/v1/releases/<id>/publish"),
    ("DELETE", "/api/v1/releases/7", "DELETE /api/v1/releases/<id>"),
]


pytestmark = pytest.mark.usefixtures("fast_hashing")


@pytest.fixture
def tech(app: Flask, client: FlaskClient, clock: FakeClock) -> LoggedIn:
    return enrolled_user(app, client, clock, "tess", Role.TECHNICIAN)


def refusals(app: Flask) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(actor, role, object, source, detail) of each access refusal, in order."""
    with app.extensions["fw"].sessions() as db:
        rows = db.scalars(
            select(AuditEntry)
            .where(AuditEntry.action == Action.ACCESS_REFUSED)
            .order_by(AuditEntry.seq)
        )
        return [
            (row.actor, row.role, row.object, row.source, json.loads(row.detail))
            for row in rows
            if row.outcome == "refused"
        ]


def total(entries: list[tuple[str, str, str, str, dict[str, Any]]]) -> int:
    return sum(detail["count"] for *_, detail in entries)


@pytest.fixture
def worker(config: ServerConfig, clock: FakeClock) -> Iterator[FlaskClient]:
    """A second app on the same database, as a second gunicorn worker is."""
    application = create_app(config, clock=clock, signer_loader=signer_loader(config))
    application.testing = True
    yield application.test_client()
    application.extensions["fw"].engine.dispose()


def test_privilege_probing_each_route_a_role_may_not_call_is_audited(
    app: Flask, client: FlaskClient, tech: LoggedIn
) -> None:
    """R27: five forbidden routes, five entries: who, what, from where, the outcome."""
    for method, path, _route in FORBIDDEN_TO_TECHNICIANS:
        assert client.open(path, method=method, headers=tech.headers).status_code == 403
    expected = [
        (
            "tess",
            "technician",
            route,
            "127.0.0.1",
            {"status": 403, "reason": "role not allowed", "count": 1},
        )
        for _method, _path, route in FORBIDDEN_TO_TECHNICIANS
    ]
    assert refusals(app) == expected


def test_privilege_probing_is_audited_in_the_one_audit_vocabulary(
    app: Flask, client: FlaskClient, clock: FakeClock, tech: LoggedIn
) -> None:
    """R27: refusals, and their tallies, use the actions every reader of the log knows."""
    assert client.get("/api/v1/audit", headers=tech.headers).status_code == 403
    assert client.get("/api/v1/audit", headers=tech.headers).status_code == 403
    clock.advance(minutes=1)
    assert client.get("/api/v1/auth/me", headers=tech.headers).status_code == 200
    assert total(refusals(app)) == 2
    with app.extensions["fw"].sessions() as db:
        written = set(db.scalars(select(AuditEntry.action)))
    assert written - set(Action) == set()


def test_refusal_flood_is_coalesced_with_its_count_and_nothing_is_lost(
    app: Flask, client: FlaskClient, clock: FakeClock, tech: LoggedIn
) -> None:
    """R27: 50 refusals in a window: one entry at once, one with the other 49 after it."""
    for _ in range(50):
        clock.advance(seconds=1)
        assert client.get("/api/v1/audit", headers=tech.headers).status_code == 403
    [first] = refusals(app)
    assert first[4]["count"] == 1
    clock.advance(seconds=11)  # the window opened 50 s ago has ended
    assert client.get("/api/v1/auth/me", headers=tech.headers).status_code == 200
    entries = refusals(app)
    assert len(entries) == 2
    assert entries[1][:4] == first[:4]
    assert entries[1][4]["count"] == 49
    assert total(entries) == 50


def test_refusal_flood_across_workers_adds_to_one_count(
    app: Flask, client: FlaskClient, worker: FlaskClient, clock: FakeClock, tech: LoggedIn
) -> None:
    """R27: the count is in the database: refusals on two workers are one tally."""
    for target in (client, worker, client, worker):
        assert target.get("/api/v1/audit", headers=tech.headers).status_code == 403
    assert len(refusals(app)) == 1
    clock.advance(minutes=1)
    assert worker.get("/api/v1/audit/verify", headers=tech.headers).status_code == 403
    entries = refusals(app)
    assert [(route, detail["count"]) for _, _, route, _, detail in entries] == [
        ("GET /api/v1/audit", 1),
        ("GET /api/v1/audit", 3),
        ("GET /api/v1/audit/verify", 1),
    ]


def test_requests_without_a_valid_session_are_audited_as_401_refusals(
    app: Flask, client: FlaskClient
) -> None:
    """R27: who is '-' (no session), the rest as for any refusal."""
    assert client.get("/api/v1/audit").status_code == 401
    assert client.get("/api/v1/audit", headers=bearer("stolen-or-made-up")).status_code == 401
    assert client.get("/api/v1/repository", headers=bearer("x")).status_code == 401
    assert refusals(app) == [
        (
            "-",
            "-",
            "GET /api/v1/audit",
            "127.0.0.1",
            {"status": 401, "reason": "no valid session", "count": 1},
        ),
        (
            "-",
            "-",
            "GET /api/v1/repository",
            "127.0.0.1",
            {"status": 401, "reason": "no valid session", "count": 1},
        ),
    ]


def test_unfinished_first_login_and_missing_confirmation_code_are_audited(
    app: Flask, client: FlaskClient, clock: FakeClock, tech: LoggedIn
) -> None:
    """R27: a session still in first login, and an action without its X-OTP code."""
    initial = create_user(app, clock, "newbie", Role.RELEASE_ENGINEER)
    first = login(client, "newbie", initial).get_json()["token"]
    assert client.get("/api/v1/repository", headers=bearer(first)).status_code == 403
    engineer = enrolled_user(app, client, clock, "erin", Role.RELEASE_ENGINEER)
    publish = client.post("/api/v1/releases/7/publish", headers=engineer.headers)
    assert publish.status_code == 401
    assert OTP_HEADER in publish.get_json()["detail"]
    reasons = [(actor, route, detail["reason"]) for actor, _, route, _, detail in refusals(app)]
    assert reasons == [
        ("newbie", "GET /api/v1/repository", "first login not finished"),
        ("erin", "POST /api/v1/releases/<id>/publish", "one-time code missing"),
    ]


def test_a_stolen_token_of_an_ended_session_is_audited_with_its_owner(
    app: Flask, client: FlaskClient, tech: LoggedIn
) -> None:
    """R27: a token replayed after logout or expiry names the person whose session it was."""
    assert client.post("/api/v1/auth/logout", headers=tech.headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=tech.headers).status_code == 401
    assert refusals(app) == [
        (
            "tess",
            "technician",
            "GET /api/v1/auth/me",
            "127.0.0.1",
            {"status": 401, "reason": "session ended", "count": 1},
        )
    ]


def test_refusal_flood_from_one_ipv6_network_is_one_window_not_one_per_address(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """R27 (C5): 40 addresses of one /64 open one window, as the login throttle counts them.

    Otherwise each fresh address would cost an audit entry and a signature
    of the anchored head, with no credentials at all.
    """
    for number in range(1, 41):
        address = f"2001:db8:5:7::{number:x}"
        answer = client.get("/api/v1/audit", environ_overrides={"REMOTE_ADDR": address})
        assert answer.status_code == 401
    assert len(refusals(app)) == 1
    clock.advance(minutes=2)
    client.get("/api/v1/audit", environ_overrides={"REMOTE_ADDR": "192.0.2.9"})
    entries = [entry for entry in refusals(app) if entry[3] != "192.0.2.9"]
    assert [entry[3] for entry in entries] == ["2001:db8:5:7::1", "2001:db8:5:7::/64"]
    assert total(entries) == 40


def test_a_fresh_code_spent_on_a_refused_action_stays_spent_r25(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    """R25: a view that refuses rolls back its own work, never the code's use.

    Decommissioning a device that does not exist is refused (404) after the
    access layer took the fresh code; the same code again is a replay (401),
    not a second try.
    """
    admin = enrolled_user(app, client, clock, "alice", Role.ADMIN)
    code = admin.next_otp(clock)
    headers = {**admin.headers, OTP_HEADER: code}

    first = client.post("/api/v1/devices/no-such-pump/decommission", headers=headers)
    again = client.post("/api/v1/devices/no-such-pump/decommission", headers=headers)

    assert first.status_code == 404
    assert again.status_code == 401
    assert "refused" in again.get_json()["detail"]
