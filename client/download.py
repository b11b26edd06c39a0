"""Streaming a target into the inactive slot, in one pass.

The bytes go from the network straight into the slot, bounded by the signed
length (a mirror sending more is cut off at the first extra byte:
``too_long``). They are hashed once, where it counts: the slot writer's
``commit`` syncs the slot, then reads it back (from the page cache) and
checks its length and SHA-256 before the slot may boot (``bad_hash``, the
slot's content discarded, otherwise). A digest taken on the way in could
only repeat that check: whatever it would catch, the read-back catches too,
and the read-back also covers a file changed after the download. So the
image crosses memory twice (network to slot, slot to hash), not three or
four times (download, verify, copy, verify).

A body that ends cleanly before the signed length is a length failure
(``bad_hash``), discarded like a wrong hash: only a broken connection is
worth resuming.

An interrupted download keeps what reached the slot and continues later
with a ``Range`` request from the writer's durable offset. Checkpoints are
spaced in time (``CHECKPOINT_SECONDS``, and at least ``CHECKPOINT`` bytes
since the last): a power cut loses at most about that much download time,
and a fast download pays no fsync before the one ``commit`` needs anyway
(each checkpoint syncs the slot and writes the progress record atomically:
three fsyncs). A network failure or a stop checkpoints at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tuf.api.exceptions import DownloadError

from client.errors import InstallError
from client.events import EventType
from client.fetcher import ResumableFetcher
from client.slots import SlotWriter

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0
CHECKPOINT = 1024 * 1024


class DownloadStoppedError(DownloadError):
    """The download was asked to stop (the agent is shutting down); progress is kept."""


def download_into(
    writer: SlotWriter,
    *,
    fetcher: ResumableFetcher,
    url: str,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Fill ``writer``'s slot with its target's bytes from ``url``, up to its signed length.

    Raises ``ClientError`` after discarding the slot's content for a body
    longer (``too_long``) or, ending cleanly, shorter (``bad_hash``: a length
    failure) than signed, and ``DownloadError`` for a network failure after
    checkpointing what arrived, to resume from. The bytes are checked by
    ``commit``.
    """
    target = writer.target
    checkpointed, since_checkpoint = clock(), 0
    try:
        if writer.offset < target.length:
            if writer.offset:
                logger.info("resuming %s at byte %d", target.path, writer.offset)
            for chunk in fetcher.fetch_from(url, writer.offset):
                writer.write(chunk)  # past the signed length: too_long, slot cleared
                since_checkpoint += len(chunk)
                if since_checkpoint >= CHECKPOINT and clock() - checkpointed >= CHECKPOINT_SECONDS:
                    writer.checkpoint()
                    checkpointed, since_checkpoint = clock(), 0
                if should_stop():
                    raise DownloadStoppedError(
                        f"stopped at byte {writer.offset} of {target.length}"
                    )
    except DownloadError:
        writer.checkpoint()
        raise
    if writer.offset < target.length:
        # The answer ended cleanly (a broken connection raises above): the server
        # says this is the whole file, and it is shorter than signed. Resuming
        # would only ask for bytes it says do not exist.
        writer.abort()
        raise InstallError(
            f"{target.path}: the server's whole answer ends at byte {writer.offset}"
            f" of the {target.length} signed; the bytes are discarded",
            event=EventType.BAD_HASH,
        )
