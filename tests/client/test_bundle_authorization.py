"""A release that requires a technician's authorization, installed from a bundle (R9, R25, R58).

``client.offline`` O5: the bundle's ``authorization.json`` is the install's
freshness: it must verify for this device and this release's SHA-256, be
unexpired at the device's trusted time, and it is spent as online. S6: what
waits online (no authorization yet) is a refusal offline, since nothing more
will arrive. Each refusal leaves slots, boot environment, both floors and
the authorizations the device keeps as they were.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Signer

from client import authorizations
from client import update as update_module
from client.boot import boot
from client.bundle_source import BundleRefusedError, update_from_bundle
from client.events import EventType
from client.state import Floor, StateDir
from client.update import Outcome, UpdateResult
from tests.client.bundles import make_bundle, offline_device, snapshot_of
from tests.client.helpers_state import corrupt
from tests.client.sim import Sim, event_types, tree
from tests.client.test_authorization_install import authorize
from tests.clocks import FakeClock


@pytest.fixture(scope="module")
def authority() -> Signer:
    return CryptoSigner.generate_ed25519()


@pytest.fixture
def sim(tmp_path: Path, authority: Signer) -> Sim:
    sim = Sim(tmp_path / "sim")
    sim.trust_authorization_key(authority)
    return sim


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return offline_device(tmp_path, sim)


@pytest.fixture
def release(sim: Sim) -> str:
    return sim.release("2.0.0", 2, requires_authorization=True)


def refused(device: StateDir, bundle: Path, event: EventType) -> UpdateResult:
    kept = authorizations.store_path(device)
    before = (
        tree(device.slots_dir),
        device.bootenv(),
        device.floor(),
        device.time_floor(),
        kept.read_bytes() if kept.exists() else None,
    )
    result = update_from_bundle(device, bundle)
    assert (result.outcome, result.event) == (Outcome.REFUSED, event), result.message
    assert event_types(device)[-1] == event
    after = (
        tree(device.slots_dir),
        device.bootenv(),
        device.floor(),
        device.time_floor(),
        kept.read_bytes() if kept.exists() else None,
    )
    assert after == before
    return result


def test_a_bundle_without_the_authorization_its_release_requires_is_refused_r9_s6(
    tmp_path: Path, device: StateDir, sim: Sim, release: str
) -> None:
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release)
    result = refused(device, bundle, EventType.AWAITING_AUTHORIZATION)
    assert "bring a bundle that carries what this release needs" in result.message


def test_a_bundle_with_a_valid_authorization_installs_and_spends_it_r58_o5(
    tmp_path: Path, device: StateDir, sim: Sim, release: str, authority: Signer
) -> None:
    document = authorize(sim, release, authority)
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release, authorization=document)
    result = update_from_bundle(device, bundle)
    assert result.outcome is Outcome.INSTALLED, result.message
    assert event_types(device)[-4:] == [
        "authorization_accepted",
        "authorization_used",
        "offline_install",
        "installed",
    ]
    store = authorizations.load(device, at=datetime.now(UTC))
    assert store.records[document.authorization.nonce].used_at is not None


def test_an_expired_authorization_in_a_bundle_is_refused_r25_o5(
    tmp_path: Path, device: StateDir, sim: Sim, release: str, authority: Signer
) -> None:
    """The bundle's metadata may be days old; its authorization may not."""
    issued = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    document = authorize(sim, release, authority, issued=issued)
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release, authorization=document)
    refused(device, bundle, EventType.AUTHORIZATION_EXPIRED)


def test_an_authorization_for_another_device_in_a_bundle_is_refused_r58(
    tmp_path: Path, device: StateDir, sim: Sim, release: str, authority: Signer
) -> None:
    document = authorize(sim, release, authority, device="pump-0002")
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release, authorization=document)
    refused(device, bundle, EventType.AUTHORIZATION_WRONG_DEVICE)


def test_an_authorization_for_other_bytes_in_a_bundle_is_refused_r58(
    tmp_path: Path, device: StateDir, sim: Sim, release: str, authority: Signer
) -> None:
    document = authorize(sim, release, authority, digest="0" * 64)
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release, authorization=document)
    refused(device, bundle, EventType.AUTHORIZATION_WRONG_RELEASE)


def test_a_spent_authorization_replayed_in_a_second_bundle_is_refused_r25(
    tmp_path: Path, device: StateDir, sim: Sim, release: str, authority: Signer
) -> None:
    """The same document spent once: a bundle of a later release re-using it gains nothing."""
    document = authorize(sim, release, authority)
    first = make_bundle(tmp_path / "a.fwbundle", sim, release=release, authorization=document)
    assert update_from_bundle(device, first).outcome is Outcome.INSTALLED
    boot(device, health_check=None, now=datetime.now(UTC))
    later = sim.release("2.1.0", 2, requires_authorization=True)
    reused = authorize(sim, later, authority, nonce=document.authorization.nonce)
    second = make_bundle(tmp_path / "b.fwbundle", sim, release=later, authorization=reused)
    refused(device, second, EventType.AUTHORIZATION_REPLAYED)


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (b'{"signed": {}}', "is not a valid authorization"),
        (b" " * (authorizations.MAX_FILE + 1), "more than the"),
    ],
    ids=["malformed", "oversized"],
)
def test_an_authorization_member_that_is_not_one_refuses_the_bundle_unread_s5(
    tmp_path: Path, device: StateDir, sim: Sim, release: str, document: bytes, words: str
) -> None:
    """S5: an authorization.json that is no authorization refuses the bundle (R9, R46)."""
    bundle = make_bundle(tmp_path / "b.fwbundle", sim, release=release, authorization=document)
    before = snapshot_of(device)
    with pytest.raises(BundleRefusedError) as caught:
        update_from_bundle(device, bundle)
    assert words in str(caught.value)
    assert snapshot_of(device) == before


def test_a_spent_authorization_stays_spent_when_the_clock_is_set_back_after_offline_sessions_r25_n3(
    tmp_path: Path,
    device: StateDir,
    sim: Sim,
    release: str,
    authority: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TUF freeze/replay of an authorization: an offline install raises the floor only to T (O6).

    So a record N3 dropped in a later offline session (its time passed at the
    clock) would let a clock set back within the document's minutes replay it:
    offline sessions keep the records the floor has not passed.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    spent_at = now - timedelta(days=2)
    first = authorize(sim, release, authority, issued=spent_at)
    old = make_bundle(tmp_path / "a.fwbundle", sim, release=release, authorization=first)

    clock = FakeClock(now=now)
    monkeypatch.setattr(update_module, "datetime", clock.as_datetime())

    def at(moment: datetime) -> None:
        clock.now = moment

    def install_then_lose(bundle: Path, moment: datetime) -> None:
        """Installed, then its pending slot decays: 1.0.0 runs on, 2.0.0 not known bad."""
        at(moment)
        result = update_from_bundle(device, bundle)
        assert result.outcome is Outcome.INSTALLED, result.message
        pending = device.bootenv().pending
        assert pending is not None
        corrupt(device, pending)
        boot(device, health_check=None, now=moment)
        assert device.floor() == Floor(1, "1.0.0")

    install_then_lose(old, spent_at + timedelta(minutes=5))
    second = authorize(sim, release, authority, issued=now, nonce="6b" * 32)
    new = make_bundle(tmp_path / "b.fwbundle", sim, release=release, authorization=second)
    install_then_lose(new, now + timedelta(minutes=5))  # the first's time has passed here
    at(spent_at + timedelta(minutes=10))  # the clock set back, never before the floor
    assert device.time_floor() is not None and device.time_floor() < spent_at
    refused(device, old, EventType.AUTHORIZATION_REPLAYED)
