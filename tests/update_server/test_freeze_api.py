"""The failsafe freeze's API on the real app (R24, R33, R34, R40, R59; ``freeze.rules`` F1-F4).

People log in for real and confirm with real one-time codes (each spent
once): one security officer freezes; two different officers lift it within
``unfreeze_window``; one officer twice is refused; a lapsed vote is
replaced. Every step and every refusal is in the audit log.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.clocks import FakeClock
from tests.update_server.people import LoggedIn, enrolled_user, login, otp_at
from update_server.db import transaction
from update_server.freeze import state
from update_server.freeze.rules import Mode
from update_server.models import AuditEntry, Role

pytestmark = pytest.mark.usefixtures("fast_hashing")

FREEZE = "/api/v1/freeze"
LIFT = "/api/v1/freeze/lift"
REASON = "suspected compromise of the release manager's workstation"


@pytest.fixture
def officers(app: Flask, client: FlaskClient, clock: FakeClock) -> tuple[LoggedIn, LoggedIn]:
    olga = enrolled_user(app, client, clock, "olga", Role.SECURITY_OFFICER)
    paul = enrolled_user(app, client, clock, "paul", Role.SECURITY_OFFICER)
    return olga, paul


def _confirmed(person: LoggedIn, clock: FakeClock) -> dict[str, str]:
    return {**person.headers, "X-OTP": person.next_otp(clock)}


def _freeze(client: FlaskClient, clock: FakeClock, person: LoggedIn, reason: str = REASON) -> Any:
    return client.post(FREEZE, json={"reason": reason}, headers=_confirmed(person, clock))


def _lift(client: FlaskClient, clock: FakeClock, person: LoggedIn) -> Any:
    return client.post(LIFT, headers=_confirmed(person, clock))


def _again(client: FlaskClient, clock: FakeClock, person: LoggedIn) -> LoggedIn:
    """``person`` logged in anew (a session idles out after 15 minutes)."""
    answer = login(client, person.name, person.password, otp_at(person.totp, clock))
    return replace(person, token=answer.get_json()["token"])


def _audit(app: Flask, action: str) -> list[tuple[str, str, str]]:
    """(actor, outcome, detail) of each entry of ``action``, oldest first."""
    with transaction(app.extensions["fw"].sessions) as db:
        rows = db.scalars(select(AuditEntry).where(AuditEntry.action == action)).all()
        return [(row.actor, row.outcome, row.detail) for row in rows]


def _mode(app: Flask) -> Mode:
    with transaction(app.extensions["fw"].sessions) as db:
        return state.current_mode(db)


def test_f1_a_security_officer_freezes_with_a_fresh_code_and_a_reason(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, _ = officers
    answer = _freeze(client, clock, olga)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["mode"], body["by"], body["reason"]) == ("frozen", "olga", REASON)
    assert body["since"] == clock.now.isoformat()
    assert _mode(app) is Mode.FROZEN
    (entry,) = _audit(app, "freeze.enter")
    assert entry[:2] == ("olga", "success")
    assert REASON in entry[2]
    shown = client.get(FREEZE, headers=olga.headers).get_json()
    assert (shown["mode"], shown["by"], shown["pending_vote"]) == ("frozen", "olga", None)


def test_f1_entering_without_a_fresh_code_is_refused_and_nothing_changes(
    app: Flask, client: FlaskClient, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, _ = officers
    answer = client.post(FREEZE, json={"reason": REASON}, headers=olga.headers)
    assert answer.status_code == 401
    assert "one-time code" in answer.get_json()["detail"]
    assert _mode(app) is Mode.NORMAL


@pytest.mark.parametrize(
    "role", [Role.ADMIN, Role.RELEASE_MANAGER, Role.RELEASE_ENGINEER, Role.TECHNICIAN, Role.AUDITOR]
)
def test_f1_no_other_role_freezes_even_with_a_fresh_code(
    app: Flask, client: FlaskClient, clock: FakeClock, role: Role
) -> None:
    someone = enrolled_user(app, client, clock, "someone", role)
    assert _freeze(client, clock, someone).status_code == 403
    assert client.post(LIFT, headers=_confirmed(someone, clock)).status_code == 403
    assert _mode(app) is Mode.NORMAL
    # Any role reads the mode.
    assert client.get(FREEZE, headers=someone.headers).get_json()["mode"] == "normal"


@pytest.mark.parametrize(
    "body", [{}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "a\u0007b"}]
)
def test_f1_a_missing_or_bad_reason_is_a_400_and_nothing_changes(
    app: Flask,
    client: FlaskClient,
    clock: FakeClock,
    officers: tuple[LoggedIn, LoggedIn],
    body: dict[str, str],
) -> None:
    olga, _ = officers
    answer = client.post(FREEZE, json=body, headers=_confirmed(olga, clock))
    assert answer.status_code == 400
    assert "reason" in answer.get_json()["detail"]
    assert _mode(app) is Mode.NORMAL


def test_f1_entering_while_frozen_is_refused_409_audited_and_the_freeze_unchanged(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, paul = officers
    _freeze(client, clock, olga)
    again = _freeze(client, clock, paul, reason="another reason")
    assert again.status_code == 409
    assert "frozen by olga" in again.get_json()["detail"]
    shown = client.get(FREEZE, headers=paul.headers).get_json()
    assert (shown["by"], shown["reason"]) == ("olga", REASON)
    assert [entry[:2] for entry in _audit(app, "freeze.enter")] == [
        ("olga", "success"),
        ("paul", "refused"),
    ]


def test_f2_two_different_officers_lift_the_freeze(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, paul = officers
    _freeze(client, clock, olga)
    first = _lift(client, clock, olga)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert (body["mode"], body["vote"]) == ("frozen", "first")
    assert body["pending_vote"]["by"] == "olga"
    assert "different security officer" in body["message"]
    assert _mode(app) is Mode.FROZEN
    second = _lift(client, clock, paul)
    assert second.status_code == 200, second.get_json()
    body = second.get_json()
    assert (body["mode"], body["vote"], body["lifted_by"]) == ("normal", "lifted", ["olga", "paul"])
    assert _mode(app) is Mode.NORMAL
    assert [entry[:2] for entry in _audit(app, "freeze.vote")] == [
        ("olga", "success"),
        ("paul", "success"),
    ]
    (leave,) = _audit(app, "freeze.leave")
    assert leave[:2] == ("paul", "success")
    assert '"lifted_by":["olga","paul"]' in leave[2]


def test_f2_one_officer_twice_is_refused_409_audited_and_the_system_stays_frozen(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, _ = officers
    _freeze(client, clock, olga)
    _lift(client, clock, olga)
    again = _lift(client, clock, olga)
    assert again.status_code == 409
    assert "different security officer" in again.get_json()["detail"]
    assert _mode(app) is Mode.FROZEN
    assert [entry[:2] for entry in _audit(app, "freeze.vote")] == [
        ("olga", "success"),
        ("olga", "refused"),
    ]
    assert _audit(app, "freeze.leave") == []


def test_f2_a_vote_older_than_the_window_lapsed_and_the_answer_says_so(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, paul = officers
    _freeze(client, clock, olga)
    _lift(client, clock, olga)
    clock.advance(seconds=app.extensions["fw"].config.unfreeze_window.total_seconds())
    olga, paul = _again(client, clock, olga), _again(client, clock, paul)  # sessions idled out
    late = _lift(client, clock, paul)  # next_otp moves 30 s on: past the window
    body = late.get_json()
    assert (late.status_code, body["mode"], body["vote"]) == (200, "frozen", "first")
    assert "the earlier vote by olga" in body["message"]
    assert "lapsed" in body["message"]
    assert body["pending_vote"]["by"] == "paul"
    # The lapsed officer's vote now completes paul's: two officers, in time.
    done = _lift(client, clock, olga)
    assert (done.get_json()["mode"], done.get_json()["lifted_by"]) == ("normal", ["paul", "olga"])


def test_f2_lifting_while_normal_is_refused_409(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, _ = officers
    answer = _lift(client, clock, olga)
    assert answer.status_code == 409
    assert "not frozen" in answer.get_json()["detail"]
    assert [entry[:2] for entry in _audit(app, "freeze.vote")] == [("olga", "refused")]


def test_f2_a_vote_without_a_fresh_code_is_refused_and_not_counted(
    app: Flask, client: FlaskClient, clock: FakeClock, officers: tuple[LoggedIn, LoggedIn]
) -> None:
    olga, paul = officers
    _freeze(client, clock, olga)
    _lift(client, clock, olga)
    assert client.post(LIFT, headers=paul.headers).status_code == 401
    assert _mode(app) is Mode.FROZEN
    assert client.get(FREEZE, headers=paul.headers).get_json()["pending_vote"]["by"] == "olga"


def test_the_window_is_a_validated_setting() -> None:
    from update_server.config import ConfigError, ServerConfig  # noqa: PLC0415

    with pytest.raises(ConfigError, match="unfreeze_window"):
        ServerConfig(data_dir=Path("/nowhere"), unfreeze_window=timedelta(days=2))
    with pytest.raises(ConfigError, match="unfreeze_window"):
        ServerConfig(data_dir=Path("/nowhere"), unfreeze_window=timedelta(seconds=10))
