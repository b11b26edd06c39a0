"""People for server tests: create a user, walk them through first login.

For every server test that needs someone logged in::

    alice = enrolled_user(app, client, clock, "alice", Role.RELEASE_ENGINEER)
    client.get("/api/v1/auth/me", headers=alice.headers)
    client.post(..., headers={**alice.headers, "X-OTP": alice.next_otp(clock)})

``enrolled_user`` spends the codes of the time step before ``clock.now``
(TOTP confirmation) and of ``clock.now`` (the login). A code is accepted
once, and an action's code must be later than the login's, so the first
sensitive action can use ``otp_at(person.totp, clock, steps_ahead=1)``;
``person.next_otp(clock)`` moves the clock 30 s on and returns the code of
the new current step, for every later one (do not mix the two for the same
step).

``fast_password_hashing(monkeypatch)`` swaps the production argon2
parameters (0.1 s a hash) for cheap ones: for tests that are not about
hashing and log people in often.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher, Type
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.clocks import FakeClock
from update_server import users
from update_server.db import transaction
from update_server.mfa import passwords, totp
from update_server.models import Role

LOGIN = "/api/v1/auth/login"


@dataclass(frozen=True)
class LoggedIn:
    """A person who finished first login, and their live session."""

    name: str
    token: str
    totp: pyotp.TOTP
    password: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def next_otp(self, clock: FakeClock) -> str:
        """Move the clock one step on and return that step's (unused) code."""
        clock.advance(seconds=totp.INTERVAL)
        return otp_at(self.totp, clock)


def new_password(name: str) -> str:
    """A password the policy accepts for ``name`` (long, not common, not the name)."""
    return f"violet-harbour-{len(name)}-lantern-quietly"


def otp_at(code_source: pyotp.TOTP, clock: FakeClock, steps_ahead: int = 0) -> str:
    """The code of the time step ``steps_ahead`` of ``clock.now``."""
    return str(code_source.at(clock.now, counter_offset=steps_ahead))


def create_user(app: Flask, clock: FakeClock, name: str, role: Role) -> str:
    """Add ``name`` straight to the database; returns the initial password."""
    with transaction(app.extensions["fw"].sessions) as db:
        return users.add_user(db, name=name, role=role, now=clock.now)


def login(client: FlaskClient, name: str, password: str, otp: str | None = None) -> TestResponse:
    body = {"username": name, "password": password}
    if otp is not None:
        body["otp"] = otp
    return client.post(LOGIN, json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enrolled_user(
    app: Flask, client: FlaskClient, clock: FakeClock, name: str, role: Role = Role.RELEASE_ENGINEER
) -> LoggedIn:
    """Create ``name``, do first login (enrol, confirm, new password), log in."""
    initial = create_user(app, clock, name, role)
    first = _ok(login(client, name, initial))["token"]
    secret = _ok(client.post("/api/v1/auth/totp/enroll", headers=bearer(first)))["secret"]
    code_source = pyotp.TOTP(secret)
    confirm = {"otp": otp_at(code_source, clock, steps_ahead=-1)}
    _ok(client.post("/api/v1/auth/totp/confirm", json=confirm, headers=bearer(first)))
    password = new_password(name)
    change = {"current_password": initial, "new_password": password}
    _ok(client.post("/api/v1/auth/password", json=change, headers=bearer(first)))
    token = _ok(login(client, name, password, otp_at(code_source, clock)))["token"]
    return LoggedIn(name, token, code_source, password)


def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2id parameters for this test (the production ones cost 0.1 s)."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    monkeypatch.setattr(passwords, "HASHER", cheap)


def _ok(response: TestResponse) -> dict[str, Any]:
    if response.status_code != 200:
        raise AssertionError(f"{response.request.path}: {response.status_code} {response.json}")
    body: dict[str, Any] = response.get_json()
    return body
