"""Devices for server tests: keys made in the test, requests signed by the client's profile."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from securesystemslib.signer import CryptoSigner, Signer
from sqlalchemy import select
from werkzeug.test import TestResponse

from fwcommon.message_signatures import new_nonce, public_key_dict, signed_headers
from tests.clocks import FakeClock
from tests.update_server.people import LoggedIn
from update_server.access import OTP_HEADER
from update_server.db import transaction
from update_server.models import AuditEntry

BASE = "http://localhost"
REPORTS = "/api/v1/device/reports"
REGISTER = "/api/v1/devices/register"
MODEL = "pump-x100"


@dataclass
class FakeDevice:
    """A device as the client is: an id, a model, a key; it signs each request."""

    device_id: str
    signer: Signer = field(default_factory=CryptoSigner.generate_ed25519)
    model: str = MODEL

    def signed(
        self,
        client: FlaskClient,
        method: str,
        path: str,
        body: Any | None,
        *,
        now: datetime,
        nonce: str | None = None,
        sent_body: bytes | None = None,
    ) -> TestResponse:
        data = b"" if body is None else json.dumps(body).encode()
        headers = signed_headers(
            method,
            BASE + path,
            body=data,
            signer=self.signer,
            key_id=self.device_id,
            created=now,
            nonce=nonce or new_nonce(),
            headers={"Content-Type": "application/json"} if body is not None else {},
        )
        payload = data if sent_body is None else sent_body
        return client.open(path, method=method, data=payload, headers=headers)

    def register(self, client: FlaskClient, token: str, *, now: datetime) -> TestResponse:
        body = {
            "device_id": self.device_id,
            "hardware_model": self.model,
            "public_key": public_key_dict(self.signer.public_key),
            "token": token,
        }
        return self.signed(client, "POST", REGISTER, body, now=now)

    def report(self, client: FlaskClient, *, now: datetime, **fields: Any) -> TestResponse:
        """A report as ``client.report.build_report`` makes it (no log entries unless given)."""
        body = {
            "device_id": self.device_id,
            "hardware_model": self.model,
            "running_version": "1.0.0",
            "slot": "a",
            "security_floor": 0,
            "mode": "normal",
            "metadata_expires": {},
            "last_update": None,
            "entries": [],
            **fields,
        }
        return self.signed(client, "POST", REPORTS, body, now=now)


def issue_token(client: FlaskClient, admin: LoggedIn, clock: FakeClock, **fields: Any) -> str:
    body = {"hardware_model": MODEL, **fields}
    headers = {**admin.headers, OTP_HEADER: admin.next_otp(clock)}
    response = client.post("/api/v1/enrolment-tokens", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    token: str = response.get_json()["token"]
    return token


def audit_entries(app: Flask, action: str) -> list[AuditEntry]:
    with transaction(app.extensions["fw"].sessions) as db:
        return list(
            db.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def detail(entry: AuditEntry) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(entry.detail)
    return loaded
