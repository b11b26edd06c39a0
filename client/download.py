"""Streaming a verified target into the inactive slot, in one pass.

The bytes go from the network straight into the slot writer while they are
hashed, bounded by the signed length (a mirror sending more is cut off at
the first extra byte: ``too_long``), so the image is read once, not three
times (download, verify, copy). An interrupted download keeps what reached
the slot (checkpointed every ``CHECKPOINT`` bytes) and continues later with a
``Range`` request from the writer's durable offset; the bytes already in
the slot are hashed again first, so the final digest always covers exactly
the bytes in the slot. A digest that does not match the signed one discards
the slot's content (``bad_hash``). The slot writer's ``commit`` then checks
the slot's bytes once more before the slot may boot.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from tuf.api.exceptions import DownloadError

from client.errors import InstallError, UpdateRefusedError
from client.events import EventType
from client.fetcher import ResumableFetcher
from client.slots import SlotWriter, TargetRef
from client.state import StateDir

logger = logging.getLogger(__name__)

CHECKPOINT = 4 * 1024 * 1024
_READ = 1024 * 1024


class DownloadStoppedError(DownloadError):
    """The download was asked to stop (the agent is shutting down); progress is kept."""


def download_into(
    writer: SlotWriter,
    *,
    state: StateDir,
    target: TargetRef,
    fetcher: ResumableFetcher,
    url: str,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Fill ``writer``'s slot with ``target`` from ``url``; raise if anything is off.

    Raises ``ClientError`` (``too_long``, ``bad_hash``) after discarding the
    slot's content, and ``DownloadError`` for a network failure after
    checkpointing what arrived, to resume from.
    """
    try:
        digest = _hash_prefix(state, writer.slot, writer.offset)
    except OSError as exc:
        writer.abort()
        raise InstallError(f"slot {writer.slot}: cannot read back its bytes ({exc})") from None
    received = writer.offset
    since_checkpoint = 0
    try:
        if received < target.length:
            if received:
                logger.info("resuming %s at byte %d", target.path, received)
            for chunk in fetcher.fetch_from(url, received):
                digest.update(chunk)
                writer.write(chunk)  # past the signed length: too_long, slot cleared
                received += len(chunk)
                since_checkpoint += len(chunk)
                if since_checkpoint >= CHECKPOINT:
                    writer.checkpoint()
                    since_checkpoint = 0
                if should_stop():
                    raise DownloadStoppedError(f"stopped at byte {received} of {target.length}")
    except DownloadError:
        writer.checkpoint()
        raise
    if received < target.length:
        writer.checkpoint()
        raise DownloadError(
            f"{target.path}: the connection ended at byte {received} of {target.length}"
        )
    if digest.hexdigest() != target.sha256:
        writer.abort()
        raise UpdateRefusedError(
            f"{target.path}: the downloaded bytes do not match the signed SHA-256",
            event=EventType.BAD_HASH,
        )


def _hash_prefix(state: StateDir, slot: str, length: int) -> hashlib._Hash:
    """SHA-256 state over the first ``length`` bytes already in ``slot``."""
    digest = hashlib.sha256()
    if not length:
        return digest
    remaining = length
    with state.slot_image(slot).open("rb") as image:
        while remaining:
            block = image.read(min(_READ, remaining))
            if not block:
                raise OSError(f"slot {slot} is shorter than its recorded progress")
            digest.update(block)
            remaining -= len(block)
    return digest
