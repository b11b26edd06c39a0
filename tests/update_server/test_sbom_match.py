"""``fwserver sbom match`` on a real server's data directory (R41, R56).

Releases are signed with their SBOMs by fwsign's library (``add_firmware(...,
sbom=)``, as ``fwsign add --sbom`` does), uploaded and published through the
server's API, and devices are put in the registry with what they run. The
command must name the release holding a vulnerable component and the devices
that run it, and only those (R41: components known and checked; R56: the
devices to move); it trusts a release's SBOM only as the signed targets
metadata describes it (``inventory`` I2), and a release it cannot check is
never reported clean (I3, ``report`` R3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import add_firmware, sbom_target_path
from signer.signing import sign_roles
from tests.update_server.repo_world import World, image_bytes
from update_server.cli import main
from update_server.cli_common import CommandClock
from update_server.db import transaction
from update_server.devices.models import Device
from update_server.publication.repository import target_file

ZLIB_ADVISORY = {
    "id": "OSV-2022-ZLIB",
    "aliases": ["CVE-2022-37434"],
    "summary": "zlib inflate heap overflow",
    "affected": [
        {
            "package": {"ecosystem": "Debian:12", "name": "zlib"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.13"}]}],
        }
    ],
}


def cyclonedx(*components: tuple[str, str]) -> dict[str, Any]:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [
            {
                "type": "library",
                "name": name,
                "version": version,
                "purl": f"pkg:generic/{name}@{version}",
            }
            for name, version in components
        ],
    }


def publish(world: World, version: str, sbom: dict[str, Any] | None) -> str:
    """Sign ``version`` (with ``sbom``) into pump-x100, upload both files, publish; its path."""
    image = world.tmp / f"fw-{version}.bin"
    image.write_bytes(image_bytes(f"pump-x100-{version}"))
    sbom_file = None
    if sbom is not None:
        sbom_file = world.tmp / f"fw-{version}.sbom.json"
        sbom_file.write_text(json.dumps(sbom))
    info = FirmwareInfo(version=version, security_version=1, hardware_models=("pump-x100",))
    add_firmware(world.open_offline("alice"), image=image, name="fw", info=info, sbom=sbom_file)
    sign_roles(world.open_offline("bob"), roles=["pump-x100"])
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201, answer.get_json()
    upload = answer.get_json()["id"]
    path = f"pump-x100/fw-{version}.bin"
    assert world.put("alice", upload, path, image.read_bytes()).status_code == 201
    if sbom_file is not None:
        put = world.put("alice", upload, sbom_target_path(path), sbom_file.read_bytes())
        assert put.status_code == 201
    published = world.publish("alice", upload)
    assert published.status_code == 200, published.get_json()
    return path


def device(
    world: World,
    name: str,
    running: str | None,
    *,
    model: str = "pump-x100",
    state: str = "accepted",
) -> None:
    with transaction(world.services.sessions) as db:
        db.add(
            Device(
                id=name,
                hardware_model=model,
                state=state,
                public_key={},
                key_id=name,
                registered_at=world.now,
                running_version=running,
            )
        )


def sbom_match(world: World, advisories: object, *options: str) -> Result:
    file = world.tmp / "advisories.json"
    file.write_text(advisories if isinstance(advisories, str) else json.dumps(advisories))
    argv = ["sbom", "match", "--data-dir", str(world.config.data_dir), *options, str(file)]
    return CliRunner().invoke(main, argv, obj=CommandClock(world.clock))


def fleet(world: World) -> tuple[str, str]:
    """Two releases with different SBOMs; devices on each, one decommissioned, one other model."""
    old = publish(world, "1.0.0", cyclonedx(("zlib", "1.2.11"), ("busybox", "1.36.1")))
    new = publish(world, "2.0.0", cyclonedx(("zlib", "1.2.13"), ("busybox", "1.36.1")))
    device(world, "pump-01", "1.0.0")
    device(world, "pump-02", "1.0.0", state="pending")
    device(world, "pump-03", "2.0.0")
    device(world, "pump-04", "1.0.0", state="decommissioned")
    device(world, "monitor-01", "1.0.0", model="monitor-m20")
    device(world, "pump-05", None)  # never reported
    return old, new


def test_the_release_with_the_vulnerable_component_and_only_its_devices_are_named_r41_r56(
    world: World,
) -> None:
    old, new = fleet(world)
    result = sbom_match(world, {"vulns": [ZLIB_ADVISORY]})
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("OSV-2022-ZLIB (CVE-2022-37434): zlib@1.2.11 affected")
    assert lines[1] == f"  {old} (1.0.0): 2 device(s): pump-01, pump-02"
    assert new not in result.output and "pump-03" not in result.output
    assert "pump-04" not in result.output and "monitor-01" not in result.output
    assert lines[-1].endswith(
        "2 of 2 release(s) checked: 1 finding(s), 2 device(s) run an affected or unclear release"
    )


def test_the_json_report_lists_releases_devices_and_counts_r56(world: World) -> None:
    old, _new = fleet(world)
    result = sbom_match(world, [ZLIB_ADVISORY], "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.output)
    (finding,) = report["findings"]
    assert finding["component"] == {
        "name": "zlib",
        "version": "1.2.11",
        "purl": "pkg:generic/zlib@1.2.11",
    }
    assert finding["releases"] == [
        {"path": old, "version": "1.0.0", "devices": ["pump-01", "pump-02"], "device_count": 2}
    ]
    assert (report["status"], report["devices_exposed"], report["not_checked"]) == ("found", 2, [])


def test_nothing_found_exits_0_and_a_release_without_sbom_is_not_clean_r41(world: World) -> None:
    fleet(world)
    package = {"ecosystem": "Debian:12", "name": "zlib"}
    fixed_only = {"id": "OSV-OLD", "affected": [{"package": package, "versions": ["1.2.0"]}]}
    clean = sbom_match(world, [fixed_only])
    assert clean.exit_code == 0, clean.output
    bare = publish(world, "2.1.0", None)
    unchecked = sbom_match(world, [fixed_only], "--json")
    assert unchecked.exit_code == 4, unchecked.output
    (row,) = json.loads(unchecked.output)["not_checked"]
    assert row["path"] == bare and "no SBOM is signed with it" in row["reason"]


def test_an_sbom_file_changed_on_the_server_is_not_trusted_i2(world: World) -> None:
    old, _new = fleet(world)
    sbom = world.open_offline("alice").targets("pump-x100").targets[sbom_target_path(old)]
    served = world.repository / target_file(sbom.path, sbom.hashes["sha256"])
    served.write_text(json.dumps(cyclonedx(("zlib", "1.2.13"))))  # hides the vulnerable zlib
    result = sbom_match(world, [ZLIB_ADVISORY])
    assert result.exit_code == 4, result.output
    assert f"not checked: {old} (1.0.0): the server's file of its SBOM" in result.output
    assert "is not the signed one" in result.output


def test_a_refused_advisories_file_exits_2_and_says_why(world: World) -> None:
    bad_json = sbom_match(world, "{nope")
    assert bad_json.exit_code == 2 and "the advisories file is not JSON" in bad_json.output
    cvss = {
        **ZLIB_ADVISORY,
        "affected": [
            {
                "package": {"ecosystem": "X", "name": "zlib"},
                "ranges": [{"type": "CVSS", "events": []}],
            }
        ],
    }
    unknown = sbom_match(world, [cvss])
    assert unknown.exit_code == 2 and "range type 'CVSS' is not supported" in unknown.output
    assert "Traceback" not in unknown.output + bad_json.output


def test_a_published_sbom_is_served_as_a_target_a_stock_ngclient_verifies_r41(
    world: World,
) -> None:
    sbom = cyclonedx(("zlib", "1.2.11"))
    path = publish(world, "1.0.0", sbom)
    updater = world.updater(world.tmp / "device")
    updater.refresh()
    release = updater.get_targetinfo(path)
    target = updater.get_targetinfo(sbom_target_path(path))
    assert release is not None and target is not None
    assert release.custom["sbom"]["sha256"] == target.hashes["sha256"]
    downloaded = updater.download_target(target, filepath=str(world.tmp / "sbom.json"))
    assert json.loads(Path(downloaded).read_bytes()) == sbom
