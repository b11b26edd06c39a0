"""The API fuzzed from its own OpenAPI document against the real server (R42).

schemathesis reads ``/api/v1/openapi.json`` from a running ``fwserver serve``
(gunicorn, TLS verified against the server's CA) and sends what the document
allows and what it forbids (its coverage, fuzzing and stateful phases), each
run bounded in time (``BUDGET``) and seeded, so a failure replays. Every
answer must be no 5xx (``not_a_server_error``), a status the document lists
for the operation (``status_code_conformance``) with its content type and a
body its schema admits (``content_type_conformance``,
``response_schema_conformance``). Two runs: without a session (everything
but the public routes must refuse cleanly), and with a release manager's
(the role with the most routes) so bodies reach the views.

The server publishes a repository first (``/readyz`` answers 200, and
``/metadata/`` and ``/targets/`` serve files). What the fuzz would otherwise
end on purpose is kept out of the session run: logout (it ends the session)
and the lockout after repeated wrong credentials (wrong ``X-OTP`` codes and
current passwords, which the fuzz sends by the hundred, would lock the
account and end its session within seconds: the lockout is R9's, tested in
tests/update_server/test_auth_login.py): the operations that check one are
left out of the session run (``credential_checks``; the anonymous run sends
them everything), and ``max_failed_logins`` is raised to its highest, 100. After each
run the audit chain still verifies and, after the session run, the session
still works (the fuzz tested what it claims).

Runs once per CI run: ``make test-future`` leaves tests/attack out (the
fuzz's inputs do not depend on the date, and it costs about four minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fwcommon.files import atomic_write
from repo_metadata.firmware import FirmwareInfo
from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.offline import LINE, import_repository, make_repository
from tests.e2e.people import Person, call, enrolled
from tests.hsm_mock.helpers import skip_or_fail
from tests.unprivileged import invoke_fwserver
from update_server.config import CONFIG_FILE, ServerConfig

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
#: Seconds of generation per run (issue 12: 120 s per run, two runs).
BUDGET = 120
#: A fixed seed: the same cases every run, so a failure replays (``--seed``).
SEED = 42
#: Beyond the budget: loading the document, the report.
SLACK = 60


@dataclass(frozen=True)
class Fuzzed:
    server: RunningServer
    manager: Person
    work: Path


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A server with a published repository and a logged-in release manager."""
    if not SCHEMATHESIS.exists():
        skip_or_fail(f"schemathesis is not installed ({SCHEMATHESIS}): make venv")
    work = tmp_path_factory.mktemp("attack")
    data_dir = new_data_dir(work)
    config = ServerConfig.load(data_dir).with_changes(max_failed_logins=100)
    atomic_write(
        data_dir / CONFIG_FILE, json.dumps(config.to_file_json(), indent=2).encode(), mode=0o600
    )
    image = work / "pump-fw-2.0.0.bin"
    image.write_bytes(os.urandom(4096))
    info = FirmwareInfo(version="2.0.0", security_version=1, hardware_models=(LINE,))
    make_repository(work / "offline", config, image, info, authorization=True)
    import_repository(data_dir, work / "offline", targets_dir=work)
    with start_server(data_dir) as server:
        yield Fuzzed(server, enrolled(server, "manager", role="release_manager"), work)


def fuzz(fuzzed: Fuzzed, name: str, *options: str) -> str:
    """One bounded schemathesis run; its report if it found anything, else ''."""
    argv = [
        str(SCHEMATHESIS),
        "run",
        f"{fuzzed.server.url}/api/v1/openapi.json",
        "--tls-verify",
        str(fuzzed.server.ca),
        "--checks",
        ",".join(CHECKS),
        "--max-time",
        str(BUDGET),
        "--seed",
        str(SEED),
        # One worker: with two, hypothesis's lambda descriptions raced in
        # CPython 3.11's ast ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        *options,
    ]
    cwd = fuzzed.work / name
    cwd.mkdir()  # schemathesis keeps its hypothesis database in the working directory
    ran = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=BUDGET + SLACK, check=False
    )
    (cwd / "report.txt").write_text(ran.stdout + ran.stderr)
    if ran.returncode == 0:
        return ""
    # Its report names each failure with its case and a curl line that replays it.
    return f"schemathesis exited {ran.returncode}:\n{ran.stdout}\n{ran.stderr}"


def credential_checks(server: RunningServer) -> list[str]:
    """The operations that check a credential (a fresh ``X-OTP`` code, the current password).

    Each wrong one the fuzz sends counts towards the lockout, which ends the
    session (R9, tested in test_auth_login and test_auth_otp); a fast run
    sends more than ``max_failed_logins`` can bear. Their bodies are never
    reached without a right code, so the session run leaves them out; the
    anonymous run still sends them everything.
    """
    status, document, _ = call(server, "GET", "/api/v1/openapi.json")
    assert status == 200, document
    names = ["POST /api/v1/auth/password"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", []) if isinstance(operation, dict) else []
            if any(p.get("$ref") == "#/components/parameters/OTP" for p in parameters):
                names.append(f"{method.upper()} {path}")
    assert len(names) > 5, names  # the document still marks them, or this keeps nothing out
    return names


def audit_chain_verifies(server: RunningServer) -> None:
    verified = invoke_fwserver(["audit", "verify", "--data-dir", str(server.data_dir)])
    assert verified.exit_code == 0, verified.output


def test_the_api_fuzzed_without_a_session_answers_no_5xx_and_only_what_it_documents_r42(
    fuzzed: Fuzzed,
) -> None:
    found = fuzz(fuzzed, "anonymous")
    assert not found, found
    audit_chain_verifies(fuzzed.server)


def test_the_api_fuzzed_with_a_session_answers_no_5xx_and_only_what_it_documents_r42(
    fuzzed: Fuzzed,
) -> None:
    session = f"Authorization: Bearer {fuzzed.manager.token}"
    logout = "/api/v1/auth/logout"
    kept_out = [
        arg for name in credential_checks(fuzzed.server) for arg in ("--exclude-name", name)
    ]
    found = fuzz(fuzzed, "session", "--header", session, "--exclude-path", logout, *kept_out)
    assert not found, found
    status, me, _ = call(fuzzed.server, "GET", "/api/v1/auth/me", headers=fuzzed.manager.headers)
    assert status == 200, f"the session ended during the fuzz, so it tested less: {me}"
    audit_chain_verifies(fuzzed.server)
