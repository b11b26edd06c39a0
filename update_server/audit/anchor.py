"""The head of the audit log, signed and anchored outside the database (R27, R28).

The rule: before an action is answered, the head of the log that holds its
entry is signed by the audit key and written to ``<data-dir>/audit-head.json``,
and ``verify`` requires the database to still hold that head. Deleting the
newest entries is then named as a cut tail, whoever did it.

Why outside the database: a checkpoint stored beside the entries is deleted
with them (cut the tail and its checkpoints, and what remains is a shorter
log that verifies). The anchor is as safe as the data directory: it stops
whoever can write the database but not the server's files (a database
administrator, a PostgreSQL host, an injected statement). Whoever can write
the data directory also holds the HSM PIN file and could sign a shorter
head; against that, the syslog copy (R31) is the witness.

Invariants:

* the anchor only moves forward along the chain: it is written after the
  commit (a rolled-back entry is never anchored), only by a higher sequence
  number, and only if the append found the database still holding the
  anchored head (``holds``); once the log has been cut or rewritten, the
  anchor stays where it was and every append logs the alarm, so ``verify``
  keeps naming the damage instead of the server's next entry covering it;
* concurrent writers (gunicorn workers, threads, commands) serialise on an
  exclusive ``flock`` of ``audit-head.json.lock``; the file is replaced
  atomically (temporary file, fsync, rename, directory fsync), so a reader
  sees the old head or the new one, never a torn file;
* anchoring fails closed: an anchor that cannot be signed or written after
  a commit raises ``AnchorError`` (the action is answered as a failure, 503,
  though committed), and the next append first anchors the committed head
  the anchor lags behind (``holds``), or is refused (503) if it still cannot:
  no action is answered while an entry it depends on is not anchored.

After restoring the database from a backup, the anchor names the entries the
restore lost; once that is accounted for, move the file aside: the next
append anchors the restored log's head.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from securesystemslib.signer import Signer
from sqlalchemy import select
from sqlalchemy.orm import Session

from fwcommon.files import atomic_write
from update_server.audit.chain import EntryRecord
from update_server.audit.checkpoint import SignedCheckpoint, sign_head
from update_server.audit.errors import AnchorError, CheckpointError
from update_server.models import AuditEntry

logger = logging.getLogger(__name__)

ANCHOR_FILE = "audit-head.json"
MAX_ANCHOR_BYTES = 64 * 1024


def anchor_file(data_dir: Path) -> Path:
    """Where the server keeps the anchored head of its audit log."""
    return data_dir / ANCHOR_FILE


def read_anchor(path: Path) -> SignedCheckpoint | None:
    """The anchored head, or None if there is no anchor file.

    Raises ``CheckpointError`` for a file that is not an anchor (damaged).
    Its signature is checked by ``checkpoint.verify_log``, not here.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_ANCHOR_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_ANCHOR_BYTES:
        raise CheckpointError(f"the head anchor {path} is damaged: over {MAX_ANCHOR_BYTES} bytes")
    try:
        return SignedCheckpoint.from_json(json.loads(data))
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"the head anchor {path} is damaged: {exc}") from None


class HeadAnchor:
    """The ``AuditSink.anchor`` of a server: ``holds`` in the append, ``advance`` after it."""

    def __init__(self, path: Path, signer: Callable[[], Signer]) -> None:
        self.path = path
        self._signer = signer

    def holds(self, session: Session, committed: tuple[int, str] | None) -> bool:
        """Whether the database still holds the anchored head (in the append's transaction).

        ``committed`` is the log's committed head, taken under the log's lock
        at a transaction's first append (None at later ones). If the anchor
        lags behind it (a commit whose anchoring
        failed, or another worker's that is anchoring right now), that head
        is anchored first; ``AnchorError`` if it cannot be: the append, and
        with it the action, is refused.
        """
        try:
            anchored = read_anchor(self.path)
        except CheckpointError as exc:
            logger.critical("audit head not anchored: %s", exc)
            return False
        if anchored is None:  # first start, or a log from before anchoring: anchor it first
            if committed is not None and committed[0] > 0:
                self._catch_up(session, committed)
            return True
        stored = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == anchored.seq))
        if stored != anchored.head_hash:
            logger.critical(
                "the audit log no longer holds the head anchored at entry %d: it was cut or "
                "rewritten; the anchor stays there: run 'fwserver audit verify'",
                anchored.seq,
            )
            return False
        if committed is not None and anchored.seq < committed[0]:
            self._catch_up(session, committed)
        return True

    def _catch_up(self, session: Session, committed: tuple[int, str]) -> None:
        seq, head_hash = committed
        time = session.scalar(select(AuditEntry.time).where(AuditEntry.seq == seq))
        if time is None:  # the head read under the log's lock is there: never expected
            raise AnchorError(f"audit entry {seq} vanished while the log was locked")
        if time.tzinfo is None:  # SQLite gives it back naive; it is stored as UTC
            time = time.replace(tzinfo=UTC)
        try:
            self._anchor(seq, head_hash, time)
        except Exception as exc:  # noqa: BLE001 - any HSM or OS failure fails closed
            logger.error("audit head at entry %d not anchored, action refused: %s", seq, exc)  # noqa: TRY400
            raise AnchorError(
                f"the audit log's head (entry {seq}) cannot be anchored outside the database"
                f" ({type(exc).__name__}): the action is refused; see the server's log"
            ) from None

    def advance(self, head: EntryRecord) -> None:
        """Sign ``head`` and anchor it, unless a later head is anchored.

        Raises ``AnchorError`` if it cannot: the action is committed, but it
        is not answered as done, and the next append anchors or is refused.
        """
        try:
            self._anchor(head.seq, head.hash, head.time)
        except Exception as exc:  # noqa: BLE001 - any HSM or OS failure fails closed
            # HSM and OS errors never quote a PIN; no traceback for an expected failure.
            logger.error("audit head at entry %d not anchored: %s", head.seq, exc)  # noqa: TRY400
            raise AnchorError(
                f"done, but the audit entry {head.seq} it depends on could not be anchored"
                f" outside the database ({type(exc).__name__}); further actions are refused"
                " until it can: see the server's log"
            ) from None

    def _anchor(self, seq: int, head_hash: str, time: datetime) -> None:
        """Sign and anchor entry ``seq``, unless it or a later one is anchored already."""
        current = read_anchor(self.path)
        if current is not None and current.seq >= seq:
            return  # another worker anchored it, or a later head: no signature
        signed = sign_head(self._signer(), seq=seq, head_hash=head_hash, now=time)
        raise_anchor(self.path, signed)


def raise_anchor(path: Path, head: SignedCheckpoint) -> bool:
    """Anchor ``head`` if it is later than the anchored one; whether it was written."""
    with _exclusive(path):
        current = read_anchor(path)
        if current is not None and current.seq >= head.seq:
            return False
        body = json.dumps(head.to_json(), sort_keys=True, separators=(",", ":"))
        atomic_write(path, body.encode() + b"\n", mode=0o600)
        return True


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold the anchor's lock file: one writer at a time across processes and threads."""
    fd = os.open(path.with_name(f"{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
