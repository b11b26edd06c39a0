"""Checking for and installing updates against the in-memory repository."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from client import download
from client.boot import Outcome as BootOutcome
from client.boot import boot
from client.directive import STANDALONE
from client.evidence import verify_evidence
from client.integrity import verify_slot
from client.state import Floor, Mode, StateDir
from client.update import Outcome, check, update
from tests.client.helpers_state import UNHEALTHY, corrupt
from tests.client.sim import MODEL, Sim, event_types, image_bytes, provision, sha256, tree
from tests.client.tuf_repo import firmware_custom


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


def install_and_boot(device: StateDir, sim: Sim) -> None:
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED, result.message
    boot(device, health_check=None, now=datetime.now(UTC))


def test_a_provisioned_device_installs_the_newest_release_into_the_inactive_slot(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    path = sim.release("1.1.0", 1)
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert result.candidate is not None and result.candidate.path == path
    env = device.bootenv()
    assert (env.active, env.pending, env.tries_left) == ("a", "b", 3)
    assert device.slot_image("b").read_bytes() == sim.images[path]
    assert verify_slot(device, "b").ok
    assert event_types(device) == ["installed"]


def test_the_installed_firmware_boots_commits_and_raises_the_floors(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 2)
    install_and_boot(device, sim)
    assert device.floor() == Floor(2, "1.0.0")
    assert device.bootenv().active == "b"
    sim.release("1.1.0", 3)
    install_and_boot(device, sim)
    assert device.floor() == Floor(3, "1.1.0")
    assert device.bootenv().active == "a"
    assert event_types(device) == ["installed", "updated", "installed", "updated"]


def test_check_says_what_is_available_and_touches_no_slot(device: StateDir, sim: Sim) -> None:
    sim.release("1.0.0", 1)
    result = check(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.AVAILABLE
    assert "1.0.0" in result.message
    assert not device.slots_dir.exists()
    assert event_types(device) == ["checked"]


def test_nothing_newer_is_no_update(device: StateDir, sim: Sim) -> None:
    sim.release("1.0.0", 1)
    install_and_boot(device, sim)
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.UP_TO_DATE
    assert result.ok
    assert event_types(device)[-1] == "no_update"


def test_an_empty_product_line_is_no_update(device: StateDir, sim: Sim) -> None:
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.UP_TO_DATE


def test_an_installed_update_waits_for_its_reboot_without_going_online(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    update(device, sim.remote(), directive=STANDALONE)
    sim.requests.clear()
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.PENDING_REBOOT
    assert sim.requests == []


def test_the_evidence_is_the_signed_metadata_the_target_was_verified_with(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    update(device, sim.remote(), directive=STANDALONE)
    record = device.slot_record("b")
    assert record is not None
    evidence = tree(device.slot_evidence("b"))
    assert sorted(evidence) == ["pump-x100.json", "targets.json"]
    assert evidence["targets.json"] == (device.metadata_dir / "targets.json").read_bytes()
    verify_evidence(device.trusted_root.read_bytes(), evidence, record, hardware_model=MODEL)


def test_a_product_line_in_hashed_bins_is_read_from_its_current_list_without_any_bin(
    tmp_path: Path,
) -> None:
    """Issue 4 scale target: a check reads the line's list of current releases, no bin.

    The release is resolved by ngclient in the line's own role (its copy is
    identical to the bin's entry: frontier.py), so the evidence stops there.
    """
    sim = Sim(tmp_path / "sim", bin_bits=3)
    device = provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    newest = sim.release("1.2.0", 1)
    sim.release("1.1.0", 1)
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.candidate is not None and result.candidate.path == newest
    record = device.slot_record("b")
    assert record is not None and record.role == MODEL
    assert [p for p in sim.fetched("/metadata/") if "-bins-" in p] == []
    assert sorted(tree(device.slot_evidence("b"))) == ["pump-x100.json", "targets.json"]


def test_a_second_check_with_nothing_changed_fetches_only_root_and_timestamp(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    install_and_boot(device, sim)
    sim.requests.clear()
    assert check(device, sim.remote(), directive=STANDALONE).outcome is Outcome.UP_TO_DATE
    assert sim.fetched() == ["/metadata/2.root.json", "/metadata/timestamp.json"]


def test_an_sbom_beside_the_firmware_is_not_a_candidate(device: StateDir, sim: Sim) -> None:
    sbom, sbom_path = b'{"bomFormat": "CycloneDX"}', f"{MODEL}/fw-1.0.0.sbom.json"
    sim.repo.add_target(MODEL, sbom_path, sbom, {}, "alice", "bob")
    custom = firmware_custom("1.0.0", 1, (MODEL,), sbom={"path": sbom_path, "sha256": sha256(sbom)})
    image = image_bytes("1.0.0")
    sim.repo.add_target(MODEL, f"{MODEL}/fw-1.0.0.bin", image, custom, "alice", "bob")
    sim.images[f"{MODEL}/fw-1.0.0.bin"] = image
    sim.publish()
    result = check(device, sim.remote(), directive=STANDALONE)
    assert result.candidate is not None
    assert result.candidate.path == f"{MODEL}/fw-1.0.0.bin"


def test_root_rotation_is_followed_and_kept_as_evidence(device: StateDir, sim: Sim) -> None:
    sim.repo.rotate(
        "root", add=["carol"], remove=["officer3"], signers=["officer1", "officer2", "carol"]
    )
    sim.release("1.0.0", 1)
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    assert (device.metadata_dir / "root_history" / "2.root.json").read_bytes() == sim.root(2)
    assert device.trusted_root.read_bytes() == sim.root(1), "the provisioned root never changes"
    evidence = tree(device.slot_evidence("b"))
    assert evidence["root/2.root.json"] == sim.root(2)
    assert boot(device, health_check=None, now=datetime.now(UTC)).outcome.value == "committed"


def test_an_interrupted_download_resumes_with_a_range_request(
    device: StateDir, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "CHECKPOINT", 16 * 1024)
    path = sim.release("1.0.0", 1, size=200_000)
    url = sim.target_url(path)
    sim.cut[url] = 100_000
    first = update(device, sim.remote(), directive=STANDALONE)
    assert first.outcome is Outcome.FAILED
    assert first.event == "unreachable"
    assert device.bootenv().pending is None
    second = update(device, sim.remote(), directive=STANDALONE)
    assert second.outcome is Outcome.INSTALLED, second.message
    offsets = [offset for fetched, offset in sim.requests if fetched == url]
    assert offsets[0] == 0
    assert 0 < offsets[1] <= 100_000
    assert device.slot_image("b").read_bytes() == sim.images[path]


def test_an_unreachable_server_leaves_the_device_running_r52(device: StateDir, sim: Sim) -> None:
    sim.release("1.0.0", 1)
    install_and_boot(device, sim)
    before = tree(device.root / "slots"), device.bootenv(), device.floor()
    sim.down = True
    result = update(device, sim.remote(), directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.FAILED, "unreachable")
    assert "keeps running" in result.message
    assert (tree(device.root / "slots"), device.bootenv(), device.floor()) == before
    assert event_types(device)[-1] == "unreachable"


def test_a_successful_refresh_raises_the_time_floor(device: StateDir, sim: Sim) -> None:
    before = datetime.now(UTC)
    check(device, sim.remote(), directive=STANDALONE)
    floor = device.time_floor()
    assert floor is not None and before <= floor <= datetime.now(UTC)


def test_a_device_in_failsafe_mode_refuses_updates_but_takes_a_signed_recovery(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    device.write_bootenv(device.bootenv().with_changes(mode=Mode.FAILSAFE))
    refused = update(device, sim.remote(), directive=STANDALONE)
    assert (refused.outcome, refused.event) == (Outcome.REFUSED, "failsafe_refused")
    assert not device.slots_dir.exists()
    recovered = update(device, sim.remote(), recovery=True, directive=STANDALONE)
    assert recovered.outcome is Outcome.INSTALLED
    assert device.bootenv().recovery


def test_recovery_is_refused_outside_failsafe_mode(device: StateDir, sim: Sim) -> None:
    sim.release("1.0.0", 1)
    result = update(device, sim.remote(), recovery=True, directive=STANDALONE)
    assert result.outcome is Outcome.FAILED
    assert "failsafe" in result.message


def test_a_firmware_that_failed_its_health_check_is_not_installed_again(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    install_and_boot(device, sim)
    sim.release("2.0.0", 2)
    update(device, sim.remote(), tries=1, directive=STANDALONE)
    fail = ("python3", "-c", "raise SystemExit(1)")
    assert boot(device, health_check=fail, now=datetime.now(UTC)).outcome.value == "rolled_back"
    result = update(device, sim.remote(), directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.REFUSED, "known_bad")
    assert device.bootenv().pending is None
    assert device.floor() == Floor(1, "1.0.0")


def test_a_pending_slot_corrupted_at_rest_is_downloaded_again_by_the_next_update_r29(
    device: StateDir, sim: Sim
) -> None:
    """R29: the boot catches a flipped byte in the pending slot; the next update succeeds."""
    sim.release("1.0.0", 1)
    install_and_boot(device, sim)  # runs from slot b
    path = sim.release("1.1.0", 1)
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    corrupt(device, "a")
    assert boot(device, health_check=None, now=datetime.now(UTC)).outcome is BootOutcome.ROLLED_BACK
    fetched = len(sim.fetched(sim.target_url(path)))
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert len(sim.fetched(sim.target_url(path))) == fetched + 1
    assert device.slot_image("a").read_bytes() == sim.images[path]


def test_the_clock_behind_the_time_floor_is_logged_and_the_floor_used(
    device: StateDir, sim: Sim
) -> None:
    sim.release("1.0.0", 1)
    device.raise_time_floor(datetime.now(UTC) + timedelta(hours=1))
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert event_types(device) == ["clock_skew", "installed"]


def test_a_release_that_failed_here_does_not_hide_the_one_it_superseded(tmp_path: Path) -> None:
    """The line lists only 1.2.0 (it supersedes 1.1.0); after 1.2.0 fails its health
    check here, the device reads the bins and takes 1.1.0, not nothing."""
    sim = Sim(tmp_path / "sim", bin_bits=3)
    device = provision(tmp_path / "device", sim)
    sim.release("1.0.0", 1)
    install_and_boot(device, sim)
    sim.release("1.1.0", 1)
    bad = sim.release("1.2.0", 1)
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.candidate is not None and result.candidate.path == bad
    outcomes = [boot(device, health_check=UNHEALTHY, now=datetime.now(UTC)).outcome]
    for _ in range(5):  # a reboot per boot try, until the fall back
        if outcomes[-1] is BootOutcome.RETRY:
            outcomes.append(boot(device, health_check=UNHEALTHY, now=datetime.now(UTC)).outcome)
    assert outcomes[-1] is BootOutcome.ROLLED_BACK
    sim.requests.clear()

    result = update(device, sim.remote(), directive=STANDALONE)

    assert result.outcome is Outcome.INSTALLED, result.message
    assert result.candidate is not None and result.candidate.info.version == "1.1.0"
    assert result.candidate.role.startswith(f"{MODEL}-bins-")
    assert [p for p in sim.fetched("/metadata/") if "-bins-" in p], "the bins were read"
    record = device.slot_record(device.bootenv().pending or "")
    assert record is not None
    evidence = tree(device.slot_evidence(device.bootenv().pending or ""))
    verify_evidence(device.trusted_root.read_bytes(), evidence, record, hardware_model=MODEL)
