"""Root and targets changes made offline, uploaded by a security officer or release manager."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuf.api.metadata import Root, Targets

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, delegate
from signer.keyops import rotate
from signer.signing import sign_roles
from tests.update_server.repo_world import World, key, repository_files, resign
from update_server.publication.renewal import renew_if_due

OFFICER = "security_officer"
MANAGER = "release_manager"


def _publish_roles(
    world: World, who: str, role: str, roles: dict[str, object]
) -> dict[str, object]:
    world.login(who, role)
    answer = world.upload(who, roles, role=role)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["expected_targets"] == []
    published = world.publish(who, answer.get_json()["id"])
    assert published.status_code == 200, published.get_json()
    body: dict[str, object] = published.get_json()
    return body


def test_a_root_rotation_reaches_devices_through_the_root_chain(
    world: World, tmp_path: Path
) -> None:
    """TUF spec 5.3: devices holding root v1 walk to v2, signed by both thresholds."""
    device = world.updater(tmp_path / "device")
    device.refresh()
    rotate(
        world.open_offline("officer1", "officer2"),
        role="root",
        add=[key("officer4").public_key],
        remove=[key("officer3").public_key.keyid],
    )
    body = _publish_roles(world, "olga", OFFICER, {"root": world.role_json("root")})
    assert body["published"] == {"root": 2}
    files = repository_files(world.repository)
    assert files["metadata/2.root.json"] == files["metadata/root.json"]
    assert "metadata/1.root.json" in files
    assert not [name for name in files if "/." in name]  # the backup of root.json is gone

    world.updater(tmp_path / "device").refresh()  # the same device, later
    trusted = json.loads((tmp_path / "device" / "metadata" / "root.json").read_bytes())
    assert trusted["signed"]["version"] == 2


def test_a_root_that_drops_the_servers_online_key_is_refused(world: World) -> None:
    """A root naming another timestamp key would freeze every device within a day."""
    rotate(
        world.open_offline("officer1", "officer2"),
        role="timestamp",
        add=[key("stranger").public_key],
        remove=[_online_keyid(world, "timestamp")],
    )
    world.login("olga", OFFICER)
    answer = world.upload("olga", {"root": world.role_json("root")}, role=OFFICER)
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "online-keys"


def test_a_root_without_consistent_snapshots_is_refused(world: World) -> None:
    def plain(root: Root) -> None:
        root.version += 1
        root.consistent_snapshot = False

    document = resign(world.role_json("root"), "officer1", "officer2", mutate=plain)
    world.login("olga", OFFICER)
    answer = world.upload("olga", {"root": document}, role=OFFICER)
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "consistent-snapshot"


def test_a_root_that_skips_a_version_is_refused(world: World) -> None:
    def skip(root: Root) -> None:
        root.version += 2

    document = resign(world.role_json("root"), "officer1", "officer2", mutate=skip)
    world.login("olga", OFFICER)
    answer = world.upload("olga", {"root": document}, role=OFFICER)
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "version"


def test_a_new_product_line_comes_with_targets_in_one_release(world: World, tmp_path: Path) -> None:
    """Delegator first whatever the order given: the new role is verified by the new targets."""
    delegate(
        world.open_offline("manager1"),
        name="infusion-z1",
        path_prefix="infusion-z1/",
        keys=RoleKeys([key("erin").public_key, key("frank").public_key], 2),
    )
    for engineer in ("erin", "frank"):
        sign_roles(world.open_offline(engineer), roles=["infusion-z1"])
    roles = {"infusion-z1": world.role_json("infusion-z1"), "targets": world.role_json("targets")}
    body = _publish_roles(world, "mike", MANAGER, roles)
    assert body["published"] == {"targets": 4, "infusion-z1": 1}
    device = world.updater(tmp_path / "device")
    device.refresh()
    assert device.get_targetinfo("infusion-z1/none.bin") is None  # walked, nothing there


def test_a_key_rotation_that_leaves_a_line_unsigned_is_refused_until_it_is_resigned(
    world: World,
) -> None:
    """Rotating a line's keys without re-signing it would make devices distrust the line."""
    rotate(
        world.open_offline("manager1"),
        role="pump-x100",
        add=[key("carol").public_key],
        remove=[key("alice").public_key.keyid],
    )
    world.login("mike", MANAGER)
    answer = world.upload("mike", {"targets": world.role_json("targets")}, role=MANAGER)
    assert answer.status_code == 422
    assert answer.get_json()["rule"] == "delegation-broken"
    assert "pump-x100" in answer.get_json()["detail"]

    repo = world.open_offline("bob", "carol")
    with repo.edit_targets("pump-x100"):
        pass  # a new version, signed by the line's new keys
    repo.commit()
    roles = {"targets": world.role_json("targets"), "pump-x100": world.role_json("pump-x100")}
    answer = world.upload("mike", roles, role=MANAGER)
    assert answer.status_code == 201, answer.get_json()


def test_only_new_or_changed_targets_are_expected(world: World) -> None:
    first = world.release("alice", "2.4.0")
    assert world.publish("alice", first).status_code == 200
    path, _data = world.add_release("2.5.0")
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert [t["path"] for t in answer.get_json()["expected_targets"]] == [path]


def _online_keyid(world: World, role: str) -> str:
    keyid: str = world.services.signer(role).public_key.keyid
    return keyid


def _binned_line(world: World) -> None:
    delegate(
        world.open_offline("manager1"),
        name="ventilator-v5",
        path_prefix="ventilator-v5/",
        keys=RoleKeys([key("erin").public_key, key("frank").public_key], 2),
        bin_bits=2,
    )
    for engineer in ("erin", "frank"):
        sign_roles(world.open_offline(engineer))
    line = ["targets", "ventilator-v5", *(f"ventilator-v5-bins-{n}" for n in range(4))]
    body = _publish_roles(world, "mike", MANAGER, {role: world.role_json(role) for role in line})
    assert set(body["published"]) == set(line)


def _add_vent(world: World, tmp_path: Path, version: str) -> tuple[str, str, bytes]:
    """Add and fully sign a ventilator release; return its path, bin and bytes."""
    image = tmp_path / f"vent-{version}.bin"
    image.write_bytes(f"ventilator firmware {version}".encode() * 100)
    info = FirmwareInfo(version=version, security_version=1, hardware_models=("ventilator-v5",))
    path = f"ventilator-v5/vent-fw-{version}.bin"
    add_firmware(world.open_offline("erin"), image=image, name="vent-fw", info=info)
    bin_role = world.open_offline().leaf_role_for(path)
    sign_roles(world.open_offline("frank"), roles=[bin_role, "ventilator-v5"])
    return path, bin_role, image.read_bytes()


def test_a_release_in_a_hashed_bin_reaches_a_device_through_the_line_list(
    world: World, tmp_path: Path
) -> None:
    """TAP 15 bins: the release goes in its bin and in the line's current list.

    The device's stock ngclient finds it in the line's own role and downloads
    no bin (issue 4: a check costs the snapshot and one small role).
    """
    _binned_line(world)
    path, bin_role, data = _add_vent(world, tmp_path, "1.0.0")
    world.login("erin", "release_engineer")
    roles = {role: world.role_json(role) for role in (bin_role, "ventilator-v5")}
    answer = world.upload("erin", roles)
    assert answer.status_code == 201, answer.get_json()
    release = answer.get_json()["id"]
    assert world.put("erin", release, path, data).status_code == 201
    assert world.publish("erin", release).status_code == 200

    device = world.updater(tmp_path / "device")
    device.refresh()
    info_found = device.get_targetinfo(path)
    assert info_found is not None
    downloaded = device.download_target(info_found, str(tmp_path / "got.bin"))
    assert Path(downloaded).read_bytes() == data
    assert not list((tmp_path / "device").glob("*bins*"))


def test_a_bin_uploaded_without_the_line_list_is_refused(world: World, tmp_path: Path) -> None:
    """current-release-missing: devices read only the line's list, so they would never see it."""
    _binned_line(world)
    _path, bin_role, _data = _add_vent(world, tmp_path, "1.0.0")
    world.login("erin", "release_engineer")
    before = repository_files(world.repository)
    answer = world.upload("erin", {bin_role: world.role_json(bin_role)})
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["rule"] == "current-release-missing"
    assert repository_files(world.repository) == before


def test_a_line_list_whose_copy_differs_from_the_bin_is_refused(
    world: World, tmp_path: Path
) -> None:
    """current-release-copy (mix-and-match): the list must say what the bin says."""
    _binned_line(world)
    path, bin_role, _data = _add_vent(world, tmp_path, "1.0.0")

    def raise_floor(line: Targets) -> None:
        line.targets[path].unrecognized_fields["custom"]["security_version"] = 7

    line = resign(world.role_json("ventilator-v5"), "erin", "frank", mutate=raise_floor)
    world.login("erin", "release_engineer")
    answer = world.upload("erin", {bin_role: world.role_json(bin_role), "ventilator-v5": line})
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["rule"] == "current-release-copy"


def _summary_from_files(world: World) -> dict[str, Any]:
    """What GET /api/v1/repository must say, read from the published files alone."""
    files = repository_files(world.repository)

    def signed(name: str) -> dict[str, Any]:
        document = json.loads(files[f"metadata/{name}"])["signed"]
        return {"version": document["version"], "expires": document["expires"]}

    timestamp = json.loads(files["metadata/timestamp.json"])["signed"]
    snapshot = f"{timestamp['meta']['snapshot.json']['version']}.snapshot.json"
    listed = json.loads(files[f"metadata/{snapshot}"])["signed"]["meta"]
    roles = {"root": signed("root.json")}
    for name, meta in listed.items():
        roles[name.removesuffix(".json")] = signed(f"{meta['version']}.{name}")
    return {"roles": roles, "snapshot": signed(snapshot), "timestamp": signed("timestamp.json")}


def test_the_repository_summary_lists_every_bin_with_its_version(
    world: World, tmp_path: Path
) -> None:
    """Read from the published snapshot, and still right after each change."""
    _binned_line(world)
    world.login("auditor1", "auditor")

    def summary() -> dict[str, Any]:
        answer = world.client.get("/api/v1/repository", headers=world.as_("auditor1"))
        assert answer.status_code == 200, answer.get_json()
        body: dict[str, Any] = answer.get_json()
        assert body == _summary_from_files(world)
        return body

    bins = {f"ventilator-v5-bins-{n}" for n in range(4)}
    first = summary()
    assert {role: first["roles"][role]["version"] for role in bins} == dict.fromkeys(bins, 1)

    path, bin_role, data = _add_vent(world, tmp_path, "1.0.0")
    world.login("erin", "release_engineer")
    roles = {role: world.role_json(role) for role in (bin_role, "ventilator-v5")}
    release = world.upload("erin", roles).get_json()["id"]
    assert world.put("erin", release, path, data).status_code == 201
    assert world.publish("erin", release).status_code == 200

    after = summary()
    versions = {role: after["roles"][role]["version"] for role in bins}
    assert versions == {role: 2 if role == bin_role else 1 for role in bins}
    assert (
        after["roles"]["ventilator-v5"]["version"] == first["roles"]["ventilator-v5"]["version"] + 1
    )

    renew_if_due(world.services, world.now, force=True)  # a new snapshot, the same roles
    renewed = summary()
    assert renewed["roles"] == after["roles"]
    assert renewed["snapshot"]["version"] == after["snapshot"]["version"] + 1
