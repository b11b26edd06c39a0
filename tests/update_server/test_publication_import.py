"""``import_repository`` and ``fwserver import``: the first repository, verified, not trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask

from signer.authoring import RoleKeys, delegate
from signer.keyops import rotate
from signer.signing import sign_roles
from tests.clocks import FakeClock
from tests.update_server.repo_world import FakeOtp, World, key, repository_files
from update_server.cli import main
from update_server.config import ServerConfig
from update_server.models import AuditEntry
from update_server.publication.bootstrap import import_repository
from update_server.publication.errors import RejectedError


@pytest.fixture
def world(app: Flask, config: ServerConfig, clock: FakeClock, tmp_path: Path) -> World:
    """The server and an offline repository, not imported yet."""
    fresh = World(app, config, clock, tmp_path, FakeOtp())
    fresh.make_offline()
    return fresh


def _import(world: World) -> object:
    return import_repository(world.config, world.services.signer, world.offline, world.now)


def _refused(world: World, rule: str) -> None:
    with pytest.raises(RejectedError) as refused:
        _import(world)
    assert refused.value.rule == rule
    assert repository_files(world.repository) == {}
    assert not (world.config.data_dir / "publication.journal").exists()


def test_import_publishes_every_role_with_snapshot_and_timestamp_v1(
    world: World, tmp_path: Path
) -> None:
    result = import_repository(world.config, world.services.signer, world.offline, world.now)
    assert (result.root, result.snapshot, result.timestamp) == (1, 1, 1)
    assert result.roles == {"targets": 3, "pump-x100": 1, "monitor-m20": 1}
    assert result.targets_without_files == ()
    assert sorted(repository_files(world.repository)) == [
        "metadata/1.monitor-m20.json",
        "metadata/1.pump-x100.json",
        "metadata/1.root.json",
        "metadata/1.snapshot.json",
        "metadata/3.targets.json",
        "metadata/root.json",
        "metadata/timestamp.json",
    ]
    world.updater(tmp_path / "device").refresh()


def test_import_walks_the_whole_root_chain(world: World, tmp_path: Path) -> None:
    rotate(
        world.open_offline("officer1", "officer2"),
        role="root",
        add=[key("officer4").public_key],
        remove=[key("officer3").public_key.keyid],
    )
    result = import_repository(world.config, world.services.signer, world.offline, world.now)
    assert result.root == 2
    files = repository_files(world.repository)
    assert "metadata/1.root.json" in files
    assert files["metadata/2.root.json"] == files["metadata/root.json"]
    world.updater(tmp_path / "device").refresh()  # a device holding root v1 walks to v2


def test_import_of_hashed_bins_lists_every_bin(world: World) -> None:
    delegate(
        world.open_offline("manager1"),
        name="ventilator-v5",
        path_prefix="ventilator-v5/",
        keys=RoleKeys([key("erin").public_key, key("frank").public_key], 2),
        bin_bits=2,
    )
    for engineer in ("erin", "frank"):
        sign_roles(world.open_offline(engineer))
    result = import_repository(world.config, world.services.signer, world.offline, world.now)
    bins = {role for role in result.roles if role.startswith("ventilator-v5-bins-")}
    assert len(bins) == 4
    snapshot = json.loads(repository_files(world.repository)["metadata/1.snapshot.json"])
    assert {f"{name}.json" for name in bins} <= set(snapshot["signed"]["meta"])

    status = CliRunner().invoke(main, ["repo", "status", "--data-dir", str(world.config.data_dir)])
    assert status.exit_code == 0, status.output
    assert "ventilator-v5-bins-" not in status.output, "bins are summed up under their line"
    line = status.output.splitlines().index(
        next(row for row in status.output.splitlines() if row.startswith("ventilator-v5 "))
    )
    assert status.output.splitlines()[line + 1].split()[:3] == ["4", "hashed", "bins"]


def test_import_refuses_tampered_metadata(world: World) -> None:
    file = world.offline / "metadata" / "targets.json"
    document = json.loads(file.read_bytes())
    document["signed"]["expires"] = "2099-01-01T00:00:00Z"
    file.write_text(json.dumps(document))
    _refused(world, "signature-threshold")


def test_import_refuses_a_product_line_below_its_threshold(world: World) -> None:
    file = world.offline / "metadata" / "pump-x100.json"
    document = json.loads(file.read_bytes())
    document["signatures"] = document["signatures"][:1]
    file.write_text(json.dumps(document))
    _refused(world, "signature-threshold")


def test_import_refuses_a_root_that_does_not_name_the_servers_keys(
    world: World, tmp_path: Path
) -> None:
    rotate(
        world.open_offline("officer1", "officer2"),
        role="snapshot",
        add=[key("stranger").public_key],
        remove=[world.services.signer("snapshot").public_key.keyid],
    )
    _refused(world, "online-keys")


def test_import_refuses_a_root_chain_with_a_hole(world: World) -> None:
    rotate(
        world.open_offline("officer1", "officer2"),
        role="root",
        add=[key("officer4").public_key],
        remove=[key("officer3").public_key.keyid],
    )
    (world.offline / "metadata" / "1.root.json").unlink()
    _refused(world, "missing-root")


def test_import_refuses_a_missing_delegated_role(world: World) -> None:
    (world.offline / "metadata" / "monitor-m20.json").unlink()
    _refused(world, "missing-role")


def test_import_happens_once(world: World) -> None:
    _import(world)
    before = repository_files(world.repository)
    with pytest.raises(RejectedError) as refused:
        _import(world)
    assert refused.value.rule == "already-initialised"
    assert repository_files(world.repository) == before


def test_fwserver_import_renew_and_status(world: World, clock: FakeClock) -> None:
    runner = CliRunner()
    data_dir = str(world.config.data_dir)
    imported = runner.invoke(main, ["import", "--data-dir", data_dir, str(world.offline)])
    assert imported.exit_code == 0, imported.output
    assert "imported root v1" in imported.output
    again = runner.invoke(main, ["import", "--data-dir", data_dir, str(world.offline)])
    assert again.exit_code == 1
    assert "already-initialised" in again.output

    status = runner.invoke(main, ["repo", "status", "--data-dir", data_dir])
    assert status.exit_code == 0, status.output
    assert "pump-x100" in status.output
    assert "timestamp" in status.output

    renewed = runner.invoke(main, ["renew", "--data-dir", data_dir, "--force"])
    assert renewed.exit_code == 0, renewed.output
    assert "renewed snapshot, timestamp" in renewed.output
    with world.services.sessions() as db:
        actions = [(row.action, row.object, row.outcome) for row in db.query(AuditEntry)]
    assert ("release.publish", "repository:import", "success") in actions
    assert ("release.publish", "repository:import", "refused") in actions
    assert ("repository.renew", "repository", "success") in actions
