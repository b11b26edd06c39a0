"""Upgrading a server of the previous tagged release (issue 12: upgrades; M1, M4; R32).

``tests/fixtures/v0.3.0/`` holds two data directories written by fwserver
0.3.0 itself (tag ``v0.3.0``, schema 0004; ``tests/fixtures/make_v030.sh``):
people with real TOTP secrets sealed by that server's key, a published
repository, a registered pump that reported, a technician's authorization
and the audit log of all of it, on SQLite and on PostgreSQL (its
``pg_dump``, loaded with ``psql`` into the test's schema). Each test copies
one, runs ``fwserver db upgrade`` and then uses the server as its people and
devices do: the old people log in with their one-time codes, the pump polls,
gets its technician's authorization and reports, and ``fwserver audit
verify`` finds the whole chain intact, the 0.3.0 entries with the new ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

from tests.clocks import FakeClock
from tests.hsm_mock.helpers import skip_or_fail
from tests.pg import PostgresServer, PostgresUnavailableError, find_bindir
from tests.update_server.devices_helpers import FakeDevice
from tests.update_server.people import login
from update_server import migrations
from update_server.app import create_app
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import CONFIG_FILE, ServerConfig
from update_server.keys import signer_loader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0.3.0"
#: The schema name the PostgreSQL dump was made in (make_v030.py SCHEMA).
DUMPED_SCHEMA = "fw_v030"
POLL = "/api/v1/device/poll"
AUTHORIZATIONS = "/api/v1/device/authorizations"


def facts(engine: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / engine / "fixture.json").read_text())
    return loaded


def load_dump(server: PostgresServer, dump: Path, schema: str) -> None:
    """``psql`` runs the plain-SQL dump, its schema renamed to ``schema`` (one transaction)."""
    bindir = find_bindir()
    if bindir is None or not (bindir / "psql").is_file():
        skip_or_fail("psql not found beside initdb: cannot load the PostgreSQL dump")
    text = dump.read_text().replace(DUMPED_SCHEMA, schema)
    where = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "fwtest", "-d", "fw_tests"]
    subprocess.run(
        [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", *where],
        input=text,
        text=True,
        check=True,
        capture_output=True,
        env={**os.environ, "PGPASSWORD": server.password},
    )


def _private_as_written(data_dir: Path) -> None:
    """The modes 0.3.0 wrote, which git does not keep: all private but the repository."""
    public = data_dir / "repository"
    for path in (data_dir, *data_dir.rglob("*")):
        if path != public and public not in path.parents:
            path.chmod(0o700 if path.is_dir() else 0o600)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A copy of the 0.3.0 data directory of the leg, its database in place; and the leg."""
    engine: str = request.param
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURES / engine, data_dir, ignore=shutil.ignore_patterns("dump.sql"))
    (data_dir / "staging").mkdir(exist_ok=True)  # empty at 0.3.0's init: git keeps none
    _private_as_written(data_dir)
    if engine == "sqlite":
        yield data_dir, engine
        return
    server = request.getfixturevalue("postgres")
    if isinstance(server, PostgresUnavailableError):
        skip_or_fail(f"PostgreSQL leg: {server}")
    schema = server.fresh_schema()
    server.admin().execute(f"DROP SCHEMA {schema}")  # the dump makes it
    load_dump(server, FIXTURES / engine / "dump.sql", schema)
    settings = json.loads((data_dir / CONFIG_FILE).read_text())
    settings["database_url"] = server.url(schema)
    (data_dir / CONFIG_FILE).write_text(json.dumps(settings))
    yield data_dir, engine
    server.drop_schema(schema)


def fwserver(clock: FakeClock, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), obj=CommandClock(clock))
    assert result.exit_code == 0, result.output
    return result.output


def totp_login(client: Any, name: str, person: dict[str, str], at: datetime) -> dict[str, str]:
    code = pyotp.TOTP(person["totp"]).at(at)
    answer = login(client, name, person["password"], code)
    assert answer.status_code == 200, answer.get_json()
    return {"Authorization": f"Bearer {answer.get_json()['token']}"}


@pytest.mark.usefixtures("fast_hashing")
def test_a_v030_server_upgraded_keeps_its_people_devices_and_audit_chain(
    old_server: tuple[Path, str],
) -> None:
    """Issue 12, M1: 0.3.0's database upgraded in place serves its people and its pump."""
    data_dir, engine = old_server
    made = facts(engine)
    # Ten minutes after 0.3.0 wrote it: the technician's authorization (15 min) still holds.
    clock = FakeClock(datetime.fromisoformat(made["made_at"]) + timedelta(minutes=10))
    assert "schema: 0004" in fwserver(clock, "db", "current", "--data-dir", str(data_dir))
    upgraded = fwserver(clock, "db", "upgrade", "--data-dir", str(data_dir))
    assert f"upgraded from 0004 to {migrations.head()}" in upgraded

    config = ServerConfig.load(data_dir, env={})
    app = create_app(config, clock=clock, signer_loader=signer_loader(config))
    client = app.test_client()
    try:
        ada = totp_login(client, "ada", made["people"]["ada"], clock.now)
        listed = client.get("/api/v1/devices", headers=ada)
        assert listed.status_code == 200, listed.get_json()
        [pump_row] = listed.get_json()["devices"]
        assert (pump_row["device_id"], pump_row["state"]) == (made["device"]["id"], "accepted")

        key = load_pem_private_key(made["device"]["private_key_pem"].encode(), None)
        pump = FakeDevice(made["device"]["id"], signer=CryptoSigner(key))  # type: ignore[arg-type]
        polled = pump.signed(client, "GET", POLL, None, now=clock.now)
        assert polled.status_code == 200, polled.get_json()
        # 0.3.0 had no deployments: an upgraded fleet waits for one (migration 0006).
        assert (polled.get_json()["install"], polled.get_json()["assignment"]) == ("assigned", None)
        authorizations = pump.signed(client, "GET", AUTHORIZATIONS, None, now=clock.now)
        assert authorizations.status_code == 200, authorizations.get_json()
        [document] = authorizations.get_json()["authorizations"]
        assert document["signed"]["target_path"] == made["authorized"]["target"]
        reported = pump.report(client, now=clock.now, running_version="2.0.0")
        assert reported.status_code == 200, reported.get_json()
    finally:
        app.extensions["fw"].engine.dispose()

    report = json.loads(fwserver(clock, "audit", "verify", "--data-dir", str(data_dir), "--json"))
    assert report["ok"] is True, report
    assert report["entries"] > 30, report  # 0.3.0's 34 entries and today's
