"""People on the real server: ``fwserver user add``, then first login over HTTPS.

``enrolled(server, name)`` gives a release engineer with a TOTP secret and a
live session; ``person.unused_code()`` is a code of a later step than the
login's that the server accepts now. ``call`` sends one JSON request and
returns status, body and the seconds it took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from tests.e2e.conftest import RunningServer
from tests.unprivileged import invoke_fwserver
from update_server.mfa.totp import INTERVAL, code_at

PASSWORD = "a long passphrase nobody guesses 42"
LOGIN = "/api/v1/auth/login"
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Person:
    name: str
    token: str
    secret: str
    login_step: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def unused_code(self) -> str:
        """A code of a step after the login's, valid now (the server allows one step)."""
        return code_at(self.secret, max(self.login_step + 1, step_now()))

    def login_body(self) -> dict[str, str]:
        return {"username": self.name, "password": PASSWORD, "otp": self.unused_code()}


def step_now() -> int:
    return int(time.time()) // INTERVAL


def call(
    server: RunningServer,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    with server.pool() as pool:
        answer = pool.request(
            method,
            f"{server.url}{path}",
            json=body,
            headers=headers,
            timeout=urllib3.Timeout(total=REQUEST_TIMEOUT),
        )
    return answer.status, answer.json() if answer.data else {}, time.monotonic() - started


def publish_role(
    server: RunningServer, engineer: Person, role: str, document: Any, files: dict[str, Path]
) -> None:
    """Upload signed ``role``, send each target's bytes, publish with a fresh code (the API
    fwsign uses)."""
    status, staged, _ = call(
        server, "POST", "/api/v1/releases", {"metadata": {role: document}}, engineer.headers
    )
    assert status == 201, staged
    release = staged["id"]
    with server.pool() as pool:
        for path, file in files.items():
            sent = pool.request(
                "PUT",
                f"{server.url}/api/v1/releases/{release}/targets/{path}",
                body=file.read_bytes(),
                headers={**engineer.headers, "Content-Type": "application/octet-stream"},
                timeout=urllib3.Timeout(total=REQUEST_TIMEOUT),
            )
            assert sent.status == 201, sent.data
    fresh = {**engineer.headers, "X-OTP": engineer.unused_code()}
    status, published, _ = call(server, "POST", f"/api/v1/releases/{release}/publish", None, fresh)
    assert status == 200, published


def _ok(server: RunningServer, path: str, body: dict[str, str] | None, token: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    status, answer, _ = call(server, "POST", path, body, headers)
    assert status == 200, answer
    return answer


def enrolled(server: RunningServer, name: str, role: str = "release_engineer") -> Person:
    """A person (a release engineer by default) added by ``fwserver user add``, logged in."""
    added = invoke_fwserver(
        ["user", "add", "--data-dir", str(server.data_dir), "--role", role, name]
    )
    assert added.exit_code == 0, added.output
    initial = added.output.strip().split()[-1]
    first = _ok(server, LOGIN, {"username": name, "password": initial})["token"]
    secret = _ok(server, "/api/v1/auth/totp/enroll", None, first)["secret"]
    step = step_now()
    _ok(server, "/api/v1/auth/totp/confirm", {"otp": code_at(secret, step - 1)}, first)
    change = {"current_password": initial, "new_password": PASSWORD}
    _ok(server, "/api/v1/auth/password", change, first)
    body = {"username": name, "password": PASSWORD, "otp": code_at(secret, step)}
    return Person(name, _ok(server, LOGIN, body)["token"], secret, step)
