"""Delta updates on the device (issue 13, ``client.delta``): a delta only carries bytes.

Each test names the rule (X1 to X6 of ``client.delta``), the ANSM
recommendation or the attack it answers. The repository is the client's
simulator (python-tuf's Metadata API, published as the server does); deltas
are made with ``fwcommon.delta.make_delta`` and signed in the product line
with the contract's ``delta`` field, written out here field by field.
"""

from __future__ import annotations

import random
import shutil
import sys
from collections import namedtuple
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from bsdiff4 import core as bsdiff_core  # what fwcommon.delta patches with
from tuf.api.metadata import TargetFile

from client import delta as delta_module
from client import slots
from client.boot import boot
from client.bundle_source import update_from_bundle
from client.directive import STANDALONE
from client.integrity import verify_slot
from client.policy import Candidate
from client.readiness import Guard, ReadyCheck
from client.state import SlotRecord, StateDir
from client.update import Outcome, UpdateResult, update
from fwcommon import delta as fwcommon_delta
from fwcommon.delta import make_delta
from repo_metadata.firmware import FirmwareInfo
from tests.client.bundles import make_bundle, offline_device
from tests.client.helpers_state import assert_consistent
from tests.client.sim import CHUNK, MODEL, Sim, event_types, provision, sha256
from tests.client.test_power import PowerCut, fuse
from tests.client.tuf_repo import firmware_custom

SIZE = 256 * 1024
BLOCK = 64
BASE_PATH = f"{MODEL}/fw-1.0.0.bin"  # release 1.0.0, what ``device`` runs


def base_image() -> bytes:
    return random.Random(1).randbytes(SIZE)  # noqa: S311  test data, not secrets


def evolve(image: bytes, *, seed: int, share: float = 0.01) -> bytes:
    """``image`` with ``share`` of its bytes changed, in scattered blocks of ``BLOCK``."""
    rng = random.Random(seed)  # noqa: S311  test data, not secrets
    data = bytearray(image)
    for _block in range(int(len(image) * share) // BLOCK):
        start = rng.randrange(0, len(image) - BLOCK)
        data[start : start + BLOCK] = rng.randbytes(BLOCK)
    return bytes(data)


def sign_release(sim: Sim, version: str, security_version: int, image: bytes, **custom: Any) -> str:
    models = custom.pop("models", (MODEL,))
    path = f"{MODEL}/fw-{version}.bin"
    info = firmware_custom(version, security_version, models, **custom)
    sim.repo.add_target(MODEL, path, image, info, "alice", "bob")
    sim.images[path] = image
    sim.publish()
    return path


def sign_from_base(
    sim: Sim,
    tmp_path: Path,
    image_path: str,
    *,
    made_from: bytes,
    made_to: bytes,
    role: str = MODEL,
    signers: tuple[str, ...] = ("alice", "bob"),
) -> str:
    """Sign ``<image_path>.from-1.0.0.bsdiff``: ``made_from`` to ``made_to``, made in ``tmp_path``.

    Its ``delta`` field names 1.0.0 (``BASE_PATH``) with ``made_from``'s
    SHA-256 and length as the base.
    """
    made = tmp_path / "made"
    made.mkdir(parents=True, exist_ok=True)
    (made / "old").write_bytes(made_from)
    (made / "new").write_bytes(made_to)
    make_delta(made / "old", made / "new", made / "delta")
    path = f"{image_path}.from-1.0.0.bsdiff"
    data = (made / "delta").read_bytes()
    publish_delta(
        sim, path, data, image_path=image_path, base=made_from, role=role, signers=signers
    )
    return path


def publish_delta(
    sim: Sim,
    path: str,
    data: bytes,
    *,
    image_path: str,
    base: bytes,
    role: str = MODEL,
    signers: tuple[str, ...] = ("alice", "bob"),
) -> None:
    """Sign ``data`` at ``path`` in ``role``: its ``delta`` field names 1.0.0 as ``base``."""
    custom = {
        "delta": {
            "image": image_path,
            "base": BASE_PATH,
            "base_sha256": sha256(base),
            "base_length": len(base),
            "format": "bsdiff4",
        }
    }
    sim.repo.add_target(role, path, data, custom, *signers)
    sim.images[path] = data
    sim.publish()


def installed_detail(device: StateDir) -> dict[str, Any]:
    entries = [e for e in device.events.entries() if e["type"] == "installed"]
    assert entries, "nothing installed"
    detail: dict[str, Any] = entries[-1]["detail"]
    return detail


def delta_failures(device: StateDir) -> list[dict[str, Any]]:
    return [e["detail"] for e in device.events.entries() if e["type"] == "delta_failed"]


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def base() -> bytes:
    return base_image()


@pytest.fixture
def new() -> bytes:
    return evolve(base_image(), seed=2)


@pytest.fixture
def device(tmp_path: Path, sim: Sim, base: bytes) -> StateDir:
    """A device running release 1.0.0 (``base``) from slot b, committed."""
    state = provision(tmp_path / "device", sim)
    sign_release(sim, "1.0.0", 1, base)
    result = update(state, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED, result.message
    boot(state, health_check=None, now=datetime.now(UTC))
    assert state.bootenv().active == "b"
    return state


@pytest.fixture
def release(sim: Sim, new: bytes) -> str:
    """Release 1.1.0 (``new``), its full image signed."""
    return sign_release(sim, "1.1.0", 2, new)


@pytest.fixture
def matching_delta(sim: Sim, tmp_path: Path, base: bytes, new: bytes, release: str) -> str:
    """The delta from 1.0.0 (what the device runs) to 1.1.0."""
    return sign_from_base(sim, tmp_path, release, made_from=base, made_to=new)


def run(device: StateDir, sim: Sim) -> UpdateResult:
    return update(device, sim.remote(), directive=STANDALONE)


def assert_installed_full(device: StateDir, sim: Sim, release: str, result: UpdateResult) -> None:
    """The full image was downloaded, and the slot holds exactly the signed image."""
    assert result.outcome is Outcome.INSTALLED, result.message
    assert sim.fetched(sim.target_url(release)), "the full image was not downloaded"
    assert device.slot_image("a").read_bytes() == sim.images[release]
    assert verify_slot(device, "a").ok
    detail = installed_detail(device)
    assert detail["transfer"] == "full"
    assert detail["downloaded"] >= len(sim.images[release])
    assert f"{detail['downloaded']:,} bytes downloaded, full image" in result.message


# -- X1: which delta -------------------------------------------------------------------


def test_a_delta_from_the_running_release_carries_the_update_in_far_fewer_bytes(
    device: StateDir, sim: Sim, release: str, matching_delta: str
) -> None:
    """X1-X4: the delta is preferred; the slot holds the signed image byte for byte (R29)."""
    result = run(device, sim)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert result.candidate is not None and result.candidate.path == release
    assert sim.fetched(sim.target_url(release)) == [], "the full image was downloaded"
    assert len(sim.fetched(sim.target_url(matching_delta))) == 1
    assert device.slot_image("a").read_bytes() == sim.images[release]
    assert verify_slot(device, "a").ok
    assert device.bootenv().pending == "a"
    detail = installed_detail(device)
    assert detail["transfer"] == "delta"
    assert detail["delta"] == matching_delta
    assert detail["downloaded"] == len(sim.images[matching_delta]) < SIZE // 10
    assert f"{detail['downloaded']:,} bytes downloaded, by delta {matching_delta}" in result.message
    assert delta_failures(device) == []
    assert not device.slot_progress("a").exists()
    assert [p.name for p in device.slots_dir.glob("*.delta")] == []
    assert_consistent(device)


def test_a_delta_from_another_base_is_not_used_and_is_not_a_failure(
    device: StateDir, sim: Sim, tmp_path: Path, release: str, new: bytes
) -> None:
    """X1: the running firmware's SHA-256 differs from the delta's base: full image (R13)."""
    other = evolve(base_image(), seed=3)
    path = sign_from_base(sim, tmp_path, release, made_from=other, made_to=new)
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    assert sim.fetched(sim.target_url(path)) == [], "a delta for another base was downloaded"
    assert delta_failures(device) == []


def test_a_delta_signed_outside_the_releases_role_is_not_used(
    device: StateDir, sim: Sim, tmp_path: Path, base: bytes, new: bytes, release: str
) -> None:
    """X1: a delta the top-level targets role signs, not the product line: full image (R13, R58)."""
    path = sign_from_base(
        sim, tmp_path, release, made_from=base, made_to=new, role="targets", signers=("manager",)
    )
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    assert sim.fetched(sim.target_url(path)) == []


def test_a_delta_signed_by_a_sibling_role_the_walk_visits_after_the_release_is_not_used(
    device: StateDir, sim: Sim, tmp_path: Path, base: bytes, new: bytes, release: str
) -> None:
    """X1: only the release's role or a role it delegates to may sign its delta.

    The line's delegation made non-terminating and a second role delegated
    the same paths (carol's key): ngclient's walk visits the line, finds no
    delta there and goes on to the sibling, which signs one. The line is
    among the roles visited but not on the delta's delegation path, so the
    delta is not the same signers' say: the full image (R13, R58).
    """
    with sim.repo.edit("targets", "manager") as top:
        assert top.delegations is not None and top.delegations.roles is not None
        top.delegations.roles[MODEL].terminating = False
    sim.repo.delegate_line(
        "sibling", prefix=f"{MODEL}/", keys=("carol",), threshold=1, bin_bits=None,
        signers=("manager",),
    )  # fmt: skip
    path = sign_from_base(
        sim, tmp_path, release, made_from=base, made_to=new, role="sibling", signers=("carol",)
    )
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    assert sim.fetched(sim.target_url(path)) == [], "the sibling's delta was downloaded"
    assert delta_failures(device) == []


def test_a_delta_is_never_installed_on_its_own(
    device: StateDir, sim: Sim, tmp_path: Path, base: bytes, new: bytes
) -> None:
    """A delta target is no install candidate: with no full image signed, nothing installs (R13)."""
    path = sign_from_base(sim, tmp_path, f"{MODEL}/fw-1.1.0.bin", made_from=base, made_to=new)
    result = run(device, sim)
    assert result.outcome is Outcome.UP_TO_DATE, result.message
    assert sim.fetched(sim.target_url(path)) == []
    assert device.bootenv().pending is None


@pytest.mark.parametrize(
    ("security_version", "custom", "event"),
    [
        (2, {"models": ("pump-y200",)}, "hardware_mismatch"),
        (0, {}, "firmware_downgrade"),
    ],
)
def test_a_delta_never_installs_a_release_the_policy_refuses(
    device: StateDir,
    sim: Sim,
    tmp_path: Path,
    base: bytes,
    new: bytes,
    security_version: int,
    custom: dict[str, Any],
    event: str,
) -> None:
    """R25, hardware model: the choice is made on the full image; its delta changes nothing."""
    release = sign_release(sim, "1.1.0", security_version, new, **custom)
    path = sign_from_base(sim, tmp_path, release, made_from=base, made_to=new)
    result = run(device, sim)
    assert result.outcome is not Outcome.INSTALLED
    assert event in event_types(device)
    assert sim.fetched(sim.target_url(path)) == []
    assert device.bootenv().pending is None
    assert not device.slot_image("a").exists()


# -- X5: any failure falls back to the full image -----------------------------------------


def test_a_corrupted_delta_fails_tufs_hash_check_and_the_full_image_installs(
    device: StateDir, sim: Sim, release: str, matching_delta: str
) -> None:
    """TUF arbitrary-package attack on the delta: bad hash, delta_failed, full image (R13)."""
    url = sim.target_url(matching_delta)
    data = bytearray(sim.images[matching_delta])
    data[len(data) // 2] ^= 0xFF
    sim.override[url] = bytes(data)
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert failure["delta"] == matching_delta
    assert failure["target"] == release
    assert "hash" in failure["reason"].lower()
    types = event_types(device)
    assert types.index("delta_failed") < len(types) - 1 - types[::-1].index("installed")


def test_an_unreachable_delta_falls_back_to_the_full_image(
    device: StateDir, sim: Sim, release: str, matching_delta: str
) -> None:
    """X5: a download error on the delta (connection cut), then the full image."""
    sim.cut[sim.target_url(matching_delta)] = 100
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert "downloading" in failure["reason"]


def test_a_signed_delta_rebuilding_other_bytes_is_never_pending(
    device: StateDir, sim: Sim, tmp_path: Path, base: bytes, release: str
) -> None:
    """X4: a validly signed delta whose output is not the signed image: delta_failed, full.

    The mismatch is caught before the slot is checkpointed or sealed: the
    only ``installed`` entry is the full image's, after the failure.
    Answers R13; TUF arbitrary software attack.
    """
    path = sign_from_base(sim, tmp_path, release, made_from=base, made_to=evolve(base, seed=4))
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert failure["delta"] == path
    assert "not" in failure["reason"] and "as signed" in failure["reason"]
    types = event_types(device)
    assert types.count("installed") == 2  # 1.0.0 at provisioning, then 1.1.0 in full
    assert types[-2:] == ["delta_failed", "installed"]


def test_a_running_slot_decayed_since_it_was_verified_is_not_patched_r29(
    device: StateDir, sim: Sim, release: str, matching_delta: str
) -> None:
    """X3 (R29): the running slot's bytes no longer match the delta's base: full image."""
    image = device.slot_image("b")
    data = bytearray(image.read_bytes())
    data[1000] ^= 0xFF
    image.write_bytes(bytes(data))
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert "running slot no longer holds" in failure["reason"]
    assert failure["delta"] == matching_delta


def test_a_malformed_delta_fails_to_apply_and_the_full_image_installs(
    device: StateDir, sim: Sim, tmp_path: Path, base: bytes, release: str
) -> None:
    """X5: a validly signed delta that is not a bsdiff4 patch (DeltaError): full image (R13)."""
    path = f"{release}.from-1.0.0.bsdiff"
    data = b"NOTBSDIFF" * 100
    publish_delta(sim, path, data, image_path=release, base=base)
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert "BSDIFF40" in failure["reason"]


def test_a_device_without_memory_for_the_delta_falls_back_to_the_full_image(
    device: StateDir, sim: Sim, release: str, matching_delta: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X5 (ADR 0008, R13): too little memory to apply the delta is delta_failed, then full.

    bsdiff holds the base, the blocks and the image at once; a device short
    of memory must still update (the full image streams into the slot), not
    fail the session at every poll.
    """

    class CoreWithoutMemory:
        decode_int64 = staticmethod(bsdiff_core.decode_int64)

        @staticmethod
        def patch(*_args: object) -> bytes:
            raise MemoryError

    monkeypatch.setattr(fwcommon_delta, "_bsdiff_core", CoreWithoutMemory)
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert failure["delta"] == matching_delta
    assert "not enough memory" in failure["reason"]
    assert device.bootenv().active == "b"


# -- X3: a stop request -------------------------------------------------------------------


def test_a_stop_request_stops_the_delta_download_as_it_stops_the_full_one_r52(
    device: StateDir, sim: Sim, tmp_path: Path, base: bytes
) -> None:
    """X3 (R52): the agent's stop ends the delta's download at once, like the full image's.

    The stop is no delta failure: nothing logs ``delta_failed`` and no full
    download follows. The session ends as a stopped full download does (the
    download's stop, logged ``unreachable``, exit FAILED); the running slot
    is untouched, the inactive one unbootable with nothing to resume, the
    partial delta removed; the next session installs by delta.
    """
    image = evolve(base, seed=3, share=0.3)  # a delta of several chunks, smaller than the image
    release = sign_release(sim, "1.1.0", 2, image)
    path = sign_from_base(sim, tmp_path, release, made_from=base, made_to=image)
    assert 2 * CHUNK < len(sim.images[path]) < len(image)
    delta_url = sim.target_url(path)
    stopped = update(
        device,
        sim.remote(),
        directive=STANDALONE,
        should_stop=lambda: bool(sim.fetched(delta_url)),  # asked once the delta's bytes flow
    )
    assert (stopped.outcome, stopped.event) == (Outcome.FAILED, "unreachable"), stopped.message
    assert f"stopped after {CHUNK} bytes of " in stopped.message
    assert stopped.message.endswith(delta_url)
    assert event_types(device)[-1] == "unreachable"
    assert delta_failures(device) == []
    assert len(sim.fetched(delta_url)) == 1
    assert sim.fetched(sim.target_url(release)) == [], "a full download followed the stop"
    assert (device.bootenv().active, device.bootenv().pending) == ("b", None)
    assert device.slot_record("a") is None
    assert device.slot_image("a").stat().st_size == 0
    assert [p.name for p in device.slots_dir.glob("*.delta")] == []
    result = run(device, sim)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert installed_detail(device)["transfer"] == "delta"
    assert device.slot_image("a").read_bytes() == image
    assert delta_failures(device) == []
    assert_consistent(device)


# -- X6: power cuts -----------------------------------------------------------------------


@pytest.fixture
def cut_while_applying(monkeypatch: pytest.MonkeyPatch) -> None:
    """The power goes once half the rebuilt image has reached the slot."""
    real = fwcommon_delta.apply_delta  # what client.delta imports

    def half_then_cut(base: Path, delta: Path, out: BinaryIO, *, max_output: int) -> int:
        class Half:
            def write(self, data: bytes) -> int:
                out.write(data[: len(data) // 2])
                raise PowerCut("power cut while applying the delta")

        return real(base, delta, Half(), max_output=max_output)  # type: ignore[arg-type]

    monkeypatch.setattr(delta_module, "apply_delta", half_then_cut)


def test_a_power_cut_while_applying_leaves_the_running_slot_and_the_next_session_installs(
    device: StateDir,
    sim: Sim,
    release: str,
    matching_delta: str,
    monkeypatch: pytest.MonkeyPatch,
    cut_while_applying: None,
) -> None:
    """X6 (R24): half an image in the inactive slot is never booted; the next update installs."""
    running = device.slot_image("b").read_bytes()
    with pytest.raises(PowerCut):
        run(device, sim)
    monkeypatch.undo()  # the power is back
    assert device.slot_record("a") is None, "a half-written slot has a record"
    assert boot(device, health_check=None, now=datetime.now(UTC)).slot == "b"
    assert device.slot_image("b").read_bytes() == running
    assert_consistent(device)
    result = run(device, sim)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert device.slot_image("a").read_bytes() == sim.images[release]
    assert installed_detail(device)["transfer"] == "delta"
    assert_consistent(device)


def test_a_power_cut_at_each_durable_step_of_a_delta_install_x6(
    device: StateDir, sim: Sim, release: str, matching_delta: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """X6 (R24, R33): cut at every durable step from the delta's slot opening to pending.

    After each cut the device boots a verified image (1.0.0, or 1.1.0 once
    pending), and the update then completes: the running slot is never
    changed by a delta, and nothing left behind wedges the next session.
    """
    template = device.root
    began: list[int] = []
    real_carry = delta_module.carry

    def noted(counter: Any) -> Callable[..., int | None]:
        def carry(*args: Any, **kwargs: Any) -> int | None:
            began.append(counter.steps)
            return real_carry(*args, **kwargs)

        return carry

    counting = fresh(template, "count")
    with fuse(None) as counter:
        monkeypatch.setattr(delta_module, "carry", noted(counter))
        assert run(counting, sim).outcome is Outcome.INSTALLED
    monkeypatch.undo()
    assert installed_detail(counting)["transfer"] == "delta"
    total, first = counter.steps, began[0] + 1
    assert total - first > 10, "the delta install should have many durable steps"
    for k in range(first, total + 1):
        state = fresh(template, f"cut-{k}")
        with pytest.raises(PowerCut), fuse(k):
            run(state, sim)
        assert_consistent(state)
        booted = boot(state, health_check=None, now=datetime.now(UTC))
        assert verify_slot(state, booted.slot).ok, f"step {k}"
        if state.bootenv().active == "b":
            assert state.slot_image("b").read_bytes() == sim.images[BASE_PATH]
            result = run(state, sim)
            assert result.outcome is Outcome.INSTALLED, f"step {k}: {result.message}"
            boot(state, health_check=None, now=datetime.now(UTC))
        assert state.bootenv().active == "a", f"step {k}"
        assert state.slot_image("a").read_bytes() == sim.images[release], f"step {k}"
        assert_consistent(state)
        shutil.rmtree(state.root)


def fresh(template: Path, name: str) -> StateDir:
    path = template.parent / name
    shutil.copytree(template, path)
    return StateDir(path)


_Usage = namedtuple("_Usage", "total used free")


@pytest.mark.parametrize("signed_delta", [False, True])
def test_a_delta_file_left_by_a_power_cut_does_not_refuse_the_next_install_for_room_x6(
    device: StateDir,
    sim: Sim,
    tmp_path: Path,
    base: bytes,
    new: bytes,
    release: str,
    monkeypatch: pytest.MonkeyPatch,
    signed_delta: bool,
) -> None:
    """X6 (R24, R13): a cut delta download is removed before the slot's room is counted.

    The storage has room for the running image, the next one and the
    reserve, no more: the leftover, counted as used, refused every later
    install (``insufficient_space``) whether or not a delta was signed.
    """
    if signed_delta:
        sign_from_base(sim, tmp_path, release, made_from=base, made_to=new)
    (device.slots_dir / "slot_a.delta").write_bytes(bytes(SIZE // 2))  # the cut download
    room = 2 * SIZE + slots.RESERVE + 1024

    def usage(_path: object) -> Any:
        used = sum(f.stat().st_size for f in device.slots_dir.iterdir() if f.is_file())
        return _Usage(room, used, room - used)

    monkeypatch.setattr("client.slots.shutil.disk_usage", usage)
    result = run(device, sim)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert "insufficient_space" not in event_types(device)
    assert device.slot_image("a").read_bytes() == sim.images[release]
    assert installed_detail(device)["transfer"] == ("delta" if signed_delta else "full")
    assert [p.name for p in device.slots_dir.glob("*.delta")] == []


# -- X1, the pure choice ------------------------------------------------------------------


def _offered(
    *, image: str = "m/fw-1.1.0.bin", length: int = 100, roles: tuple[str, ...] = ("targets", "m")
) -> delta_module.OfferedDelta:
    custom = {
        "delta": {
            "image": image,
            "base": "m/fw-1.0.0.bin",
            "base_sha256": "a" * 64,
            "base_length": 5000,
            "format": "bsdiff4",
        }
    }
    path = f"{image}.from-1.0.0.bsdiff"
    target = TargetFile(length, {"sha256": "b" * 64}, path, {"custom": custom})
    return delta_module.OfferedDelta(target, roles)


def _release(path: str = "m/fw-1.1.0.bin", length: int = 6000) -> Candidate:
    info = FirmwareInfo(version="1.1.0", security_version=1, hardware_models=("m",))
    return Candidate(path, length, "c" * 64, info, "m")


def _running(**changes: Any) -> SlotRecord:
    record = SlotRecord("m/fw-1.0.0.bin", 5000, "a" * 64, "1.0.0", 1, "m", "2026-01-01T00:00:00")
    return replace(record, **changes)


def test_choose_takes_the_delta_that_names_the_release_and_the_running_record() -> None:
    """X1: choose takes the delta naming the chosen release and the running slot's record."""
    plan = delta_module.choose(_offered(), release=_release(), running=_running())
    assert plan is not None and plan.path == "m/fw-1.1.0.bin.from-1.0.0.bsdiff"


@pytest.mark.parametrize(
    ("offered", "release", "running"),
    [
        (None, _release(), _running()),  # nothing signed at the delta's path
        (_offered(), _release(), None),  # no record of what runs
        (_offered(), _release(), _running(failed=True)),  # what runs failed its trial
        (_offered(), _release(), _running(sha256="d" * 64)),  # another base (X1)
        (_offered(), _release(), _running(length=4999)),
        (_offered(), _release(), _running(target_path="m/fw-0.9.0.bin")),
        (_offered(image="m/fw-1.2.0.bin"), _release(), _running()),  # another release
        (_offered(roles=("targets",)), _release(), _running()),  # not the release's role
        (_offered(length=6000), _release(), _running()),  # no smaller than the image
        (_offered(length=0), _release(), _running()),
    ],
)
def test_choose_refuses_any_delta_that_does_not_fit_x1(
    offered: delta_module.OfferedDelta | None, release: Candidate, running: SlotRecord | None
) -> None:
    """X1: choose takes no delta that does not fit every condition (R13)."""
    assert delta_module.choose(offered, release=release, running=running) is None


def test_choose_refuses_a_delta_target_with_a_malformed_field() -> None:
    """X1: a delta target with a malformed delta field is no delta (R13)."""
    offered = _offered()
    offered.target.unrecognized_fields["custom"]["delta"]["format"] = "xdelta3"
    assert delta_module.choose(offered, release=_release(), running=_running()) is None


# -- offline bundles ----------------------------------------------------------------------


def test_an_offline_bundle_install_takes_the_full_image_it_carries_and_no_delta(
    tmp_path: Path,
) -> None:
    """A bundle carries the full image (``client.offline``): a signed delta is not looked for.

    Removable media saves nothing by a delta, and the bundle holds none:
    trying one would only log a ``delta_failed`` for a member never meant
    to be there.
    """
    sim = Sim(tmp_path / "sim")
    device = offline_device(tmp_path, sim)
    release = sim.release("1.1.0", 2)
    old = sim.images[BASE_PATH]
    path = sign_from_base(sim, tmp_path, release, made_from=old, made_to=sim.images[release])
    member = sim.target_url(path).removeprefix("/")
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release, dropped=[member])
    result = update_from_bundle(device, bundle)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert delta_failures(device) == []
    assert installed_detail(device)["transfer"] == "full"
    assert device.slot_image(device.bootenv().pending or "").read_bytes() == sim.images[release]


# -- hashed bins --------------------------------------------------------------------------


@pytest.fixture
def binned(tmp_path: Path, base: bytes, new: bytes) -> tuple[Sim, StateDir, str, str]:
    """A line in hashed bins: the device runs 1.0.0; 1.1.0 and its delta are signed.

    The release is listed in the line's own role (its current releases); the
    delta only in the bin its path hashes to.
    """
    sim = Sim(tmp_path / "binned", bin_bits=3)
    device = provision(tmp_path / "binned-device", sim)
    sign_release(sim, "1.0.0", 1, base)
    assert run(device, sim).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    release = sign_release(sim, "1.1.0", 2, new)
    path = sign_from_base(sim, tmp_path, release, made_from=base, made_to=new)
    assert sim.repo.leaf_role(MODEL, path) != MODEL
    return sim, device, release, path


def test_a_delta_in_a_bin_of_the_releases_line_is_used(
    binned: tuple[Sim, StateDir, str, str],
) -> None:
    """X1: the line that signs the release delegates the delta's bin: the same signers."""
    sim, device, release, path = binned
    result = run(device, sim)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert sim.fetched(sim.target_url(release)) == []
    assert installed_detail(device)["delta"] == path
    assert device.slot_image("a").read_bytes() == sim.images[release]


def test_a_delta_whose_bin_fails_to_verify_falls_back_to_the_full_image(
    binned: tuple[Sim, StateDir, str, str],
) -> None:
    """X5, TUF arbitrary-metadata attack on the delta's bin: delta_failed, then the full image.

    Answers R13.
    """
    sim, device, release, path = binned
    role = sim.repo.leaf_role(MODEL, path)
    url = f"/metadata/{sim.repo.read(role).signed.version}.{role}.json"
    sim.resign(url, lambda signed: None, "carol")  # not the bin's keys
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    (failure,) = delta_failures(device)
    assert failure["reason"].startswith(f"looking up {path}")
    assert sim.fetched(sim.target_url(path)) == []


def test_no_delta_signed_is_the_full_image_and_nothing_logged(
    device: StateDir, sim: Sim, release: str
) -> None:
    """X1: nothing at the delta's path: the full image, as before deltas existed."""
    result = run(device, sim)
    assert_installed_full(device, sim, release, result)
    assert delta_failures(device) == []
    assert installed_detail(device)["downloaded"] == len(sim.images[release])


def test_a_running_version_no_delta_path_can_name_is_the_full_image(tmp_path: Path) -> None:
    """X1: a running version that is not a semantic version names no delta (none looked up)."""
    transfer = delta_module.by_delta(
        StateDir(tmp_path),
        cast(Any, None),  # never asked: nothing is looked up
        _release(),
        running=_running(version="factory"),
        at=datetime.now(UTC),
        download=lambda _target, _file, _should_stop: None,
        recovery=False,
        should_stop=lambda: False,
    )
    assert transfer == delta_module.Transfer()


# -- the clinical-use guard (R52) ---------------------------------------------------------


def test_a_delta_install_deferred_in_use_resumes_sealed_without_downloading_again_r52(
    device: StateDir, sim: Sim, release: str, matching_delta: str
) -> None:
    """R52: the guard is asked after the delta's image is sealed, as for a full image.

    In use, the slot stays sealed, not pending; the next update hashes it
    again and marks it pending, fetching neither the delta nor the image.
    """
    busy = Guard(ReadyCheck((sys.executable, "-c", "raise SystemExit(1)")))
    deferred = update(device, sim.remote(), directive=STANDALONE, guard=busy)
    assert deferred.outcome is Outcome.DEFERRED, deferred.message
    assert device.bootenv().pending is None
    assert device.slot_record("a") is not None, "the rebuilt image was not sealed"
    fetched = len(sim.fetched("/targets/"))
    result = run(device, sim)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert len(sim.fetched("/targets/")) == fetched, "downloaded again after the deferral"
    assert device.slot_image("a").read_bytes() == sim.images[release]
    assert installed_detail(device)["downloaded"] == 0
    assert_consistent(device)


def test_a_delta_file_left_by_a_power_cut_is_removed_by_the_next_delta_session_x6(
    device: StateDir, sim: Sim, release: str, matching_delta: str
) -> None:
    """X6: the downloaded delta a cut left beside the slots does not stay there."""
    leftover = device.slots_dir / "slot_a.delta"
    leftover.write_bytes(b"half a delta")
    (device.slots_dir / "slot_b.delta").write_bytes(b"older still")
    assert run(device, sim).outcome is Outcome.INSTALLED
    assert sorted(p.name for p in device.slots_dir.glob("*.delta")) == []
