"""A backup restored into a new data directory and database is the same server (R32, R61).

On each database leg: a server publishes 1.0.0 and 2.0.0, its pump-x100
fleet takes the newest, a pump polls and reports; ``fwserver backup`` writes
the archive (audited with its SHA-256) while that server runs; ``fwserver
restore`` makes a new data directory and a new, empty database from it (a
new SQLite file, or a new PostgreSQL schema); an app started on the restored
directory serves the same pump: its poll (signed with its key from before)
is answered, a stock ngclient trusting root v1 downloads 2.0.0 from the
restored repository and verifies it, the pump reports running it, and
``fwserver audit verify`` finds the restored chain intact, checkpoints and
anchored head included, ending with the restore's own entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuf.ngclient import Updater

from tests.clocks import FakeClock
from tests.hsm_mock.helpers import skip_or_fail
from tests.pg import PostgresUnavailableError
from tests.update_server.deployments_helpers import add_pump, fresh, manager, publish
from tests.update_server.repo_world import ClientFetcher, World
from update_server.app import create_app
from update_server.audit.actions import Action
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.config import ServerConfig
from update_server.db import transaction
from update_server.keys import signer_loader
from update_server.models import AuditEntry

pytestmark = pytest.mark.usefixtures("fast_hashing")


def fwserver(clock: FakeClock, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), obj=CommandClock(clock))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def new_database_url(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """An empty database of the leg's engine for the restored server ('' on SQLite: its default)."""
    if database_url.startswith("sqlite"):
        yield ""
        return
    server = request.getfixturevalue("postgres")
    if isinstance(server, PostgresUnavailableError):
        skip_or_fail(f"PostgreSQL leg: {server}")
    schema = server.fresh_schema()
    yield server.url(schema)
    server.drop_schema(schema)


def updater(client: object, repository: Path, workdir: Path) -> Updater:
    """A stock ngclient on ``client`` (a Flask test client) that trusts root v1."""
    for folder in ("metadata", "targets"):
        (workdir / folder).mkdir(parents=True)
    return Updater(
        metadata_dir=str(workdir / "metadata"),
        metadata_base_url="https://server.test/metadata/",
        target_dir=str(workdir / "targets"),
        target_base_url="https://server.test/targets/",
        fetcher=ClientFetcher(client),  # type: ignore[arg-type]
        bootstrap=(repository / "metadata" / "1.root.json").read_bytes(),
    )


def test_a_restored_backup_serves_the_same_pump_and_its_audit_chain_verifies_r32(
    world: World, config: ServerConfig, clock: FakeClock, tmp_path: Path, new_database_url: str
) -> None:
    publish(world, "1.0.0")
    path = publish(world, "2.0.0")
    newest = {"install": "newest"}
    headers = fresh(world, manager(world, "manager1"))
    assert world.client.put("/api/v1/fleets/pump-x100", json=newest, headers=headers).status_code
    pump = add_pump(world, "pump-0001")
    assert pump.poll().get_json()["install"] == "newest"
    pump.report()

    archive = tmp_path / "backups" / "server.tar.gz"
    shown = fwserver(clock, "backup", "--data-dir", str(config.data_dir), "-o", str(archive))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert digest in shown
    with transaction(world.services.sessions) as db:
        entry = db.query(AuditEntry).order_by(AuditEntry.seq.desc()).first()
    assert entry is not None and (entry.action, entry.outcome) == (Action.SERVER_BACKUP, "success")
    assert json.loads(entry.detail)["sha256"] == digest

    restored_dir = tmp_path / "restored"
    args = ["restore", str(archive), "--data-dir", str(restored_dir)]
    args += ["--hsm-pin-file", str(config.data_dir / "hsm.pin")]
    fwserver(clock, *args, *(["--database-url", new_database_url] if new_database_url else []))
    restored = ServerConfig.load(restored_dir, env={})
    assert restored.database_url != config.database_url

    clock.advance(minutes=1)
    app = create_app(restored, clock=clock, signer_loader=signer_loader(restored))
    try:
        pump.world = World(app, restored, clock, tmp_path / "after", world.otp)
        answer = pump.poll()
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["install"] == "newest"
        ngclient = updater(pump.world.client, restored.repository_dir, tmp_path / "device")
        ngclient.refresh()
        target = ngclient.get_targetinfo(path)
        assert target is not None
        ngclient.download_target(target)  # raises unless the hashes signed for 2.0.0 match
        pump.report(running="2.0.0")
    finally:
        app.extensions["fw"].engine.dispose()

    report = json.loads(
        fwserver(clock, "audit", "verify", "--data-dir", str(restored_dir), "--json")
    )
    assert report["ok"] is True, report
    app = create_app(restored, clock=clock, signer_loader=signer_loader(restored))
    try:
        with transaction(app.extensions["fw"].sessions) as db:
            actions = [row.action for row in db.query(AuditEntry).order_by(AuditEntry.seq)]
    finally:
        app.extensions["fw"].engine.dispose()
    assert Action.SERVER_RESTORE in actions
    assert actions.index(Action.SERVER_RESTORE) > actions.index(Action.PUBLISH)
    assert actions[-1] == Action.DEVICE_REPORT
