"""``fwclient update --bundle``: an offline update is an online one over another network.

The device runs 1.0.0, installed from a first bundle, and has not been
online for twenty days (its time floor). Every test names the rule
(``client.offline`` O1-O8, ``client.bundle_source`` S1-S5), the
requirement or the TUF attack it answers, and checks that a refusal changes
nothing on the device: slots, boot environment, floors, authorizations.
"""

from __future__ import annotations

import errno
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from securesystemslib.signer import CryptoSigner

from client import bundle_source
from client.boot import boot
from client.bundle_source import BundleRefusedError, update_from_bundle
from client.directive import STANDALONE
from client.events import EventType
from client.offline import BundleMismatchError
from client.state import Floor, StateDir
from client.update import Outcome, UpdateResult, update
from fwcommon.bundle import DEFAULT_MAX_BYTES
from tests.client.bundles import (
    OFFLINE_FOR,
    crafted_bundle,
    link,
    make_bundle,
    offline_device,
    refuse_connections,
    set_time_floor,
    snapshot_of,
)
from tests.client.sim import DEVICE, MODEL, Sim, event_types, tree


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    return Sim(tmp_path / "sim")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """S1: any attempt to open a connection fails the test (and is recorded)."""
    return refuse_connections(monkeypatch)


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    """A device running 1.0.0 from a bundle, last trusted time twenty days ago."""
    return offline_device(tmp_path, sim)


def offline(device: StateDir, bundle: Path, **kwargs: Any) -> UpdateResult:
    return update_from_bundle(device, bundle, **kwargs)


def refused(device: StateDir, bundle: Path, event: str) -> UpdateResult:
    """A refusal logged as ``event``, with slots, boot environment and both floors untouched."""
    before = tree(device.slots_dir), device.bootenv(), device.floor(), device.time_floor()
    result = offline(device, bundle)
    assert not result.ok
    assert result.event == event, result.message
    assert event_types(device)[-1] == event
    assert (tree(device.slots_dir), device.bootenv(), device.floor(), device.time_floor()) == before
    return result


def refused_unread(device: StateDir, bundle: Path, error: type[Exception], words: str) -> None:
    """Refused before the session: the state directory is byte for byte as it was."""
    before = snapshot_of(device)
    with pytest.raises(error) as caught:
        offline(device, bundle)
    assert words in str(caught.value)
    assert snapshot_of(device) == before


# -- the same path as online (O1, S1) -------------------------------------------------


def test_an_offline_install_is_verified_installed_and_logged_with_no_network_r13(
    tmp_path: Path, device: StateDir, sim: Sim, no_network: list[object]
) -> None:
    path = sim.release("1.1.0", 2)
    sim.down = True  # the simulated server is gone too
    result = offline(device, make_bundle(tmp_path / "b.fwbundle", sim, release=path))
    assert result.outcome is Outcome.INSTALLED, result.message
    assert event_types(device)[-2:] == ["offline_install", "installed"]
    entry = device.events.last(EventType.OFFLINE_INSTALL)
    assert entry is not None
    assert entry["detail"]["target"] == path
    assert entry["detail"]["bundle"] == "b.fwbundle"
    assert (entry["detail"]["bundle_release"], entry["detail"]["bundle_device"]) == (path, None)
    assert boot(device, health_check=None, now=datetime.now(UTC)).slot == device.bootenv().active
    assert device.floor() == Floor(2, "1.1.0")
    assert sim.requests == [] and no_network == []


def test_the_bundle_s_release_is_the_one_chosen_even_when_newer_ones_are_signed_o7(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """The manifest narrows the choice like an assignment: the carried release, verified."""
    carried = sim.release("1.1.0", 2)
    sim.release("1.2.0", 2)
    result = offline(device, make_bundle(tmp_path / "b.fwbundle", sim, release=carried))
    assert result.outcome is Outcome.INSTALLED, result.message
    assert result.candidate is not None and result.candidate.path == carried


def test_a_bundle_naming_no_release_installs_the_newest_it_carries_s4(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    path = sim.release("1.1.0", 2)
    result = offline(device, make_bundle(tmp_path / "b.fwbundle", sim, release=None))
    assert result.outcome is Outcome.INSTALLED, result.message
    assert result.candidate is not None and result.candidate.path == path


# -- freshness (O2-O6) -------------------------------------------------------------------


def expired_release(sim: Sim, version: str, security_version: int, *, ago: timedelta) -> str:
    """``version`` signed and published with timestamp and snapshot expired ``ago``."""
    path = sim.release(version, security_version, publish=False)
    sim.publish(timestamp_expires=-ago, snapshot_expires=-ago)
    return path


def test_metadata_expired_within_the_bound_installs_offline_where_online_refuses_o2(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O2: a device off the network updates from a bundle despite expiry (R52)."""
    path = expired_release(sim, "1.1.0", 2, ago=timedelta(days=5))
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path)
    online = update(device, sim.remote(), directive=STANDALONE)
    assert online.event == "freeze_attack", online.message
    result = offline(device, bundle)
    assert result.outcome is Outcome.INSTALLED, result.message


def test_after_an_offline_install_the_floor_rises_to_the_reference_time_not_the_clock_o6(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """An expired timestamp vouches for no time after its expiry: the floor stays behind it.

    Answers R25; TUF freeze attack.
    """
    set_time_floor(device, datetime.now(UTC) - timedelta(days=60))
    path = expired_release(sim, "1.1.0", 2, ago=timedelta(days=5))
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path)
    before = datetime.now(UTC)
    assert offline(device, bundle).outcome is Outcome.INSTALLED
    after = datetime.now(UTC)
    floor = device.time_floor()
    assert floor is not None
    assert before - timedelta(days=30) <= floor <= after - timedelta(days=30)
    entry = device.events.last(EventType.OFFLINE_INSTALL)
    assert entry is not None and entry["detail"]["reference_time"] == floor.isoformat()


def test_metadata_expired_beyond_the_bound_is_a_freeze_attack_o3(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """An old bundle is not replayable indefinitely; the bound is the device's setting.

    A device provisioned with a longer setting (45 days) accepts what the
    default (30 days) refuses (R52 freshness off the network, TUF freeze attack).
    """
    lenient = offline_device(tmp_path / "lenient", sim, offline_max_age=timedelta(days=45))
    for state in (device, lenient):
        set_time_floor(state, datetime.now(UTC) - timedelta(days=60))
    path = expired_release(sim, "1.1.0", 2, ago=timedelta(days=40))
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path)
    refused(device, bundle, "freeze_attack")
    longer = offline(lenient, bundle)
    assert longer.outcome is Outcome.INSTALLED, longer.message


def test_metadata_expired_before_the_time_floor_is_a_freeze_attack_o2(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """Never older than what the device already trusts: its floor is 20 days ago."""
    path = expired_release(sim, "1.1.0", 2, ago=OFFLINE_FOR + timedelta(days=2))
    result = refused(
        device, make_bundle(tmp_path / "b.fwbundle", sim, release=path), "freeze_attack"
    )
    assert "expired" in result.message


# -- rollback (R25, TUF rollback attack) -----------------------------------------------------


def test_an_old_bundle_replayed_after_a_newer_install_is_a_rollback_attack_r25(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    old = make_bundle(tmp_path / "old.fwbundle", sim, release=sim.release("1.1.0", 2))
    assert offline(device, old).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    new = make_bundle(tmp_path / "new.fwbundle", sim, release=sim.release("1.2.0", 3))
    assert offline(device, new).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    refused(device, old, "rollback_attack")
    assert device.floor() == Floor(3, "1.2.0")


def test_a_bundle_older_than_the_metadata_the_device_trusts_is_a_rollback_attack_r25(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """The device went online after the bundle was made: TUF's version checks refuse it."""
    path = sim.release("1.1.0", 2)
    stale = make_bundle(tmp_path / "stale.fwbundle", sim, release=path)
    sim.publish()
    assert update(device, sim.remote(), directive=STANDALONE).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    refused(device, stale, "rollback_attack")


# -- tampering (TUF: arbitrary software, mix-and-match) --------------------------------------


def newest(sim: Sim, role: str) -> str:
    """The member name of ``role``'s newest version in what ``sim`` serves."""
    versions = [
        int(url.split("/")[-1].split(".")[0])
        for url in sim.files
        if url.startswith("/metadata/") and url.endswith(f".{role}.json")
    ]
    return f"metadata/{max(versions)}.{role}.json"


@pytest.fixture
def carried(device: StateDir, sim: Sim) -> str:
    """Release 1.1.0, signed after the device's 1.0.0: what a tampered bundle carries."""
    return sim.release("1.1.0", 2)


def tampered(tmp_path: Path, sim: Sim, release: str, member: str, data: bytes) -> Path:
    """A bundle carrying ``release`` whose ``member`` holds ``data`` instead of what was signed."""
    return make_bundle(tmp_path / "b.fwbundle", sim, release=release, changed={member: data})


def test_a_tampered_targets_role_is_refused_as_a_bad_signature(
    tmp_path: Path, device: StateDir, sim: Sim, carried: str
) -> None:
    """O1: a targets role altered in the bundle is a bad signature (R13)."""
    member = newest(sim, MODEL)
    forged = sim.files[f"/{member}"].replace(b'"security_version": 2', b'"security_version": 9')
    assert forged != sim.files[f"/{member}"]
    refused(device, tampered(tmp_path, sim, carried, member, forged), "bad_signature")


def test_a_timestamp_signed_with_another_key_is_refused_as_a_bad_signature(
    tmp_path: Path, device: StateDir, sim: Sim, carried: str
) -> None:
    """O1: a timestamp signed with an untrusted key is refused (R13)."""
    forged = sim.resign("/metadata/timestamp.json", lambda signed: None, "snapshot")
    bundle = tampered(tmp_path, sim, carried, "metadata/timestamp.json", forged)
    refused(device, bundle, "bad_signature")


def test_a_snapshot_swapped_for_another_is_refused_as_mix_and_match(
    tmp_path: Path, device: StateDir, sim: Sim, carried: str
) -> None:
    member = newest(sim, "snapshot")
    older = sim.files["/metadata/1.snapshot.json"]
    refused(device, tampered(tmp_path, sim, carried, member, older), "mix_and_match")


def test_tampered_firmware_is_refused_as_a_bad_hash_and_never_bootable(
    tmp_path: Path, device: StateDir, sim: Sim, carried: str
) -> None:
    """O1: altered firmware is a bad hash, never bootable (R13; TUF arbitrary software attack)."""
    image = bytearray(sim.images[carried])
    image[1000] ^= 1
    member = sim.target_url(carried).removeprefix("/")
    bundle = tampered(tmp_path, sim, carried, member, bytes(image))
    env, floor, time_floor = device.bootenv(), device.floor(), device.time_floor()
    running = device.slot_image(env.active).read_bytes()
    result = offline(device, bundle)
    assert result.event == "bad_hash", result.message
    assert (device.bootenv(), device.floor(), device.time_floor()) == (env, floor, time_floor)
    assert device.slot_image(env.active).read_bytes() == running
    inactive = "a" if env.active == "b" else "b"
    assert device.slot_record(inactive) is None, "the inactive slot is not bootable"
    assert "offline_install" not in event_types(device)[-3:]


def test_a_bundle_missing_a_role_the_device_needs_names_it_and_installs_nothing(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """S2: a bundle without a role the session needs names it; nothing installs (R46)."""
    path = sim.release("1.1.0", 2)
    member = newest(sim, MODEL)
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path, dropped=[member])
    result = refused(device, bundle, "error")
    assert f"the bundle does not carry {member}" in result.message


def test_a_bundle_naming_a_release_it_does_not_carry_is_refused_unread_s4(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """S4: a manifest naming a release the bundle lacks is refused unread (R46)."""
    path = sim.release("1.1.0", 2)
    member = sim.target_url(path).removeprefix("/")
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path, dropped=[member])
    refused_unread(device, bundle, BundleRefusedError, f"names the release {path}")


# -- another model, another device (O7, R15) -------------------------------------------------


def test_a_bundle_for_another_model_is_refused_before_reading_it_r15(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    path = sim.release("1.1.0", 2)
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path, model="infusion-z9")
    refused_unread(
        device,
        bundle,
        BundleMismatchError,
        f"this bundle is for model infusion-z9; this device is model {MODEL}: nothing was"
        " installed",
    )


def test_a_bundle_for_another_device_is_refused_before_reading_it(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O7: a bundle for another device is refused before its members are read (R25)."""
    path = sim.release("1.1.0", 2)
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path, device="pump-0002")
    refused_unread(
        device,
        bundle,
        BundleMismatchError,
        f"this bundle is for device pump-0002; this device is {DEVICE}: nothing was installed",
    )
    mine = make_bundle(tmp_path / "mine.fwbundle", sim, release=path, device=DEVICE)
    assert offline(device, mine).outcome is Outcome.INSTALLED


def test_a_manifest_that_lies_about_the_model_gains_nothing_o7(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """The manifest is advice: the signed hardware models decide (R15)."""
    path = sim.release("2.0.0", 2, models=("infusion-z9",), path=f"{MODEL}/fw-z9-2.0.0.bin")
    result = refused(
        device, make_bundle(tmp_path / "b.fwbundle", sim, release=path), "assignment_refused"
    )
    assert f"signed for infusion-z9, not for this device's model {MODEL}" in result.message
    assert device.floor() == Floor(1, "1.0.0")


def test_a_root_chain_starting_after_the_trusted_root_is_refused_then_accepted_once_trusted_o7(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """A bundle made for a device that already trusts root 2: named, not a bad signature."""
    sim.trust_authorization_key(CryptoSigner.generate_ed25519())  # root version 2
    path = sim.release("1.1.0", 2)
    short = make_bundle(tmp_path / "short.fwbundle", sim, release=path, root_from=2)
    refused_unread(
        device,
        short,
        BundleMismatchError,
        "this bundle's root chain starts after root version 2; this device trusts root"
        " version 1: nothing was installed",
    )
    whole = make_bundle(tmp_path / "whole.fwbundle", sim, release=path)
    assert offline(device, whole).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    later = make_bundle(
        tmp_path / "later.fwbundle", sim, release=sim.release("1.2.0", 2), root_from=2
    )
    assert offline(device, later).outcome is Outcome.INSTALLED


# -- the network (S1) ------------------------------------------------------------------------


def test_the_bundle_fetcher_serves_members_only_and_never_the_network_s1_s2(
    tmp_path: Path, sim: Sim
) -> None:
    """S1, S2: the bundle fetcher answers from members only, never the network (R46)."""
    path = sim.release("1.0.0", 1)
    with bundle_source.open_bundle(
        make_bundle(tmp_path / "b.fwbundle", sim, release=path), max_bytes=10**9
    ) as bundle:
        fetcher = bundle_source.BundleFetcher(bundle)
        url = f"{bundle_source.BUNDLE_URL}/metadata/timestamp.json"
        assert fetcher.download_bytes(url, 10**6) == sim.files["/metadata/timestamp.json"]
        for elsewhere in (
            "https://updates.test/metadata/timestamp.json",
            f"{bundle_source.BUNDLE_URL}/metadata/99.root.json",
            f"{bundle_source.BUNDLE_URL}/../bundle.json",
        ):
            with pytest.raises(bundle_source.MissingMemberError) as caught:
                fetcher.download_bytes(elsewhere, 10**6)
            assert caught.value.status_code == 404


# -- the reader (S3): escaping members, links, the bound --------------------------------------


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (("../escaped", b"x"), "'../escaped' has a '.' or '..' component"),
        (("metadata/../../escaped", b"x"), "'metadata/../../escaped' has a '.' or '..'"),
        (("/tmp/escaped", b"x"), "'/tmp/escaped' has an absolute name"),
        (link("metadata/2.root.json", "/etc/passwd"), "is a symbolic link"),
        (link("metadata/timestamp.json", "bundle.json", tarfile.LNKTYPE), "is a hard link"),
        (link("targets/dev", "", tarfile.CHRTYPE), "is a character device"),
    ],
    ids=["dot-dot", "dot-dot-inside", "absolute", "symlink", "hardlink", "device"],
)
def test_a_member_that_tries_to_escape_refuses_the_whole_bundle_and_changes_nothing(
    tmp_path: Path, device: StateDir, member: tarfile.TarInfo | tuple[str, bytes], why: str
) -> None:
    """Traversal, links and device files (S3; the guideline's warning about USB keys; R46, R42)."""
    bundle = crafted_bundle(tmp_path / "evil.fwbundle", [member])
    refused_unread(device, bundle, BundleRefusedError, why)
    assert not (tmp_path / "escaped").exists()
    assert not (device.root.parent / "escaped").exists()


def test_a_bundle_over_its_bound_is_refused_before_it_is_read(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """S3: a bundle over its bound is refused from its size, unread (R46)."""
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2))
    size = bundle.stat().st_size
    refused_unread_with(device, bundle, max_bytes=size - 1, words="more than the bound")
    assert offline(device, bundle, max_bytes=size).outcome is Outcome.INSTALLED


def test_a_bundle_over_the_default_bound_is_refused_unread(
    tmp_path: Path, device: StateDir
) -> None:
    """A sparse file one byte over 4 GiB: refused from its size alone, in no time (R46)."""
    bundle = tmp_path / "huge.fwbundle"
    with bundle.open("wb") as handle:
        handle.truncate(DEFAULT_MAX_BYTES + 1)
    refused_unread(device, bundle, BundleRefusedError, "more than the bound")


def refused_unread_with(device: StateDir, bundle: Path, *, max_bytes: int, words: str) -> None:
    before = snapshot_of(device)
    with pytest.raises(BundleRefusedError) as caught:
        offline(device, bundle, max_bytes=max_bytes)
    assert words in str(caught.value)
    assert snapshot_of(device) == before


def test_a_resumed_download_reads_the_member_from_its_offset(tmp_path: Path, sim: Sim) -> None:
    """An interrupted firmware copy continues where the slot's checkpoint is (as online)."""
    path = sim.release("1.0.0", 1)
    url = f"{bundle_source.BUNDLE_URL}{sim.target_url(path)}"
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path)
    with bundle_source.open_bundle(bundle, max_bytes=10**9) as opened:
        fetcher = bundle_source.BundleFetcher(opened)
        image = sim.images[path]
        assert b"".join(fetcher.fetch_from(url, 0)) == image
        assert b"".join(fetcher.fetch_from(url, 1000)) == image[1000:]
        assert b"".join(fetcher.fetch_from(url, len(image) + 5)) == b""


def test_a_medium_that_fails_while_the_bundle_is_opened_is_refused_by_name(
    tmp_path: Path, device: StateDir, sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3: a medium failing while the bundle opens is a refusal by name (R46, R51)."""
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=sim.release("1.1.0", 2))

    def failing(*_args: object) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("fwcommon.bundle.os.pread", failing)
    refused_unread(device, bundle, BundleRefusedError, "cannot read the bundle")


def test_a_damaged_cached_root_falls_back_to_the_provisioned_one_for_the_chain_check_o7(
    tmp_path: Path, device: StateDir, sim: Sim
) -> None:
    """O7: a damaged cached root falls back to the provisioned one for the chain check."""
    sim.trust_authorization_key(CryptoSigner.generate_ed25519())  # root version 2
    cached = device.metadata_dir / "root.json"
    cached.unlink()
    cached.write_bytes(b"not a root")
    short = make_bundle(tmp_path / "s.fwbundle", sim, release=sim.release("1.1.0", 2), root_from=2)
    refused_unread(device, short, BundleMismatchError, "this device trusts root version 1")


def test_with_hashed_bins_a_bundle_must_carry_the_running_release_s_bin_s2(
    tmp_path: Path,
) -> None:
    """Policy rule 7 looks the running release up in its bin: a bundle without it is named.

    The device never skips that lookup offline (a withdrawn running release
    is still reported); the bundle for a device carries its running
    release's bin, and one that does not is refused with the role's name.
    """
    sim = Sim(tmp_path / "sim", bin_bits=4)
    device = offline_device(tmp_path, sim)
    running = sim.repo.leaf_role(MODEL, f"{MODEL}/fw-1.0.0.bin")
    path = sim.release("1.1.0", 2)
    assert sim.repo.leaf_role(MODEL, path) != running
    bins = [url.removeprefix("/") for url in sim.files if url.endswith(f".{running}.json")]
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=path, dropped=bins)
    result = refused(device, bundle, "error")
    assert f".{running}.json, which this device needs" in result.message
    whole = make_bundle(tmp_path / "whole.fwbundle", sim, release=path)
    assert offline(device, whole).outcome is Outcome.INSTALLED
