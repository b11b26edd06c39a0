"""Is a slot's firmware the firmware that was verified into it? (R29, R39)

A slot is *sealed* when it has a record, the record is proven by the slot's
evidence from the provisioned root (``client.evidence``), and the image's
bytes have exactly the record's length and SHA-256. It *verifies* (may boot)
when it is sealed and its firmware never failed a trial boot on this device.
Nothing here writes: the boot and the ``verify`` command decide what to do
with the answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from client.errors import ClientError
from client.events import EventType
from client.evidence import read_evidence, verify_evidence
from client.state import SlotRecord, StateDir

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class VerifyResult:
    """The answer for one slot; ``event`` and ``reason`` say why it failed."""

    slot: str
    ok: bool
    record: SlotRecord | None = None
    reason: str = ""
    event: EventType | None = None


@dataclass(frozen=True)
class Digest:
    length: int
    sha256: str


def file_digest(path: Path, *, limit: int) -> Digest:
    """Length and SHA-256 of ``path``, reading at most ``limit + 1`` bytes."""
    hasher = hashlib.sha256()
    length = 0
    with path.open("rb") as handle:
        while length <= limit and (chunk := handle.read(min(CHUNK, limit + 1 - length))):
            hasher.update(chunk)
            length += len(chunk)
    return Digest(length, hasher.hexdigest())


def check_image(path: Path, record: SlotRecord) -> None:
    """Raise ``bad_hash`` unless ``path`` holds exactly the record's bytes."""
    try:
        digest = file_digest(path, limit=record.length)
    except OSError as exc:
        raise ClientError(f"{path.name}: {exc.strerror}", event=EventType.BAD_HASH) from None
    if digest != Digest(record.length, record.sha256):
        raise ClientError(
            f"{path.name} does not hold {record.target_path}: its length or SHA-256 differs",
            event=EventType.BAD_HASH,
        )


def verify_slot(state: StateDir, slot: str) -> VerifyResult:
    """Whether ``slot`` may boot: sealed, and not a firmware that failed here."""
    result = verify_sealed(state, slot)
    record = result.record
    if result.ok and record is not None and (record.failed or record.sha256 in state.known_bad()):
        return VerifyResult(
            slot, False, record, f"slot {slot} failed its trial boot", EventType.INTEGRITY_FAILURE
        )
    return result


def verify_sealed(state: StateDir, slot: str) -> VerifyResult:
    """Re-hash ``slot`` against its record, and the record against its evidence."""
    try:
        record = state.slot_record(slot)
    except ClientError as exc:
        return VerifyResult(slot, False, None, str(exc), EventType.INTEGRITY_FAILURE)
    if record is None:
        return VerifyResult(
            slot,
            False,
            None,
            f"slot {slot} holds no verified firmware",
            EventType.INTEGRITY_FAILURE,
        )
    try:
        evidence = read_evidence(state.slot_evidence(slot))
        verify_evidence(
            state.trusted_root.read_bytes(),
            evidence,
            record,
            hardware_model=state.identity().hardware_model,
        )
        check_image(state.slot_image(slot), record)
    except ClientError as exc:
        return VerifyResult(slot, False, record, str(exc), _integrity(exc.event))
    except OSError as exc:
        return VerifyResult(slot, False, record, f"slot {slot}: {exc}", EventType.INTEGRITY_FAILURE)
    return VerifyResult(slot, True, record)


def _integrity(event: EventType) -> EventType:
    """At rest, any failure is an integrity failure unless it names something sharper."""
    return EventType.INTEGRITY_FAILURE if event is EventType.ERROR else event
