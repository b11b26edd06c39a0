"""Signed releases and provisioned devices for tests of the client's state.

``SignedLine`` builds a real repository with python-tuf's Metadata API
(``tests.client.tuf_repo``, as the simulator does; keys made here), so a
slot's evidence is the signed metadata a device receives: root
versions, ``targets`` and the product line (and its hashed bin). A device
state directory is provisioned with that repository's first root and a
factory image in slot ``a``. Other client tests may reuse all of it.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Signer

from client.boot import Outcome, boot
from client.events import EventType
from client.evidence import role_file_name, root_file_name, write_evidence
from client.integrity import verify_sealed, verify_slot
from client.slots import TargetRef, open_inactive
from client.state import SLOTS, BootEnv, DeviceIdentity, Floor, SlotRecord, StateDir
from fwcommon.files import atomic_write
from tests.client.tuf_repo import TufRepo, firmware_custom

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
MODEL = "pump-x100"
LINE = "pump-x100"
HEALTHY = (sys.executable, "-c", "raise SystemExit(0)")
UNHEALTHY = (sys.executable, "-c", "raise SystemExit(1)")
HANGING = (sys.executable, "-c", "import time; time.sleep(30)")


def image_bytes(version: str, size: int) -> bytes:
    """A deterministic firmware image, different for every version."""
    block = hashlib.sha256(version.encode()).digest() * 128
    return (block * (size // len(block) + 1))[:size]


@dataclass(frozen=True)
class Release:
    """A signed firmware: its bytes, the record a verified install keeps, its evidence."""

    image: bytes
    record: SlotRecord
    evidence: dict[str, bytes] = field(repr=False)

    @property
    def target(self) -> TargetRef:
        return TargetRef(self.record.target_path, self.record.length, self.record.sha256)

    @property
    def version(self) -> str:
        return self.record.version


class SignedLine:
    """A repository with one product line (2 of 2: alice and bob), optionally binned."""

    def __init__(self, path: Path, *, bin_bits: int | None = None, now: datetime = NOW) -> None:
        self.path = path
        self.now = now
        names = ("root", "targets", "snapshot", "timestamp", "alice", "bob")
        self.keys: dict[str, Signer] = {n: CryptoSigner.generate_ed25519() for n in names}
        self.repo = TufRepo(path, self.keys, now=lambda: self.now)
        self.repo.create_one_key_per_role()
        self.repo.delegate_line(
            LINE,
            prefix=f"{MODEL}/",
            keys=("alice", "bob"),
            threshold=2,
            bin_bits=bin_bits,
            signers=("targets",),
        )

    @property
    def first_root(self) -> bytes:
        """The root a device is provisioned with."""
        return self.repo.root_bytes(1)

    def release(
        self,
        version: str,
        security_version: int,
        *,
        size: int = 8192,
        models: tuple[str, ...] = (MODEL,),
    ) -> Release:
        """Add and sign (alice, then bob) firmware ``version``; return what a device keeps."""
        image = image_bytes(version, size)
        target_path = f"{models[0]}/fw-{version}.bin"
        custom = firmware_custom(version, security_version, models)
        self.repo.add_target(LINE, target_path, image, custom, "alice", "bob")
        listed = target_path in self.repo.read(LINE).signed.targets  # a current release
        role = LINE if listed else self.repo.leaf_role(LINE, target_path)
        record = SlotRecord(
            target_path=target_path,
            length=len(image),
            sha256=hashlib.sha256(image).hexdigest(),
            version=version,
            security_version=security_version,
            role=role,
            verified_at=self.now.isoformat(),
        )
        return Release(image, record, self.evidence(role))

    def evidence(self, role: str) -> dict[str, bytes]:
        """Root versions after the first, targets, the line and (if binned) the bin."""
        metadata = self.path / "metadata"
        evidence: dict[str, bytes] = {}
        for file in metadata.glob("*.root.json"):
            version = int(file.name.split(".", 1)[0])
            if version > 1:
                evidence[root_file_name(version)] = file.read_bytes()
        for name in dict.fromkeys(("targets", LINE, role)):
            evidence[role_file_name(name)] = (metadata / role_file_name(name)).read_bytes()
        return evidence

    def rotate_root(self) -> None:
        """Replace the root key (the new root is signed by the old key and the new)."""
        self._rotate("root", signers=("root", "new"))

    def rotate_targets_key(self) -> None:
        """Replace the targets key (root v+1) and re-sign targets with the new key only."""
        self._rotate("targets", signers=("root",))
        with self.repo.edit("targets", "targets"):
            pass

    def _rotate(self, role: str, *, signers: tuple[str, ...]) -> None:
        """Replace ``role``'s key by a new one (``new`` among ``signers``: the new key signs)."""
        self.keys["new"] = CryptoSigner.generate_ed25519()
        self.repo.rotate(role, add=["new"], remove=[role], signers=signers)
        self.keys[role] = self.keys.pop("new")


def provision(path: Path, line: SignedLine, factory: Release | None = None) -> StateDir:
    """A device trusting ``line``'s first root, running ``factory`` from slot ``a``."""
    state = StateDir(path)
    atomic_write(state.trusted_root, line.first_root, mode=0o444)
    state.write_identity(DeviceIdentity("pump-0001", MODEL))
    state.write_bootenv(BootEnv(active="a"))
    if factory is not None:
        put_in_slot(state, "a", factory)
        state.write_floor(Floor(factory.record.security_version, factory.version))
    return state


def in_service(path: Path, line: SignedLine, factory: Release) -> StateDir:
    """A device as it is in service: provisioning logged, its factory firmware committed.

    (``provision`` lays the factory image in slot a as a finished install
    would; its first boot marks it committed, as the boot environment runs it.)
    """
    state = provision(path, line, factory)
    state.events.append(EventType.PROVISIONED, "provisioned", now=NOW)
    assert boot(state, health_check=HEALTHY, now=NOW).outcome is Outcome.BOOTED
    return state


def put_in_slot(state: StateDir, slot: str, release: Release) -> None:
    """Lay ``release`` into ``slot`` as a finished install would (no boot change)."""
    state.slots_dir.mkdir(parents=True, exist_ok=True)
    state.slot_image(slot).write_bytes(release.image)
    write_evidence(state.slot_evidence(slot), release.evidence)
    state.write_slot_record(slot, release.record)


def install(state: StateDir, release: Release, *, tries: int = 3, recovery: bool = False) -> str:
    """Write, verify and mark ``release`` pending, as the updater does; return the slot."""
    with open_inactive(state, release.target, recovery=recovery) as writer:
        writer.write(release.image[writer.offset :])
        writer.commit(record=release.record, evidence=release.evidence, tries=tries, now=NOW)
    return writer.slot


def event_types(state: StateDir) -> list[str]:
    return [str(entry["type"]) for entry in state.events.entries()]


def assert_consistent(state: StateDir) -> None:
    """The boot environment never points at an unverified slot.

    The active slot must verify unless the device is in failsafe mode; a
    pending slot must always be sealed (its bytes, record and evidence were
    durable before it was marked; a fall-back in progress may already have
    marked it failed), and differ from the active one.
    """
    env = state.bootenv()
    assert env.active in SLOTS
    if env.pending is not None:
        assert env.pending != env.active
        check = verify_sealed(state, env.pending)
        assert check.ok, f"pending slot {env.pending} does not verify: {check.reason}"
    if env.mode.value == "normal":
        check = verify_slot(state, env.active)
        assert check.ok, f"active slot {env.active} does not verify: {check.reason}"
    assert state.events.verify().ok


def corrupt(state: StateDir, slot: str, offset: int = 100) -> None:
    """Flip one byte of ``slot``'s image (storage decay or tampering at rest)."""
    image = state.slot_image(slot)
    data = bytearray(image.read_bytes())
    data[offset] ^= 0xFF
    image.write_bytes(bytes(data))
