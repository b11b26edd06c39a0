"""The database locked or truncated under the real server (gunicorn, 4 workers, TLS).

While another process holds the SQLite database, or its file has been
truncated, every login, code check and publish answers 503 problem+json
within ``database_timeout`` (2 s here) and a margin, on every worker; none
answers 200. Once the database is back, the same requests succeed with the
same one-time codes: a refused request recorded nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from click.testing import CliRunner

from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.update_server.database_faults import database_locked, truncated
from update_server import cli
from update_server.config import CONFIG_FILE
from update_server.mfa.totp import INTERVAL, code_at

WORKERS = 4
DATABASE_TIMEOUT = 2
MARGIN = 6.0  # a shared, loaded test machine
PASSWORD = "a long passphrase nobody guesses 42"
LOGIN = "/api/v1/auth/login"
UNKNOWN_RELEASE = "0" * 32
ROUNDS = 4  # of each request, sent at once: more than one worker answers


@dataclass(frozen=True)
class Person:
    name: str
    token: str
    secret: str
    login_step: int

    def unused_code(self) -> str:
        """A code of a step after the login's, valid now (the server allows one step)."""
        return code_at(self.secret, max(self.login_step + 1, _step()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("database"))
    settings = json.loads((data_dir / CONFIG_FILE).read_text())
    settings["database_timeout"] = DATABASE_TIMEOUT
    (data_dir / CONFIG_FILE).write_text(json.dumps(settings))
    with start_server(data_dir, workers=WORKERS) as running:
        yield running


def _step() -> int:
    return int(time.time()) // INTERVAL


def _call(
    server: RunningServer,
    method: str,
    path: str,
    body: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    with server.pool() as pool:
        answer = pool.request(
            method,
            f"{server.url}{path}",
            json=body,
            headers=headers,
            timeout=urllib3.Timeout(total=DATABASE_TIMEOUT + MARGIN + 10),
        )
    return answer.status, answer.json() if answer.data else {}, time.monotonic() - started


def _ok(server: RunningServer, path: str, body: dict[str, str] | None, token: str = "") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    status, answer, _ = _call(server, "POST", path, body, headers)
    assert status == 200, answer
    return answer


def _enrolled(server: RunningServer, name: str) -> Person:
    """``fwserver user add``, then first login over HTTPS; a session with TOTP."""
    added = CliRunner().invoke(
        cli.main,
        ["user", "add", "--data-dir", str(server.data_dir), "--role", "release_engineer", name],
    )
    assert added.exit_code == 0, added.output
    initial = added.output.strip().split()[-1]
    first = _ok(server, LOGIN, {"username": name, "password": initial})["token"]
    secret = _ok(server, "/api/v1/auth/totp/enroll", None, first)["secret"]
    step = _step()
    _ok(server, "/api/v1/auth/totp/confirm", {"otp": code_at(secret, step - 1)}, first)
    change = {"current_password": initial, "new_password": PASSWORD}
    _ok(server, "/api/v1/auth/password", change, first)
    body = {"username": name, "password": PASSWORD, "otp": code_at(secret, step)}
    return Person(name, _ok(server, LOGIN, body)["token"], secret, step)


def _security_actions(
    server: RunningServer, person: Person, confirmer: Person
) -> list[tuple[int, dict[str, Any], float]]:
    """Logins, fresh-code checks and publishes, ``ROUNDS`` of each, all at once."""
    login = {"username": person.name, "password": PASSWORD, "otp": person.unused_code()}
    confirm = {"Authorization": f"Bearer {confirmer.token}", "X-OTP": confirmer.unused_code()}
    publish = f"/api/v1/releases/{UNKNOWN_RELEASE}/publish"
    calls = [("POST", LOGIN, login, None), ("POST", publish, None, confirm)] * ROUNDS
    with ThreadPoolExecutor(max_workers=len(calls)) as threads:
        futures = [threads.submit(_call, server, *call) for call in calls]
        return [future.result(timeout=DATABASE_TIMEOUT + MARGIN + 20) for future in futures]


def _all_refused(answers: list[tuple[int, dict[str, Any], float]]) -> None:
    assert [status for status, _, _ in answers] == [503] * len(answers), answers
    for _, body, elapsed in answers:
        assert body["status"] == 503
        assert "database" in body["detail"]
        assert elapsed < DATABASE_TIMEOUT + MARGIN


def _service_is_back(server: RunningServer, person: Person, confirmer: Person) -> None:
    body = {"username": person.name, "password": PASSWORD, "otp": person.unused_code()}
    assert _call(server, "POST", LOGIN, body)[0] == 200
    confirm = {"Authorization": f"Bearer {confirmer.token}", "X-OTP": confirmer.unused_code()}
    publish = f"/api/v1/releases/{UNKNOWN_RELEASE}/publish"
    assert _call(server, "POST", publish, None, confirm)[0] == 404  # past the code check


def test_a_database_locked_by_another_process_refuses_every_security_action(
    server: RunningServer,
) -> None:
    person, confirmer = _enrolled(server, "lena"), _enrolled(server, "lars")
    with database_locked(f"sqlite:///{server.data_dir / 'server.db'}"):
        _all_refused(_security_actions(server, person, confirmer))
    _service_is_back(server, person, confirmer)


def test_a_database_file_truncated_under_the_server_refuses_every_security_action(
    server: RunningServer,
) -> None:
    person, confirmer = _enrolled(server, "tara"), _enrolled(server, "theo")
    database: Path = server.data_dir / "server.db"
    with truncated(database):
        _all_refused(_security_actions(server, person, confirmer))
    _service_is_back(server, person, confirmer)
