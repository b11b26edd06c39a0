"""Writing firmware into the inactive slot, power-safe (R13, R24, R33).

The order of durable steps is the safety argument; a power cut between any
two of them leaves a device that boots a verified image:

1. ``open_inactive``: the slot's record and evidence are removed (and the
   directory synced) *before* its bytes change, so a half-written slot is
   never bootable; a progress record names the target being written.
2. ``write`` / ``checkpoint``: bytes go to the slot; a checkpoint syncs them
   and records the offset, so a resume continues from durable bytes only.
3. ``commit``: the image is synced, then read back from disk and checked
   against the signed record (the bytes installed are the bytes verified: a
   file swapped after verification is caught here), the evidence is checked
   against the provisioned root and stored, then the record (never marked
   committed: only a passed trial boot commits it); only then is the boot
   environment switched, atomically, to "pending, N tries". ``commit`` is
   ``seal`` (everything up to the record) then ``mark_pending`` (the switch);
   between the two the clinical-use guard (R52, ``client.readiness``) may
   defer the switch, leaving a sealed slot that a later install of the same
   target resumes from its end.

Refusals are raised, not logged: each ``ClientError`` carries its event and
the caller logs it once. ``commit`` logs ``installed``, the one decision
taken here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from client.errors import ClientError, FailsafeError, InstallError
from client.events import EventType
from client.evidence import clear_evidence, verify_evidence, write_evidence
from client.integrity import check_image
from client.state import Mode, SlotRecord, StateDir, other
from fwcommon.files import atomic_write, fsync_dir

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
MAX_TRIES = 10
#: Storage kept free beyond a slot's image: its record, evidence, the event log's next lines.
RESERVE = 4 * 1024 * 1024


@dataclass(frozen=True)
class TargetRef:
    """What is about to be written: the signed target's path, length and SHA-256."""

    path: str
    length: int
    sha256: str

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 0:
            raise ValueError(f"{self.path}: length must be a non-negative integer")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ValueError(f"{self.path}: sha256 must be 64 lowercase hexadecimal characters")


def _read_progress(state: StateDir, slot: str) -> tuple[TargetRef, int] | None:
    """The interrupted download in ``slot``, if its progress record is sound."""
    try:
        data = json.loads(state.slot_progress(slot).read_text())
        target = TargetRef(data["path"], data["length"], data["sha256"])
        offset = data["offset"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= target.length:
        return None
    return target, offset


def _write_progress(state: StateDir, slot: str, target: TargetRef, offset: int) -> None:
    data = {**asdict(target), "offset": offset}
    atomic_write(state.slot_progress(slot), json.dumps(data, sort_keys=True).encode())


def _clear_progress(state: StateDir, slot: str) -> None:
    file = state.slot_progress(slot)
    if file.exists():
        file.unlink()
        fsync_dir(file.parent)


def _resume_offset(state: StateDir, slot: str, target: TargetRef) -> int | None:
    """Where a write of ``target`` into ``slot`` may resume (None: from scratch).

    From the last checkpoint of an interrupted download of the same target,
    or from its end if the slot was sealed with it but a power cut came before
    it was marked pending, or it was given up at boot (``commit`` checks every
    byte again either way). A sealed slot resumes from its end only if its
    bytes still hash to the record: one whose bytes decayed (the reason a
    boot gave it up) is written again, rather than failing ``commit`` once.
    """
    image = state.slot_image(slot)
    size = image.stat().st_size if image.is_file() else -1
    progress = _read_progress(state, slot)
    if progress is not None and progress[0] == target and size >= progress[1]:
        return progress[1]
    try:
        record = state.slot_record(slot)
    except ClientError:
        return None
    sealed = record is not None and not record.failed and size == target.length
    if (
        sealed
        and record
        and (record.target_path, record.length, record.sha256)
        == (
            target.path,
            target.length,
            target.sha256,
        )
        and _intact(image, record)
    ):
        return target.length
    return None


def _intact(image: Path, record: SlotRecord) -> bool:
    """Whether a sealed slot still holds its record's bytes (a flipped byte: start over)."""
    try:
        check_image(image, record)
    except ClientError:
        return False
    return True


def _check_room(state: StateDir, image: Path, target: TargetRef) -> None:
    """Refuse a target larger than a slot, or than the storage free for it (nothing written).

    A validly signed length is still only a claim about size: 16 TiB would
    fill the disk the event log, the floors and the other slot live on. The
    bytes the slot holds now count as free (they are overwritten), and
    ``RESERVE`` stays free for the records written after the image.
    """
    capacity = state.identity().slot_capacity
    if target.length > capacity:
        raise InstallError(
            f"{target.path}: {target.length} bytes signed, a slot holds {capacity};"
            " nothing written",
            event=EventType.INSUFFICIENT_SPACE,
        )
    held = image.stat().st_size if image.is_file() else 0
    free = shutil.disk_usage(state.slots_dir if state.slots_dir.is_dir() else state.root).free
    if target.length + RESERVE > free + held:
        raise InstallError(
            f"{target.path}: {target.length} bytes signed, {free + held - RESERVE} free for"
            " the slot; nothing written (free storage, then update again)",
            event=EventType.INSUFFICIENT_SPACE,
        )


def known_bad(state: StateDir) -> frozenset[str]:
    """SHA-256 of every firmware that failed its health check here (no reinstall loop)."""
    return frozenset(state.known_bad())


def open_inactive(state: StateDir, target: TargetRef, *, recovery: bool = False) -> SlotWriter:
    """Open the slot that is not active for writing ``target``.

    An interrupted download of the same target (same path, length and SHA-256)
    resumes from its last checkpoint; anything else starts from zero. Refused
    in failsafe mode unless ``recovery`` (the caller vouches that the target is
    a signed recovery), while a slot waits for its trial boot, for a
    firmware that already failed its health check on this device, and for
    one larger than a slot or than the free storage (``insufficient_space``);
    every refusal comes before the slot changes.
    """
    state.require_provisioned()
    env = state.bootenv()
    if env.mode is Mode.FAILSAFE and not recovery:
        raise FailsafeError("the device is in failsafe mode: only a signed recovery is installed")
    if env.pending is not None:
        raise InstallError(
            f"slot {env.pending} waits for its trial boot: run 'fwclient boot' first"
        )
    if target.sha256 in known_bad(state) and not recovery:
        raise InstallError(
            f"{target.path} failed its health check on this device before; not installed again",
            event=EventType.KNOWN_BAD,
        )
    slot = other(env.active)
    image = state.slot_image(slot)
    _check_room(state, image, target)
    offset = _resume_offset(state, slot, target)
    # The slot stops being bootable before any of its bytes change.
    state.write_slot_record(slot, None)
    clear_evidence(state.slot_evidence(slot))
    if offset is None:
        offset = 0
        _write_progress(state, slot, target, 0)
    state.slots_dir.mkdir(parents=True, exist_ok=True)
    handle = image.open("r+b" if image.is_file() else "w+b")
    try:
        handle.truncate(offset)  # bytes after the checkpoint may not have reached the disk
        handle.seek(offset)
        os.fsync(handle.fileno())
        fsync_dir(state.slots_dir)
    except BaseException:
        handle.close()
        raise
    return SlotWriter(state, slot, target, offset, handle, recovery=recovery)


class SlotWriter:
    """Appends one target's bytes to a slot; ``commit`` makes it bootable."""

    def __init__(
        self,
        state: StateDir,
        slot: str,
        target: TargetRef,
        offset: int,
        handle: BinaryIO,
        *,
        recovery: bool,
    ) -> None:
        self.state = state
        self.slot = slot
        self.target = target
        self.offset = offset
        self.recovery = recovery
        self._handle: BinaryIO | None = handle
        self._sealed = False

    def __enter__(self) -> SlotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> BinaryIO:
        if self._handle is None:
            raise InstallError(f"slot {self.slot} is closed")
        return self._handle

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; more than the signed length clears the slot (endless data)."""
        handle = self._open()
        if self.offset + len(chunk) > self.target.length:
            self.abort()
            raise InstallError(
                f"{self.target.path}: more than the {self.target.length} bytes signed",
                event=EventType.TOO_LONG,
            )
        handle.write(chunk)
        self.offset += len(chunk)

    def checkpoint(self) -> None:
        """Make the bytes written so far durable and remember how far a resume may start."""
        handle = self._open()
        handle.flush()
        os.fsync(handle.fileno())
        _write_progress(self.state, self.slot, self.target, self.offset)

    def commit(
        self,
        *,
        record: SlotRecord,
        evidence: Mapping[str, bytes],
        tries: int = 3,
        now: datetime | None = None,
    ) -> None:
        """Check the slot's bytes from disk, store evidence and record, then mark it pending."""
        if not 1 <= tries <= MAX_TRIES:
            raise ValueError(f"tries must be between 1 and {MAX_TRIES}")
        self.seal(record=record, evidence=evidence)
        self.mark_pending(record=record, tries=tries, now=now or datetime.now(UTC))

    def seal(self, *, record: SlotRecord, evidence: Mapping[str, bytes]) -> None:
        """Check the slot's bytes from disk, store evidence and record; not yet pending.

        A sealed slot that is never marked pending (the clinical-use guard
        deferred it, R52, or a power cut came first) is not booted; the next
        ``open_inactive`` of the same target resumes from its end, so its
        bytes are hashed again rather than downloaded again.
        """
        handle = self._open()
        if (record.target_path, record.length, record.sha256) != (
            self.target.path,
            self.target.length,
            self.target.sha256,
        ):
            self.abort()
            raise InstallError(
                f"the record describes {record.target_path}, not the target written",
                event=EventType.BAD_HASH,
            )
        if self.offset != self.target.length:
            raise InstallError(f"{self.target.path}: {self.offset} of {self.target.length} bytes")
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self._handle = None
        self._seal(record, evidence)
        self._sealed = True

    def mark_pending(
        self,
        *,
        record: SlotRecord,
        tries: int,
        now: datetime,
        ready_check: str | None = None,
        transfer: Mapping[str, object] | None = None,
    ) -> None:
        """Switch the boot environment to "pending, ``tries`` tries"; log ``installed``.

        Only after ``seal``; ``ready_check`` is what the clinical-use guard
        answered (R52), kept in the log entry, and ``transfer`` how the bytes
        came (issue 13: ``client.delta``), added to its detail.
        """
        if not 1 <= tries <= MAX_TRIES:
            raise ValueError(f"tries must be between 1 and {MAX_TRIES}")
        if not self._sealed:
            raise InstallError(f"slot {self.slot} is not sealed: nothing to mark pending")
        self._mark_pending(record, tries, now, ready_check, transfer or {})

    def _seal(self, record: SlotRecord, evidence: Mapping[str, bytes]) -> None:
        """Verify the bytes on disk and the evidence, then store evidence and record."""
        state = self.state
        try:
            check_image(state.slot_image(self.slot), record)
            verify_evidence(
                state.trusted_root.read_bytes(),
                evidence,
                record,
                hardware_model=state.identity().hardware_model,
            )
        except ClientError as exc:
            self.abort()
            raise InstallError(f"slot {self.slot}: {exc}", event=exc.event) from None
        write_evidence(state.slot_evidence(self.slot), evidence)
        # Committed only by its trial boot (client.boot), whatever the caller says.
        state.write_slot_record(self.slot, replace(record, committed=False))
        _clear_progress(state, self.slot)

    def _mark_pending(
        self,
        record: SlotRecord,
        tries: int,
        now: datetime,
        ready_check: str | None,
        transfer: Mapping[str, object],
    ) -> None:
        env = self.state.bootenv()
        if env.mode is Mode.FAILSAFE and not self.recovery:
            raise FailsafeError(
                "the device entered failsafe mode: only a signed recovery is booted"
            )
        if env.pending is not None or env.active == self.slot:
            raise InstallError(f"the boot environment changed while slot {self.slot} was written")
        self.state.events.append(
            EventType.INSTALLED,
            f"firmware {record.version} installed in slot {self.slot}, {tries} boot tries",
            now=now,
            slot=self.slot,
            target=record.target_path,
            version=record.version,
            security_version=record.security_version,
            recovery=self.recovery,
            **({} if ready_check is None else {"ready_check": ready_check}),
            **transfer,
        )
        self.state.write_bootenv(
            env.with_changes(
                pending=self.slot, tries_left=tries, previous=env.active, recovery=self.recovery
            )
        )

    def close(self) -> None:
        """Stop writing, keeping checkpointed bytes for a resume; the slot stays unbootable."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def abort(self) -> None:
        """Give the download up and forget its bytes: the next open starts from zero.

        For content that cannot be trusted (too long, wrong hash): resuming
        from it would only fail again.
        """
        self.close()
        image = self.state.slot_image(self.slot)
        if image.is_file():
            with image.open("r+b") as handle:
                handle.truncate(0)
                os.fsync(handle.fileno())
        _clear_progress(self.state, self.slot)
