"""Publishing a release: the happy path a device sees, MFA, and the trusted state moving."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.clocks import RUN_START as START
from tests.clocks import iso_z
from tests.update_server.repo_world import World, repository_files
from update_server.models import AuditEntry


def _audit(world: World) -> list[tuple[str, str, str]]:
    with world.services.sessions() as db:
        rows = db.query(AuditEntry).order_by(AuditEntry.seq).all()
        return [(row.action, row.object, row.outcome) for row in rows]


def test_a_published_release_is_downloaded_by_a_stock_ngclient(
    world: World, tmp_path: Path
) -> None:
    """R13: what two engineers signed reaches a device through our server, verified."""
    path, data = world.add_release("2.4.0")
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    assert body["roles"] == {"pump-x100": 2}
    assert body["expected_targets"] == [
        {"path": path, "length": len(data), "sha256": _sha256(data)}
    ]
    assert world.put("alice", body["id"], path, data).status_code == 201

    published = world.publish("alice", body["id"])

    assert published.status_code == 200, published.get_json()
    assert published.get_json() == {"published": {"pump-x100": 2}, "snapshot": 2, "timestamp": 2}
    updater = world.updater(tmp_path / "device")
    updater.refresh()
    info = updater.get_targetinfo(path)
    assert info is not None
    assert info.custom["version"] == "2.4.0"
    downloaded = updater.download_target(info, str(tmp_path / "fw.bin"))
    assert Path(downloaded).read_bytes() == data


def test_published_layout_is_consistent_snapshots_with_timestamp_listing_snapshot_hash(
    world: World,
) -> None:
    path, data = world.add_release("2.4.0")
    world.publish("alice", _staged(world, path, data))
    files = repository_files(world.repository)
    digest = _sha256(data)
    assert f"targets/pump-x100/{digest}.fw-2.4.0.bin" in files
    for name in ("1.root.json", "root.json", "3.targets.json", "1.pump-x100.json",
                 "2.pump-x100.json", "1.monitor-m20.json", "1.snapshot.json",
                 "2.snapshot.json", "timestamp.json"):  # fmt: skip
        assert f"metadata/{name}" in files, name
    assert not [name for name in files if "/." in name or name.startswith(".")]
    timestamp = json.loads(files["metadata/timestamp.json"])["signed"]
    snapshot_meta = timestamp["meta"]["snapshot.json"]
    snapshot_bytes = files["metadata/2.snapshot.json"]
    assert snapshot_meta == {
        "version": 2,
        "length": len(snapshot_bytes),
        "hashes": {"sha256": _sha256(snapshot_bytes)},
    }
    snapshot = json.loads(snapshot_bytes)["signed"]
    assert snapshot["meta"] == {
        "targets.json": {"version": 3},
        "pump-x100.json": {"version": 2},
        "monitor-m20.json": {"version": 1},
    }


def test_publish_without_a_fresh_otp_is_refused_r9(world: World) -> None:
    """Skipped second factor: publishing needs a one-time code in the request."""
    path, data = world.add_release("2.4.0")
    release = _staged(world, path, data)
    before = repository_files(world.repository)
    answer = world.client.post(f"/api/v1/releases/{release}/publish", headers=world.as_("alice"))
    assert answer.status_code == 401
    assert "X-OTP" in answer.get_json()["detail"]
    assert repository_files(world.repository) == before


def test_a_replayed_otp_is_refused_r25(world: World) -> None:
    path, data = world.add_release("2.4.0")
    release = _staged(world, path, data)
    code = world.otp.code()
    assert world.publish("alice", release, code).status_code == 200
    second_path, second_data = world.add_release("2.5.0")
    second = _staged(world, second_path, second_data)
    assert world.publish("alice", second, code).status_code == 401
    assert world.publish("alice", second).status_code == 200


def test_only_the_uploader_may_publish_their_release(world: World) -> None:
    path, data = world.add_release("2.4.0")
    release = _staged(world, path, data)
    world.login("mallory", "release_engineer")
    answer = world.publish("mallory", release)
    assert answer.status_code == 404
    assert answer.get_json()["rule"] == "unknown-release"


def test_publish_with_a_target_not_uploaded_yet_is_a_conflict(world: World) -> None:
    path, _data = world.add_release("2.4.0")
    release = world.upload("alice", {"pump-x100": world.role_json("pump-x100")}).get_json()["id"]
    before = repository_files(world.repository)
    answer = world.publish("alice", release)
    assert answer.status_code == 409
    assert answer.get_json()["rule"] == "target-missing"
    assert path in answer.get_json()["detail"]
    assert repository_files(world.repository) == before
    assert ("release.publish", f"release:{release}", "refused") in _audit(world)


def test_a_release_overtaken_by_another_is_a_conflict_not_a_rollback(world: World) -> None:
    """Two uploads of the same role: the second to publish would roll the first back."""
    path, data = world.add_release("2.4.0")
    first = _staged(world, path, data)
    world.login("bob", "release_engineer")
    second = _staged(world, path, data, who="bob")
    assert world.publish("alice", first).status_code == 200
    answer = world.publish("bob", second)
    assert answer.status_code == 409
    assert answer.get_json()["rule"] == "trusted-state-changed"


def test_a_published_release_cannot_be_published_twice(world: World) -> None:
    path, data = world.add_release("2.4.0")
    release = _staged(world, path, data)
    assert world.publish("alice", release).status_code == 200
    again = world.publish("alice", release)
    assert again.status_code == 409
    assert again.get_json()["rule"] == "release-closed"


def test_publication_is_audited_with_key_use(world: World) -> None:
    """R27: the upload, each target, the publication and each online key use."""
    path, data = world.add_release("2.4.0")
    release = _staged(world, path, data)
    world.publish("alice", release)
    entries = _audit(world)
    assert ("release.upload", f"release:{release}", "success") in entries
    assert ("release.upload_target", f"release:{release}/{path}", "success") in entries
    assert ("release.publish", f"release:{release}", "success") in entries
    assert ("key.use", "key:snapshot", "success") in entries
    assert ("key.use", "key:timestamp", "success") in entries


def test_cancelled_release_removes_its_staged_files(world: World) -> None:
    path, data = world.add_release("2.4.0")
    release = _staged(world, path, data)
    staging = world.config.staging_dir / release
    assert staging.is_dir()
    answer = world.client.delete(f"/api/v1/releases/{release}", headers=world.as_("alice"))
    assert answer.status_code == 204
    assert not staging.exists()
    assert world.publish("alice", release).status_code == 409


def test_repository_status_lists_versions_and_expiries(world: World) -> None:
    world.login("auditor1", "auditor")
    answer = world.client.get("/api/v1/repository", headers=world.as_("auditor1"))
    assert answer.status_code == 200
    body: dict[str, Any] = answer.get_json()
    assert body["roles"]["root"] == {"version": 1, "expires": iso_z(START + timedelta(days=365))}
    assert body["roles"]["pump-x100"]["version"] == 1
    assert body["snapshot"] == {"version": 1, "expires": iso_z(START + timedelta(days=7))}
    assert body["timestamp"] == {"version": 1, "expires": iso_z(START + timedelta(days=1))}
    assert world.client.get("/api/v1/repository").status_code == 401


def _staged(world: World, path: str, data: bytes, who: str = "alice") -> str:
    answer = world.upload(who, {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201, answer.get_json()
    release: str = answer.get_json()["id"]
    put = world.put(who, release, path, data)
    assert put.status_code == 201, put.get_json()
    return release


def _sha256(data: bytes) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(data).hexdigest()
