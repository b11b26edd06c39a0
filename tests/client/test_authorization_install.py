"""A release that requires a technician's authorization, on the real client (R9, R25, R58).

The repository is the simulator's (python-tuf), with the authorization key
listed in root by the officers; the documents are signed as the server signs
them. Each test names the threat it answers.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Signer

from client import authorizations
from client.directive import STANDALONE
from client.events import EventType
from client.readiness import Guard, ReadyCheck
from client.slots import SlotWriter
from client.state import StateDir
from client.update import Outcome, check, update
from repo_metadata.authorization import (
    Authorization,
    SignedAuthorization,
    sign,
)
from tests.client.sim import DEVICE, Sim, event_types, provision, sha256

BUSY = Guard(ReadyCheck((sys.executable, "-c", "import sys; sys.exit(3)")))


@pytest.fixture(scope="module")
def authority() -> Signer:
    """The server's authorization key."""
    return CryptoSigner.generate_ed25519()


@pytest.fixture
def sim(tmp_path: Path, authority: Signer) -> Sim:
    sim = Sim(tmp_path / "sim")
    sim.trust_authorization_key(authority)
    return sim


@pytest.fixture
def device(tmp_path: Path, sim: Sim) -> StateDir:
    return provision(tmp_path / "device", sim)


def authorize(
    sim: Sim,
    path: str,
    key: Signer,
    *,
    device: str = DEVICE,
    digest: str | None = None,
    issued: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=15),
    nonce: str = "5a" * 32,
) -> SignedAuthorization:
    """What the server issues when a technician confirms with a fresh code."""
    issued = issued or datetime.now(UTC).replace(microsecond=0)
    return sign(
        Authorization(
            device_id=device,
            target_path=path,
            sha256=digest or sha256(sim.images[path]),
            nonce=nonce,
            issued=issued,
            expires=issued + lifetime,
            technician="tom",
            grace=timedelta(hours=1),
        ),
        key,
    )


def test_without_an_authorization_the_device_waits_logs_it_once_and_exits_zero_r9(
    device: StateDir, sim: Sim
) -> None:
    sim.release("2.0.0", 2, requires_authorization=True)
    first = update(device, sim.remote(), directive=STANDALONE)
    again = update(device, sim.remote(), directive=STANDALONE)
    assert (first.outcome, first.event, first.ok) == (
        Outcome.WAITING,
        EventType.AWAITING_AUTHORIZATION,
        True,
    )
    assert again.outcome is Outcome.WAITING
    assert event_types(device).count("awaiting_authorization") == 1
    assert device.bootenv().pending is None


def test_an_authorization_for_this_device_and_release_installs_it_once_r58(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert device.bootenv().pending == "b"
    assert event_types(device)[-3:] == [
        "authorization_accepted",
        "authorization_used",
        "installed",
    ]
    accepted = device.events.last(EventType.AUTHORIZATION_ACCEPTED)
    assert accepted is not None
    assert accepted["detail"]["technician"] == "tom"
    assert accepted["detail"]["nonce"] == document.authorization.nonce
    store = authorizations.load(device, at=datetime.now(UTC))
    record = store.records[document.authorization.nonce]
    assert record.used_at is not None


@pytest.mark.parametrize("wipe_cache", [False, True], ids=["after-restart", "after-cache-wipe"])
def test_a_used_authorization_is_refused_as_a_replay_after_a_restart_or_a_cache_wipe_r25(
    device: StateDir,
    sim: Sim,
    authority: Signer,
    monkeypatch: pytest.MonkeyPatch,
    *,
    wipe_cache: bool,
) -> None:
    """Power lost between spending the document and marking the slot pending: it stays spent."""
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)

    def power_cut(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for the power going off

    with monkeypatch.context() as patch:
        patch.setattr(SlotWriter, "mark_pending", power_cut)
        with pytest.raises(KeyboardInterrupt):
            update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    restarted = StateDir(device.root)
    if wipe_cache:
        shutil.rmtree(restarted.metadata_dir)
    result = update(restarted, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.REFUSED, EventType.AUTHORIZATION_REPLAYED)
    assert restarted.bootenv().pending is None


def test_an_authorization_for_another_device_is_refused_r58(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority, device="pump-0002")
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert (result.outcome, result.event) == (Outcome.REFUSED, EventType.AUTHORIZATION_WRONG_DEVICE)
    assert device.bootenv().pending is None


def test_an_authorization_for_another_release_is_refused(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    older = sim.release("2.0.0", 2, requires_authorization=True)
    sim.release("2.1.0", 2, requires_authorization=True)
    document = authorize(sim, older, authority)
    result = check(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    # 2.1.0 is refused for want of its own authorization; 2.0.0 is the one allowed.
    assert result.outcome is Outcome.AVAILABLE
    assert result.candidate is not None and result.candidate.path == older
    assert "authorization_wrong_release" in event_types(device)


def test_an_authorization_for_the_same_path_with_other_bytes_is_refused(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority, digest="00" * 32)
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.event is EventType.AUTHORIZATION_WRONG_RELEASE
    assert device.bootenv().pending is None


def test_an_expired_authorization_is_refused(device: StateDir, sim: Sim, authority: Signer) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    issued = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    document = authorize(sim, path, authority, issued=issued)
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.event is EventType.AUTHORIZATION_EXPIRED


def test_an_authorization_expired_by_the_time_floor_is_refused_even_if_the_clock_is_behind(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    """R52: a clock set back cannot revive an expired authorization (the floor counts)."""
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)
    device.raise_time_floor(datetime.now(UTC) + timedelta(minutes=20))
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.event is EventType.AUTHORIZATION_EXPIRED


def test_a_tampered_authorization_is_refused(device: StateDir, sim: Sim, authority: Signer) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    tree = authorize(sim, path, authority, device="pump-0002").to_dict()
    tree["signed"]["device_id"] = DEVICE
    tampered = SignedAuthorization.from_dict(tree)
    result = update(device, sim.remote(), authorizations=[tampered], directive=STANDALONE)
    assert result.event is EventType.AUTHORIZATION_BAD_SIGNATURE


def test_an_authorization_signed_by_an_untrusted_or_rotated_out_key_is_refused_r47(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    stranger = CryptoSigner.generate_ed25519()
    result = update(
        device, sim.remote(), authorizations=[authorize(sim, path, stranger)], directive=STANDALONE
    )
    assert result.event is EventType.AUTHORIZATION_UNTRUSTED_KEY
    successor = CryptoSigner.generate_ed25519()
    sim.trust_authorization_key(successor)  # the officers rotate the authorization key out
    result = update(
        device, sim.remote(), authorizations=[authorize(sim, path, authority)], directive=STANDALONE
    )
    assert result.event is EventType.AUTHORIZATION_UNTRUSTED_KEY
    result = update(
        device,
        sim.remote(),
        authorizations=[authorize(sim, path, successor, nonce="6b" * 32)],
        directive=STANDALONE,
    )
    assert result.outcome is Outcome.INSTALLED


def test_a_deferred_install_authorized_in_time_installs_after_the_expiry_within_its_grace_r52(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)
    deferred = update(
        device, sim.remote(), guard=BUSY, authorizations=[document], directive=STANDALONE
    )
    assert deferred.outcome is Outcome.DEFERRED
    # Twenty minutes later (the document expired five minutes ago), the device is idle.
    device.raise_time_floor(datetime.now(UTC) + timedelta(minutes=20))
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert device.bootenv().pending == "b"


def test_a_deferred_install_finishes_with_its_kept_document_when_the_server_stops_offering_it(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    """R52: picked up at one poll, deferred, installed at a later poll that brings no document."""
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)
    assert update(
        device, sim.remote(), guard=BUSY, authorizations=[document], directive=STANDALONE
    ).outcome is (Outcome.DEFERRED)
    device.raise_time_floor(datetime.now(UTC) + timedelta(minutes=20))
    result = update(device, sim.remote(), directive=STANDALONE)
    assert result.outcome is Outcome.INSTALLED
    assert event_types(device).count("authorization_accepted") == 1
    assert "authorization_used" in event_types(device)


def test_a_deferred_install_past_its_grace_is_refused_as_expired(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)
    update(device, sim.remote(), guard=BUSY, authorizations=[document], directive=STANDALONE)
    device.raise_time_floor(datetime.now(UTC) + timedelta(hours=2))
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.event is EventType.AUTHORIZATION_EXPIRED
    assert device.bootenv().pending is None


def test_the_nonce_record_is_kept_outside_the_metadata_cache(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    path = sim.release("2.0.0", 2, requires_authorization=True)
    update(
        device, sim.remote(), authorizations=[authorize(sim, path, authority)], directive=STANDALONE
    )
    store = authorizations.store_path(device)
    assert store.is_file()
    assert device.metadata_dir not in store.parents


def test_a_damaged_nonce_record_is_rebuilt_from_the_log_with_every_nonce_spent_r33(
    device: StateDir, sim: Sim, authority: Signer
) -> None:
    """Fail closed: damage never makes a used or bound document usable again."""
    path = sim.release("2.0.0", 2, requires_authorization=True)
    document = authorize(sim, path, authority)
    update(
        device, sim.remote(), guard=BUSY, authorizations=[document], directive=STANDALONE
    )  # bound, not used
    authorizations.store_path(device).write_bytes(b"{ damaged")
    result = update(device, sim.remote(), authorizations=[document], directive=STANDALONE)
    assert result.event is EventType.AUTHORIZATION_REPLAYED
    assert "integrity_failure" in event_types(device)
