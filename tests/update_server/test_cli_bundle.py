"""``fwserver bundle`` on a real server's data directory (issue 13: R13, R25, R9, R27).

One command makes a bundle for a model or one device from the published
repository; every refusal (unknown model, device or release, over the
bound, an existing file, an authorization that does not fit) exits 2 with
one line and writes nothing; each bundle made is one ``bundle.create``
audit entry naming the file's SHA-256 and size. The command never issues
an authorization (that needs a technician's fresh code, R9): it packs one
the server issued.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from fwcommon.bundle import AUTHORIZATION, Bundle
from tests.update_server.bundle_world import Published, publish
from tests.update_server.repo_world import World
from update_server.audit.actions import Action
from update_server.authorizations import issuing
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.db import transaction
from update_server.deployments.models import Deployment, DeploymentDevice
from update_server.devices import scope
from update_server.devices.models import Device
from update_server.freeze import rules as freeze_rules
from update_server.freeze import state as freeze_state
from update_server.models import AuditEntry, Role, User
from update_server.publication.repository import OnlineRepository

BOUND = 64 * 1024 * 1024


def fwserver_bundle(world: World, *args: str) -> Result:
    argv = ["bundle", "--data-dir", str(world.config.data_dir), *args]
    return CliRunner().invoke(main, argv, obj=CommandClock(world.clock))


def add_device(world: World, device_id: str, running: str | None, **fields: Any) -> None:
    with transaction(world.services.sessions) as db:
        db.add(
            Device(
                id=device_id,
                hardware_model=fields.pop("model", "pump-x100"),
                site="ward-3",
                state=fields.pop("state", "accepted"),
                public_key={},
                key_id=device_id,
                registered_at=world.now,
                running_version=running,
                **fields,
            )
        )


def bundle_entries(world: World) -> list[AuditEntry]:
    with transaction(world.services.sessions) as db:
        query = select(AuditEntry).where(AuditEntry.action == Action.BUNDLE_CREATE)
        return list(db.scalars(query))


@pytest.fixture
def pumps(world: World) -> tuple[Published, Published]:
    """Pump 1.0.0 and 2.0.0 (2.0.0 requires an authorization); pump-1 runs 1.0.0."""
    old = publish(world, "1.0.0")
    new = publish(world, "2.0.0", requires_authorization=True)
    add_device(world, "pump-1", "1.0.0")
    add_device(world, "pump-gone", "1.0.0", state="decommissioned")
    return old, new


def test_one_command_makes_an_audited_bundle_for_a_model_r13_r27(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    out = tmp_path / "pump.tar"
    result = fwserver_bundle(world, "--model", "pump-x100", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert f"sha256 {digest}, {len(data)} bytes" in result.output
    assert "requires a technician's authorization" in result.output
    (entry,) = bundle_entries(world)
    detail = json.loads(entry.detail)
    assert (entry.actor.startswith("cli:"), entry.outcome, entry.object) == (
        True,
        "success",
        "model:pump-x100",
    )
    assert detail["sha256"] == digest and detail["size"] == len(data)
    assert (detail["model"], detail["device"], detail["release"]) == (
        "pump-x100",
        None,
        pumps[1].path,
    )
    assert detail["release_sha256"] == hashlib.sha256(pumps[1].data).hexdigest()


def test_a_device_bundle_carries_what_the_device_takes_r25(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    out = tmp_path / "pump-1.tar"
    result = fwserver_bundle(world, "--device", "pump-1", "--release", "1.0.0", "-o", str(out))
    assert result.exit_code == 0, result.output
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        manifest = bundle.manifest
    assert (manifest.device, manifest.hardware_model, manifest.release) == (
        "pump-1",
        "pump-x100",
        pumps[0].path,
    )
    (entry,) = bundle_entries(world)
    assert entry.object == "device:pump-1"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "ventilator-v9"], "ventilator-v9"),
        (["--device", "pump-404"], "no device 'pump-404'"),
        (["--device", "pump-gone"], "is decommissioned: only an accepted device"),
        (["--model", "pump-x100", "--release", "9.9.9"], "no release 9.9.9"),
        (["--device", "pump-1", "--model", "monitor-m20"], "is a pump-x100, not a monitor-m20"),
        (["--model", "pump-x100", "--from-root", "7"], "root versions up to 1, not 7"),
        (["--model", "pump-x100", "--max-bytes", "20000"], "bound"),
        ([], "name the bundle's --model or --device"),
    ],
)
def test_a_refused_bundle_exits_2_and_writes_and_audits_nothing_r13(
    world: World,
    pumps: tuple[Published, Published],
    tmp_path: Path,
    args: list[str],
    says: str,
) -> None:
    out = tmp_path / "media" / "b.tar"
    out.parent.mkdir()
    result = fwserver_bundle(world, *args, "-o", str(out))
    assert result.exit_code == 2, result.output
    assert "fwserver: error: no bundle written:" in result.output
    assert says in result.output
    assert list(out.parent.iterdir()) == []
    assert bundle_entries(world) == []


def test_an_existing_file_is_never_overwritten(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    """``fwserver bundle`` never overwrites an existing file: exit 2, nothing written."""
    out = tmp_path / "b.tar"
    out.write_bytes(b"the technician's notes")
    result = fwserver_bundle(world, "--model", "pump-x100", "-o", str(out))
    assert result.exit_code == 2
    assert "exists" in result.output
    assert out.read_bytes() == b"the technician's notes"


def _issue(world: World, device_id: str, path: str) -> tuple[int, bytes]:
    """An authorization issued as the technician's page issues it (the same call)."""
    with transaction(world.services.sessions) as db:
        tom = User(
            name="tom",
            role=Role.TECHNICIAN,
            password_hash="!",
            must_change_password=False,
            totp_enrolled=True,
            created_at=world.now,
        )
        db.add(tom)
        db.flush()
        scope.set_sites(db, tom, ["ward-3"])
        repository = OnlineRepository(world.repository, now=world.now)
        (row,) = issuing.issue(
            db,
            technician=tom,
            device_ids=[device_id],
            release=issuing.published_release(repository, path),
            lifetime=timedelta(minutes=15),
            signer=world.services.signer("authorization"),
            now=world.now,
            source="test",
        )
        return row.id, row.document.encode("utf-8")


def test_an_issued_authorization_is_packed_for_its_device_and_release_r9(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    _, new = pumps
    _, document = _issue(world, "pump-1", new.path)
    file = tmp_path / "authorization.json"
    file.write_bytes(document)
    out = tmp_path / "b.tar"
    result = fwserver_bundle(
        world, "--device", "pump-1", "--authorization", str(file), "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        assert bundle.manifest.authorization == AUTHORIZATION
        assert bundle.read(AUTHORIZATION, limit=16 * 1024) == document
    (entry,) = bundle_entries(world)
    nonce = json.loads(document)["signed"]["nonce"]
    assert json.loads(entry.detail)["authorization"] == nonce[:16]


def test_an_authorization_for_another_device_or_forged_is_refused_r9(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    _, new = pumps
    add_device(world, "pump-2", "1.0.0")
    _, document = _issue(world, "pump-2", new.path)
    other = tmp_path / "other.json"
    other.write_bytes(document)
    out = tmp_path / "b.tar"
    wrong = fwserver_bundle(
        world, "--device", "pump-1", "--authorization", str(other), "-o", str(out)
    )
    assert wrong.exit_code == 2
    assert "for pump-2, not" in wrong.output
    changed = json.loads(document)
    changed["signed"]["device_id"] = "pump-1"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(changed, sort_keys=True, separators=(",", ":")))
    refused = fwserver_bundle(
        world, "--device", "pump-1", "--authorization", str(forged), "-o", str(out)
    )
    assert refused.exit_code == 2
    assert "not an authorization this server issued" in refused.output
    assert not out.exists()
    assert bundle_entries(world) == []


def _deploy(world: World, release: Published, *, state: str, waves_started: int) -> None:
    """A deployment of ``release`` whose first wave holds pump-1 (rows as ``rollout`` has them)."""
    with transaction(world.services.sessions) as db:
        deployment = Deployment(
            target_path=release.path,
            sha256=hashlib.sha256(release.data).hexdigest(),
            version=release.path.rsplit("-", 1)[1].removesuffix(".bin"),
            state=state,
            groups=[],
            fleets=["pump-x100"],
            waves=[{"percent": 100}],
            wave_sizes=[1],
            success_percent=90,
            failure_percent=10,
            waves_started=waves_started,
            created_by="mia",
            created_at=world.now,
        )
        db.add(deployment)
        db.flush()
        db.add(
            DeploymentDevice(
                deployment_id=deployment.id, device_id="pump-1", wave=0, status="assigned"
            )
        )


def test_a_devices_bundle_carries_the_release_a_running_deployment_assigns_it(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    """The server's own choice for the device (a serving deployment's started wave), not merely
    the newest; a deployment waiting for approval assigns nothing yet (D8)."""
    old, new = pumps
    _deploy(world, new, state="awaiting_approval", waves_started=0)
    _deploy(world, old, state="running", waves_started=1)
    out = tmp_path / "b.tar"
    result = fwserver_bundle(world, "--device", "pump-1", "-o", str(out))
    assert result.exit_code == 0, result.output
    with Bundle.open(out, max_bytes=BOUND) as bundle:
        assert bundle.manifest.release == old.path


def test_no_bundle_is_made_while_the_system_is_frozen_r24(
    world: World, pumps: tuple[Published, Published], tmp_path: Path
) -> None:
    """Frozen, nothing progresses (F3): a bundle would carry an update past the freeze."""
    with transaction(world.services.sessions) as db:
        row = freeze_state.locked(db, now=world.now)
        frozen = freeze_rules.enter(
            freeze_state.snapshot(row),
            officer="olga",
            role="security_officer",
            reason="key compromise suspected",
            now=world.now,
        )
        freeze_state.write(row, frozen)
    out = tmp_path / "b.tar"
    result = fwserver_bundle(world, "--model", "pump-x100", "-o", str(out))
    assert result.exit_code == 2, result.output
    assert "frozen" in result.output and "olga" in result.output
    assert not out.exists()
    assert bundle_entries(world) == []
