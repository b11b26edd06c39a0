"""``fwsign audit verify`` from a workstation against the real server (R27, R28; RV1-RV3).

The real ``fwserver serve`` over TLS; the auditor holds the audit public key
as a key file (what ``fwhsm export-public`` writes). Each run logs in with
its own auditor (a code of a step after their enrolment's), so no test
waits for a TOTP step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from securesystemslib.signer import CryptoSigner
from sqlalchemy import create_engine, select, update

from signer.cli import main as fwsign
from tests.e2e.conftest import RunningServer, new_data_dir, start_server
from tests.e2e.people import PASSWORD, Person, enrolled
from update_server.audit.public_key import audit_public_key
from update_server.config import ServerConfig
from update_server.models import AuditEntry


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(new_data_dir(tmp_path_factory.mktemp("fwsign-audit"))) as running:
        yield running


@pytest.fixture(scope="module")
def audit_key(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audit public key as the auditor keeps it: a key JSON file."""
    key = audit_public_key(ServerConfig.load(server.data_dir))
    path = tmp_path_factory.mktemp("auditor") / "audit.pub.json"
    path.write_text(json.dumps(key.to_dict()))
    return path


def verify(server: RunningServer, person: Person, key: Path, *extra: str) -> Result:
    argv = ["audit", "verify", "--server", server.url, "--ca", str(server.ca)]
    argv += ["--user", person.name, "--public-key", str(key), *extra]
    env = {"FWSIGN_PASSWORD": PASSWORD, "FWSIGN_OTP": person.unused_code()}
    return CliRunner().invoke(fwsign, argv, env=env)


def _database(server: RunningServer) -> str:
    return ServerConfig.load(server.data_dir).database_url


def test_rv2_an_intact_log_checked_with_the_key_the_auditor_holds(
    server: RunningServer, audit_key: Path
) -> None:
    checked = verify(server, enrolled(server, "audrey", role="auditor"), audit_key)
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith("audit log intact: ")
    assert "head anchored at entry" in checked.stdout
    assert "anchored head: entry " in checked.stdout
    key = audit_public_key(ServerConfig.load(server.data_dir))
    assert f"checked with the audit key {key.keyid}" in checked.stdout
    assert f"by key {key.keyid}" in checked.stdout, "each signed head names its key"


def test_rv1_the_servers_verdict_is_not_used_another_key_fails_r28(
    server: RunningServer, tmp_path: Path
) -> None:
    """The server's own check passes; with a key that is not the audit key, this one fails."""
    other = tmp_path / "not-the-audit-key.json"
    other.write_text(json.dumps(CryptoSigner.generate_ed25519().public_key.to_dict()))
    checked = verify(server, enrolled(server, "otto", role="auditor"), other, "--json")
    assert checked.exit_code == 1, checked.output
    report = json.loads(checked.stdout)
    assert report["ok"] is False
    assert "not by the audit key" in report["reason"]


def test_rv3_a_person_who_may_not_read_the_log_is_refused(
    server: RunningServer, audit_key: Path
) -> None:
    checked = verify(server, enrolled(server, "tom", role="technician"), audit_key)
    assert checked.exit_code == 1
    assert "fwsign: error: the server refused (403)" in checked.stderr, checked.stderr


def test_rv3_a_rewritten_entry_is_named_where_the_chain_breaks_r28(
    server: RunningServer, audit_key: Path
) -> None:
    """Last in this module: the server's log stays broken."""
    sofia = enrolled(server, "sofia", role="security_officer")
    engine = create_engine(_database(server))
    with engine.begin() as db:
        seq = db.execute(
            select(AuditEntry.seq).where(AuditEntry.actor == "otto").order_by(AuditEntry.seq)
        ).scalar()
        assert seq is not None
        db.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(outcome="failure"))
    engine.dispose()
    checked = verify(server, sofia, audit_key)
    assert checked.exit_code == 1, checked.output
    assert f"audit log NOT intact: first bad entry {seq}: content altered" in checked.stderr
