"""``signer.inspect``: ``status`` (R38) and ``verify`` as a device would (R13, R29).

``status`` must say what still blocks publication; ``verify_repository``
must catch every alteration a device would refuse: an edited role file, an
altered firmware image, a root chain the pinned root did not sign.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner, Key, Signer
from tuf.api.metadata import DelegatedRole, Delegations, Metadata, Targets

from repo_metadata.firmware import FirmwareInfo
from signer.authoring import RoleKeys, add_firmware, init_repository
from signer.errors import SignerError
from signer.inspect import RoleStatus, status, verify_repository
from signer.keyops import rotate
from signer.repository import OfflineRepository
from signer.signing import sign_roles

INFO = FirmwareInfo(version="2.4.0", security_version=3, hardware_models=("pump-x100",))
PATH = "pump-x100/pump-fw-2.4.0.bin"

Opener = Callable[..., OfflineRepository]
Unchanged = Callable[[Path], AbstractContextManager[None]]


def by_role(repo: OfflineRepository) -> dict[str, RoleStatus]:
    return {entry.role: entry for entry in status(repo)}


@pytest.fixture
def unsigned(line: Path, open_repo: Opener, image: Path) -> Path:
    """pump-x100 holds one release nobody has signed yet."""
    add_firmware(open_repo(line), image=image, name="pump-fw", info=INFO)
    return line


@pytest.fixture
def signed(unsigned: Path, open_repo: Opener) -> Path:
    """The release signed by both pump-x100 engineers: ready to publish."""
    sign_roles(open_repo(unsigned, "alice", "bob"))
    return unsigned


# --- status ---------------------------------------------------------------------


def test_status_lists_missing_signatures_and_who_has_yet_to_sign(
    unsigned: Path, open_repo: Opener, people: dict[str, Signer]
) -> None:
    """R9 four eyes, made visible: pump-x100 waits for alice and bob."""
    roles = by_role(open_repo(unsigned))
    assert list(roles) == ["root", "targets", "pump-x100"]
    assert roles["root"].ready
    assert roles["targets"].ready
    line = roles["pump-x100"]
    assert not line.ready
    assert (line.version, line.signed, line.threshold, line.keys) == (1, 0, 2, 2)
    waiting = ", ".join(sorted(people[n].public_key.keyid[:12] for n in ("alice", "bob")))
    # The threshold is set by pump-x100's entry in targets, not by targets' own.
    assert line.problems == (
        "needs 2 more signature(s) (threshold 2 of its delegation in targets);"
        f" keys not yet signed: {waiting}",
    )


def test_status_is_ready_once_the_threshold_is_met(signed: Path, open_repo: Opener) -> None:
    """R38: status shows nothing blocking once both engineers signed."""
    roles = by_role(open_repo(signed))
    assert all(entry.ready and not entry.warnings for entry in roles.values())
    assert roles["pump-x100"].signed == 2


@pytest.mark.parametrize(
    ("days_later", "warned"),
    [(60, False), (62, True), (80, True)],
    ids=["31-days-left", "29-days-left", "11-days-left"],
)
def test_status_warns_under_30_days_before_expiry(
    signed: Path, open_repo: Opener, now: datetime, days_later: int, warned: bool
) -> None:
    """pump-x100 lives 91 days; a month before, the engineers are told to re-sign."""
    line = by_role(open_repo(signed, at=now + timedelta(days=days_later)))["pump-x100"]
    left = 91 - days_later
    expected = (f"expires in {left} day(s), on {now + timedelta(days=91):%Y-%m-%d}",)
    assert line.warnings == (expected if warned else ())
    assert line.ready


def test_status_reports_expired_roles_as_blocking(
    signed: Path, open_repo: Opener, now: datetime
) -> None:
    """TUF freeze attack: an expired role blocks publication until re-signed."""
    roles = by_role(open_repo(signed, at=now + timedelta(days=92)))
    assert roles["pump-x100"].problems == (
        f"expired on {now + timedelta(days=91):%Y-%m-%d}; edit and re-sign it",
    )
    assert roles["targets"].ready


# --- verify: metadata -----------------------------------------------------------------


def test_verify_accepts_a_complete_repository(signed: Path, now: datetime) -> None:
    """Control: a repository signed to every threshold verifies end to end."""
    report = verify_repository(signed, now=now)
    assert report.ok, report.failures
    assert report.checked == ["root", "targets", "pump-x100"]
    assert report.targets == 1


def test_verify_reports_a_tampered_role_file(signed: Path, now: datetime, image: Path) -> None:
    """An edited byte of signed content (the image hash) breaks both signatures."""
    file = signed / "metadata" / "pump-x100.json"
    data = file.read_bytes()
    real = hashlib.sha256(image.read_bytes()).hexdigest().encode()
    assert data.count(real) == 1
    forged = (b"0" if real[:1] != b"0" else b"1") + real[1:]
    file.write_bytes(data.replace(real, forged))
    report = verify_repository(signed, now=now)
    assert "pump-x100" not in report.checked
    assert len(report.failures) == 1
    assert report.failures[0].startswith("pump-x100: pump-x100 v1 has 0 valid signature(s)")
    assert report.failures[0].endswith("[rule: signature-threshold]")


def test_verify_reports_a_missing_delegated_role(signed: Path, now: datetime) -> None:
    """A delegated role whose file is missing is a failure, not skipped."""
    (signed / "metadata" / "pump-x100.json").unlink()
    report = verify_repository(signed, now=now)
    assert report.failures == ["pump-x100: delegated but pump-x100.json is missing"]


def test_verify_reports_expired_metadata(signed: Path, now: datetime) -> None:
    """TUF freeze attack: what a device would refuse after pump-x100 expired."""
    report = verify_repository(signed, now=now + timedelta(days=92))
    assert len(report.failures) == 1
    assert report.failures[0].startswith("pump-x100: ")
    assert report.failures[0].endswith("[rule: expired]")


# --- verify: firmware files --------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [lambda data: data + b"\x00", lambda data: b"\x00" + data[1:]],
    ids=["length", "hash"],
)
def test_verify_reports_a_tampered_firmware_file(
    signed: Path, now: datetime, image: Path, tmp_path: Path, tamper: Callable[[bytes], bytes]
) -> None:
    """R13/R29: the image on disk must be exactly the one the engineers signed."""
    targets_dir = tmp_path / "targets"
    (targets_dir / "pump-x100").mkdir(parents=True)
    (targets_dir / PATH).write_bytes(tamper(image.read_bytes()))
    report = verify_repository(signed, now=now, targets_dir=targets_dir)
    assert report.files == 0
    assert len(report.failures) == 1
    assert report.failures[0].startswith(f"{PATH}: file does not match its signed target")


def test_verify_counts_an_intact_firmware_file(
    signed: Path, now: datetime, image: Path, tmp_path: Path
) -> None:
    """Control for R13/R29: the signed image itself verifies."""
    targets_dir = tmp_path / "targets"
    (targets_dir / "pump-x100").mkdir(parents=True)
    (targets_dir / PATH).write_bytes(image.read_bytes())
    report = verify_repository(signed, now=now, targets_dir=targets_dir)
    assert report.ok, report.failures
    assert report.files == 1


# --- verify: from a pinned root ----------------------------------------------------------


def _rotate_root(repo: Path, people: dict[str, Signer], now: datetime) -> None:
    """Root v2 replaces officer3 with a new officer, signed by old and new thresholds."""
    new_officer = CryptoSigner.generate_ed25519()
    signers = [people["officer1"], people["officer2"], new_officer]
    rotate(
        OfflineRepository(repo, now=now, signers=signers),
        role="root",
        add=[new_officer.public_key],
        remove=[people["officer3"].public_key.keyid],
    )


def test_verify_from_a_pinned_root_walks_the_chain(
    signed: Path, people: dict[str, Signer], now: datetime, tmp_path: Path
) -> None:
    """Like a device provisioned with root v1, verify follows 2.root.json."""
    _rotate_root(signed, people, now)
    pinned = tmp_path / "pinned-root.json"
    pinned.write_bytes((signed / "metadata" / "1.root.json").read_bytes())
    report = verify_repository(signed, now=now, pinned_root=pinned)
    assert report.ok, report.failures
    assert report.checked == ["root", "targets", "pump-x100"]


def test_verify_from_a_pinned_root_refuses_a_root_it_did_not_sign(
    signed: Path, people: dict[str, Signer], now: datetime, tmp_path: Path
) -> None:
    """TUF arbitrary software / malicious mirror: a whole repository of the
    attacker's own, valid in itself, is refused from the device's root."""
    attacker = [CryptoSigner.generate_ed25519() for _ in range(4)]
    forged = tmp_path / "forged"
    init_repository(
        OfflineRepository(forged, now=now, signers=attacker, create=True),
        root=RoleKeys([attacker[0].public_key], 1),
        targets=RoleKeys([attacker[1].public_key], 1),
        snapshot=attacker[2].public_key,
        timestamp=attacker[3].public_key,
    )
    rotate(OfflineRepository(forged, now=now, signers=attacker[:1]), role="root", threshold=1)
    assert verify_repository(forged, now=now).ok
    pinned = tmp_path / "pinned-root.json"
    pinned.write_bytes((signed / "metadata" / "1.root.json").read_bytes())

    report = verify_repository(forged, now=now, pinned_root=pinned)

    assert report.checked == []
    assert len(report.failures) == 1
    assert report.failures[0].startswith("root: root v2 has 0 valid signature(s)")
    assert "required by the trusted root" in report.failures[0]


def _cycle(alice: Key) -> tuple[Delegations, Delegations]:
    """pump-x100 delegates beta, and beta delegates pump-x100 back."""

    def to(name: str) -> Delegations:
        entry = DelegatedRole(name, [alice.keyid], 1, False, ["pump-x100/beta/*"])
        return Delegations({alice.keyid: alice}, roles={name: entry})

    return to("beta"), to("pump-x100")


def test_signer_refuses_to_write_a_delegation_cycle_endless_walk(
    line: Path, open_repo: Opener, people: dict[str, Signer], unchanged: Unchanged
) -> None:
    """Rule delegation-cycle: a client would walk pump-x100 -> beta -> pump-x100 forever."""
    to_beta, back = _cycle(people["alice"].public_key)
    session = open_repo(line, "alice", "bob")
    with session.edit_targets("pump-x100") as pump:
        pump.delegations = to_beta
    with session.edit_targets("beta") as beta:
        beta.delegations = back
    with unchanged(line), pytest.raises(SignerError, match="delegation-cycle"):
        session.commit()


def test_verify_reports_a_delegation_cycle_written_by_another_tool(
    line: Path, people: dict[str, Signer], now: datetime
) -> None:
    """Rule delegation-cycle, as a device would meet it: fwsign verify names it."""
    to_beta, back = _cycle(people["alice"].public_key)
    metadata = line / "metadata"
    pump = Metadata.from_file(str(metadata / "pump-x100.json"))
    pump.signed.delegations = to_beta
    beta = Metadata(Targets(expires=now + timedelta(days=30), delegations=back))
    for md, names in ((pump, ("alice", "bob")), (beta, ("alice",))):
        md.signatures.clear()
        for name in names:
            md.sign(people[name], append=True)
    pump.to_file(str(metadata / "pump-x100.json"))
    beta.to_file(str(metadata / "beta.json"))

    report = verify_repository(line, now=now)
    assert not report.ok
    cycle = [failure for failure in report.failures if "[rule: delegation-cycle]" in failure]
    assert cycle, report.failures
    assert "remove one of these delegations" in cycle[0]  # what to do, not only what is wrong
