"""One test per attack, named after it (python-tuf's habit).

Each runs against a device that already runs firmware 1.0.0 (security
version 1) installed from the simulated repository, then lets the
repository or the network misbehave, and checks the outcome, the event
logged, the trusted metadata left in the cache, and that the running
firmware, the slots and the boot environment are untouched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata, MetaFile, TargetFile

from client import update as update_module
from client.boot import boot
from client.directive import STANDALONE
from client.state import Floor, StateDir
from client.update import Outcome, UpdateResult, update
from tests.client.sim import MODEL, Sim, event_types, image_bytes, provision, sha256, tree

LINE_FILE = f"{MODEL}.json"


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    """A device running 1.0.0 (security version 1) from slot b."""
    sim.release("1.0.0", 1)
    state = provision(tmp_path / "device", sim)
    assert update(state, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(state, health_check=None, now=datetime.now(UTC))
    assert state.floor() == Floor(1, "1.0.0")
    return state


def cached_version(device: StateDir, role: str) -> int:
    data = (device.metadata_dir / f"{role}.json").read_bytes()
    return int(Metadata.from_bytes(data).signed.version)


@contextmanager
def untouched(device: StateDir, *cached: str) -> Iterator[None]:
    """Slots, boot environment and floors stay as they were, and so do ``cached`` roles.

    ``cached`` names the roles whose trusted version in the metadata cache
    the attack must not change (what ngclient rejected is never persisted).
    """
    versions = {role: cached_version(device, role) for role in cached}
    before = tree(device.slots_dir), device.bootenv(), device.floor()
    yield
    assert (tree(device.slots_dir), device.bootenv(), device.floor()) == before
    assert {role: cached_version(device, role) for role in cached} == versions


@contextmanager
def running_untouched(device: StateDir) -> Iterator[None]:
    """For refusals after the download began: the inactive slot may be cleared."""
    env, floor = device.bootenv(), device.floor()
    active = tree(device.slots_dir / "..").get(f"slots/slot_{env.active}.bin")
    yield
    assert (device.bootenv(), device.floor()) == (env, floor)
    assert device.slot_image(env.active).read_bytes() == active
    assert device.slot_record("a") is None, "the inactive slot is not bootable"


def refused(device: StateDir, sim: Sim, event: str) -> UpdateResult:
    result = update(device, sim.remote(), directive=STANDALONE)
    assert not result.ok
    assert result.event == event, result.message
    assert event_types(device)[-1] == event
    return result


# -- rollback (R25) -----------------------------------------------------------------


def test_rollback_of_timestamp(device: StateDir, sim: Sim) -> None:
    sim.publish()
    update(device, sim.remote(), directive=STANDALONE)
    trusted = cached_version(device, "timestamp")
    sim.replay(0)
    with untouched(device):
        refused(device, sim, "rollback_attack")
    assert cached_version(device, "timestamp") == trusted


def test_rollback_of_snapshot(device: StateDir, sim: Sim) -> None:
    trusted = cached_version(device, "snapshot")
    old = sim.files["/metadata/1.snapshot.json"]
    sim.forge_timestamp(MetaFile(1, len(old), {"sha256": sha256(old)}))
    with untouched(device):
        refused(device, sim, "rollback_attack")
    assert cached_version(device, "snapshot") == trusted


def test_rollback_of_targets(device: StateDir, sim: Sim) -> None:
    trusted = cached_version(device, "targets")

    def older_targets(snapshot: Any) -> None:
        snapshot.meta["targets.json"] = MetaFile(trusted - 1)

    sim.forge_snapshot(older_targets)
    with untouched(device):
        result = refused(device, sim, "rollback_attack")
    assert "targets.json" in result.message
    assert cached_version(device, "targets") == trusted


def test_rollback_of_the_product_line_role(device: StateDir, sim: Sim) -> None:
    trusted = cached_version(device, MODEL)

    def older_line(snapshot: Any) -> None:
        snapshot.meta[LINE_FILE] = MetaFile(trusted - 1)

    sim.forge_snapshot(older_line)
    with untouched(device):
        refused(device, sim, "rollback_attack")
    assert cached_version(device, MODEL) == trusted


def test_rollback_of_targets_listed_by_a_snapshot_after_the_cached_snapshot_is_lost(
    device: StateDir, sim: Sim
) -> None:
    """TUF rollback: a snapshot naming an older targets version than the one signed.

    With no trusted snapshot to compare with (its cached copy lost), ngclient
    catches it only when the file served under the old name (a mirror that
    keeps current files only) is newer than the snapshot says: still a
    rollback of the listing, not a stale file mixed in.
    """
    trusted = cached_version(device, "targets")
    current = sim.files[f"/metadata/{trusted}.targets.json"]

    def older_targets(snapshot: Any) -> None:
        snapshot.meta["targets.json"] = MetaFile(trusted - 1)

    sim.forge_snapshot(older_targets)
    sim.override[f"/metadata/{trusted - 1}.targets.json"] = current
    (device.metadata_dir / "snapshot.json").unlink()
    with untouched(device, "targets"):
        result = refused(device, sim, "rollback_attack")
    assert f"targets v{trusted - 1}, got v{trusted}" in result.message


def test_rollback_of_a_role_dropped_from_the_snapshot(device: StateDir, sim: Sim) -> None:
    """TUF rollback (5.5.5): a snapshot that no longer lists a role it listed."""

    def drop_the_line(snapshot: Any) -> None:
        del snapshot.meta[LINE_FILE]

    sim.forge_snapshot(drop_the_line)
    with untouched(device, "snapshot", MODEL):
        result = refused(device, sim, "rollback_attack")
    assert LINE_FILE in result.message


def test_rollback_of_root(device: StateDir, sim: Sim) -> None:
    sim.override["/metadata/2.root.json"] = sim.root(1)
    with untouched(device):
        refused(device, sim, "rollback_attack")
    assert cached_version(device, "root") == 1


# -- freeze, mix-and-match -------------------------------------------------------------


def test_freeze_attack_expired_timestamp(device: StateDir, sim: Sim) -> None:
    trusted = cached_version(device, "timestamp")
    sim.publish(timestamp_expires=timedelta(minutes=-1))
    with untouched(device):
        result = refused(device, sim, "freeze_attack")
    assert "timestamp.json is expired" in result.message
    assert cached_version(device, "timestamp") == trusted


def test_freeze_attack_expired_snapshot(device: StateDir, sim: Sim) -> None:
    sim.publish(snapshot_expires=timedelta(minutes=-1))
    with untouched(device, "snapshot"):
        refused(device, sim, "freeze_attack")


def test_freeze_attack_expired_product_line_role(device: StateDir, sim: Sim) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=200)
    with sim.repo.edit(MODEL, "alice", "bob", now=long_ago):
        pass
    sim.publish()
    with untouched(device, MODEL):
        refused(device, sim, "freeze_attack")


def test_mix_and_match_of_a_role_and_the_snapshot(device: StateDir, sim: Sim) -> None:
    old_line = sim.files[f"/metadata/{cached_version(device, MODEL)}.{LINE_FILE}"]
    sim.release("1.1.0", 1)
    current = cached_version(device, MODEL) + 1
    sim.override[f"/metadata/{current}.{LINE_FILE}"] = old_line
    with untouched(device, MODEL):
        refused(device, sim, "mix_and_match")


def test_mix_and_match_of_snapshot_and_timestamp(device: StateDir, sim: Sim) -> None:
    sim.release("1.1.0", 1)
    listed = sim.served("/metadata/timestamp.json").signed.snapshot_meta.version
    sim.override[f"/metadata/{listed}.snapshot.json"] = sim.files["/metadata/1.snapshot.json"]
    with untouched(device, "snapshot"):
        refused(device, sim, "mix_and_match")


# -- signatures ---------------------------------------------------------------------------


def _redirect_to(sim: Sim, path: str, evil: bytes) -> Any:
    """An edit that points ``path`` at ``evil`` bytes."""

    def edit(line: Any) -> None:
        line.targets[path] = TargetFile(len(evil), {"sha256": sha256(evil)}, path)
        line.targets[path].unrecognized_fields = {"custom": line_custom(sim, path)}

    return edit


def line_custom(sim: Sim, path: str) -> Any:
    role = Metadata.from_bytes((sim.path / "metadata" / LINE_FILE).read_bytes()).signed
    return role.targets[path].custom


def test_bad_signature_on_a_tampered_product_line_role(device: StateDir, sim: Sim) -> None:
    path = sim.release("1.1.0", 1)
    evil = image_bytes("evil")
    version = cached_version(device, MODEL) + 1
    sim.resign(f"/metadata/{version}.{LINE_FILE}", _redirect_to(sim, path, evil), keep=True)
    with untouched(device):
        refused(device, sim, "bad_signature")
    assert cached_version(device, MODEL) == version - 1


def test_threshold_not_met(device: StateDir, sim: Sim) -> None:
    sim.release("1.1.0", 1, signers=("alice",))  # the line needs alice and bob
    with untouched(device, MODEL):
        result = refused(device, sim, "bad_signature")
    assert MODEL in result.message


def test_root_rotation_not_signed_by_the_old_root(device: StateDir, sim: Sim) -> None:
    mallory = sim.keys["carol"]
    root = Metadata.from_bytes(sim.root(1))
    signed = root.signed
    signed.version = 2
    for keyid in list(signed.roles["root"].keyids):
        signed.revoke_key(keyid, "root")
    signed.add_key(mallory.public_key, "root")
    signed.roles["root"].threshold = 1
    root.signatures.clear()
    root.sign(mallory)
    root.sign(sim.keys["officer1"], append=True)  # one of the old two is not enough
    sim.override["/metadata/2.root.json"] = root.to_bytes()
    with untouched(device, "root"):
        refused(device, sim, "bad_signature")
    assert not (device.metadata_dir / "root_history" / "2.root.json").exists()


def test_bad_signature_the_same_signature_twice_under_one_key_id(
    device: StateDir, sim: Sim
) -> None:
    """TUF arbitrary software: one key's signature counted twice toward a 2-of-2 threshold."""
    sim.release("1.1.0", 1)
    url = f"/metadata/{cached_version(device, MODEL) + 1}.{LINE_FILE}"
    data = json.loads(sim.files[url])
    data["signatures"] = [data["signatures"][0]] * 2
    sim.override[url] = json.dumps(data).encode()
    with untouched(device, MODEL):
        result = refused(device, sim, "bad_signature")
    assert "Multiple signatures found for keyid" in result.message


def test_key_revocation(device: StateDir, sim: Sim) -> None:
    sim.repo.rotate(MODEL, add=["carol"], remove=["alice"], signers=["manager"])
    sim.publish()
    path = sim.release("1.1.0", 1, signers=("bob",))
    version = Metadata.from_bytes((sim.path / "metadata" / LINE_FILE).read_bytes()).signed.version
    sim.resign(f"/metadata/{version}.{LINE_FILE}", lambda _: None, "alice", keep=True)
    with untouched(device, MODEL):
        refused(device, sim, "bad_signature")
    assert path not in (device.metadata_dir / LINE_FILE).read_text()


# -- the firmware's bytes ------------------------------------------------------------------


def test_wrong_hash(device: StateDir, sim: Sim) -> None:
    path = sim.release("1.1.0", 1)
    good = sim.images[path]
    sim.override[sim.target_url(path)] = bytes(len(good))
    with running_untouched(device):
        refused(device, sim, "bad_hash")
    assert device.slot_image("a").read_bytes() == b"", "the bad bytes are discarded"


def test_wrong_length_longer(device: StateDir, sim: Sim) -> None:
    path = sim.release("1.1.0", 1)
    sim.override[sim.target_url(path)] = sim.images[path] + b"\0"
    with running_untouched(device):
        refused(device, sim, "too_long")


def test_wrong_length_shorter_never_installs(device: StateDir, sim: Sim) -> None:
    """TUF wrong length: a firmware one byte short is a length failure, not a network one."""
    path = sim.release("1.1.0", 1)
    sim.override[sim.target_url(path)] = sim.images[path][:-1]
    with running_untouched(device):
        for _ in range(2):
            result = refused(device, sim, "bad_hash")
            assert result.outcome is Outcome.REFUSED
    assert "ends at byte 39999 of the 40000 signed" in result.message
    assert device.slot_image("a").read_bytes() == b"", "the short bytes are discarded"


def _sign_length(sim: Sim, device: StateDir, path: str, length: int) -> None:
    """Serve the product line re-signed (alice and bob) with ``path`` claiming ``length``."""

    def edit(line: Any) -> None:
        line.targets[path].length = length

    url = f"/metadata/{cached_version(device, MODEL) + 1}.{LINE_FILE}"
    sim.resign(url, edit, "alice", "bob")


def test_a_validly_signed_16_tib_firmware_is_refused_before_the_slot_is_touched(
    device: StateDir, sim: Sim
) -> None:
    """TUF endless data, signed: a length no slot holds is refused, nothing downloaded."""
    path = sim.release("1.1.0", 1)
    _sign_length(sim, device, path, 16 * 1024**4)
    with untouched(device):
        result = refused(device, sim, "insufficient_space")
    assert "a slot holds" in result.message
    assert sim.target_url(path) not in sim.fetched()


def test_a_firmware_larger_than_the_free_storage_is_refused_before_the_slot_is_touched(
    tmp_path: Path, sim: Sim
) -> None:
    """TUF endless data, signed: a length the slot may hold but the disk cannot."""
    device = provision(tmp_path / "device", sim, slot_capacity=1024**6)
    sim.release("1.0.0", 1)
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    path = sim.release("1.1.0", 1)
    _sign_length(sim, device, path, 1024**6)  # 1 EiB: more than any test machine has free
    with untouched(device):
        result = refused(device, sim, "insufficient_space")
    assert "free for the slot" in result.message
    assert sim.target_url(path) not in sim.fetched()


def test_endless_data_for_a_target(device: StateDir, sim: Sim) -> None:
    path = sim.release("1.1.0", 1)
    sim.endless.add(sim.target_url(path))
    with running_untouched(device):
        refused(device, sim, "too_long")


def test_endless_data_for_metadata(device: StateDir, sim: Sim) -> None:
    sim.endless.add("/metadata/timestamp.json")
    with untouched(device, "timestamp"):
        refused(device, sim, "too_long")


def test_slow_retrieval_of_a_target(device: StateDir, sim: Sim) -> None:
    path = sim.release("1.1.0", 1)
    sim.slow.add(sim.target_url(path))
    with running_untouched(device):
        refused(device, sim, "slow_retrieval")


def test_slow_retrieval_of_metadata(device: StateDir, sim: Sim) -> None:
    sim.slow.add("/metadata/timestamp.json")
    with untouched(device, "timestamp"):
        refused(device, sim, "slow_retrieval")


def test_file_swapped_between_verification_and_install(
    device: StateDir, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.release("1.1.0", 1)
    real = update_module.download_into

    def then_swap(writer: Any, **kwargs: Any) -> None:
        real(writer, **kwargs)
        image = device.slot_image(writer.slot)
        data = bytearray(image.read_bytes())
        data[0] ^= 0xFF
        image.write_bytes(bytes(data))

    monkeypatch.setattr(update_module, "download_into", then_swap)
    with running_untouched(device):
        refused(device, sim, "bad_hash")


# -- the install policy -------------------------------------------------------------------


def test_validly_signed_downgrade(device: StateDir, sim: Sim) -> None:
    sim.release("2.0.0", 3)
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    sim.release("2.1.0", 2)  # newer version, older security version
    with untouched(device):
        result = refused(device, sim, "firmware_downgrade")
    assert "below this device's floor 3" in result.message


def test_wrong_hardware(device: StateDir, sim: Sim) -> None:
    sim.release("3.0.0", 1, models=("pump-x200",), path=f"{MODEL}/fw-3.0.0.bin")
    with untouched(device):
        result = refused(device, sim, "hardware_mismatch")
    assert "pump-x200" in result.message


def test_cache_wipe_keeps_the_floors(device: StateDir, sim: Sim) -> None:
    sim.release("3.0.0", 1)  # a release with an old security version, later withdrawn
    withdrawn = len(sim.published) - 1
    sim.release("2.0.0", 2)
    sim.repo.remove_target(MODEL, f"{MODEL}/fw-3.0.0.bin", "alice", "bob")
    del sim.images[f"{MODEL}/fw-3.0.0.bin"]
    sim.publish()
    sim.publish()
    # The device is at 2.0.0 (security 2) before the cache is lost.
    device.write_floor(Floor(2, "2.0.0"))
    time_floor = device.time_floor()
    shutil.rmtree(device.metadata_dir)
    sim.replay(withdrawn)  # still unexpired, validly signed: only the floors stop it
    with untouched(device):
        refused(device, sim, "firmware_downgrade")
    assert device.floor() == Floor(2, "2.0.0")
    assert device.time_floor() is not None and time_floor is not None
    assert device.time_floor() >= time_floor


def test_clock_set_back(device: StateDir, sim: Sim) -> None:
    sim.release("1.1.0", 1)
    device.raise_time_floor(datetime.now(UTC) + timedelta(days=3))
    floor = device.time_floor()
    with untouched(device):
        result = refused(device, sim, "freeze_attack")
    assert "before the trusted time" in result.message
    assert event_types(device)[-2:] == ["clock_skew", "freeze_attack"]
    assert device.time_floor() == floor, "a clock behind the floor never moves it"
