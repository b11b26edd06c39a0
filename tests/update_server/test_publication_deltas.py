"""Delta targets on the server: published beside their release, checked like any target (issue 13).

A delta is only another way to carry a release's bytes. The server publishes
one that ``fwsign add --delta-from`` signed beside its release, with its
uploaded bytes checked against its signed hashes like any target, and
refuses, by the very rule the signer applies (``repo_metadata.validation``
``delta-fields``, ``repo_metadata.repository_check`` ``delta-release``), a
delta whose field is malformed or that names a release the repository does
not hold.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import TargetFile

from fwcommon.delta import apply_delta
from repo_metadata.firmware import FirmwareInfo
from signer.authoring import DeltaSources, add_firmware
from signer.errors import SignerError
from signer.repository import OfflineRepository
from signer.signing import sign_roles
from tests.update_server.repo_world import World, repository_files

ENGINEER = "release_engineer"
BASE = "pump-x100/fw-1.0.0.bin"
IMAGE = "pump-x100/fw-1.1.0.bin"
DELTA = "pump-x100/fw-1.1.0.bin.from-1.0.0.bsdiff"


def _publish(world: World, files: dict[str, bytes]) -> None:
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    assert answer.status_code == 201, answer.get_json()
    release = answer.get_json()["id"]
    assert sorted(t["path"] for t in answer.get_json()["expected_targets"]) == sorted(files)
    for path, data in files.items():
        assert world.put("alice", release, path, data).status_code == 201
    assert world.publish("alice", release).status_code == 200


def _base_published(world: World) -> bytes:
    path, data = world.add_release("1.0.0")
    _publish(world, {path: data})
    builds = world.tmp / "builds" / "pump-x100"
    builds.mkdir(parents=True)
    (builds / "fw-1.0.0.bin").write_bytes(data)
    return data


def _add_with_delta(world: World, base: bytes) -> tuple[bytes, bytes]:
    """Release 1.1.0 (about 1% changed) with a delta from 1.0.0, signed 2 of 2."""
    new = bytearray(base)
    new[100:300] = bytes(200)
    image = world.tmp / "fw-1.1.0.bin"
    image.write_bytes(bytes(new))
    work = world.tmp / "deltas"
    info = FirmwareInfo(version="1.1.0", security_version=1, hardware_models=("pump-x100",))
    sources = DeltaSources(["1.0.0"], world.tmp / "builds", work)
    add_firmware(world.open_offline("alice"), image=image, name="fw", info=info, deltas=sources)
    sign_roles(world.open_offline("bob"), roles=["pump-x100"])
    return bytes(new), (work / DELTA).read_bytes()


def test_a_release_with_a_delta_is_published_and_a_device_rebuilds_the_image_from_it(
    world: World, tmp_path: Path
) -> None:
    """Issue 13: the delta is a signed target a stock TUF client finds and verifies (R13)."""
    base = _base_published(world)
    image, delta = _add_with_delta(world, base)
    assert len(delta) < len(image) // 5
    _publish(world, {IMAGE: image, DELTA: delta})

    updater = world.updater(tmp_path / "device")
    updater.refresh()
    info = updater.get_targetinfo(DELTA)
    assert info is not None
    assert info.custom["delta"]["image"] == IMAGE
    assert info.custom["delta"]["base"] == BASE
    downloaded = Path(updater.download_target(info))  # length and hashes checked by ngclient
    (tmp_path / "base.bin").write_bytes(base)
    out = io.BytesIO()
    apply_delta(tmp_path / "base.bin", downloaded, out, max_output=len(image))
    assert out.getvalue() == image


def test_a_delta_whose_uploaded_bytes_differ_from_its_signed_hashes_is_refused(
    world: World,
) -> None:
    """TUF arbitrary software attack: a delta's bytes are checked like any target's."""
    base = _base_published(world)
    _, delta = _add_with_delta(world, base)
    answer = world.upload("alice", {"pump-x100": world.role_json("pump-x100")})
    release = answer.get_json()["id"]
    tampered = bytearray(delta)
    tampered[-1] ^= 1
    refused = world.put("alice", release, DELTA, bytes(tampered))
    assert refused.status_code == 422, refused.get_json()
    assert world.put("alice", release, DELTA, delta).status_code == 201


def _refused_by_both(world: World, session: OfflineRepository, *, rule: str) -> dict[str, Any]:
    """The signer refuses the change by ``rule``; so does the server, given the same role."""
    offline, published = repository_files(world.offline), repository_files(world.repository)
    with pytest.raises(SignerError) as refused:
        session.commit()
    assert f"[rule: {rule}]" in str(refused.value)
    assert repository_files(world.offline) == offline
    world.login("eve", ENGINEER)
    answer = world.upload("eve", {"pump-x100": session.open("pump-x100").to_dict()})
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["rule"] == rule
    assert repository_files(world.repository) == published
    body: dict[str, Any] = answer.get_json()
    return body


def _with_delta(world: World, path: str, **fields: Any) -> OfflineRepository:
    session = world.open_offline("alice", "bob")
    delta = {
        "image": IMAGE,
        "base": BASE,
        "base_sha256": "0" * 64,
        "base_length": 4,
        "format": "bsdiff4",
        **fields,
    }
    target = TargetFile(4, {"sha256": "ab" * 32}, path, {"custom": {"delta": delta}})
    with session.edit_targets("pump-x100") as pump:
        pump.targets[path] = target
    return session


@pytest.mark.parametrize(
    "fields",
    [{"format": "xdelta3"}, {"base_length": True}, {"base_sha256": "XY"}, {"extra": 1}],
)
def test_a_malformed_delta_field_is_refused_by_signer_and_server_alike(
    world: World, fields: dict[str, Any]
) -> None:
    """delta-fields: a device must never read a delta it cannot match to its base (R13)."""
    _base_published(world)
    body = _refused_by_both(world, _with_delta(world, DELTA, **fields), rule="delta-fields")
    assert DELTA in body["detail"]


def test_a_delta_whose_image_the_repository_does_not_hold_is_refused_by_both(
    world: World,
) -> None:
    """delta-release: a delta of no signed release rebuilds nothing a device may install (R13)."""
    _base_published(world)
    session = _with_delta(world, DELTA)  # fw-1.1.0.bin is not signed
    body = _refused_by_both(world, session, rule="delta-release")
    assert "its image is not a target a device finds" in body["detail"]


def test_a_delta_naming_another_base_than_the_signed_one_is_refused_by_both(
    world: World,
) -> None:
    """delta-release: a delta against the wrong base would never rebuild the image (R13)."""
    base = _base_published(world)
    world.add_release("1.1.0", data=base + b"1.1.0", sign=1)
    session = _with_delta(world, DELTA, base_length=len(base) + 1)
    body = _refused_by_both(world, session, rule="delta-release")
    assert "signed SHA-256 and length of pump-x100/fw-1.0.0.bin" in body["detail"]
