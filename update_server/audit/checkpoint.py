"""Signed checkpoints of the audit chain head, and the whole-log check (R27, R28).

A checkpoint is the canonical JSON payload
``{"_type": "audit-checkpoint", "seq", "head_hash", "time", "server"}``
signed with the server's audit key: an online HSM key whose purpose lets it
sign these payloads and nothing else (R47). The hash chain alone cannot stop
someone who can write the database from recomputing every hash after an
edit, or from cutting the tail; a signature over the head can.

Two kinds of signed head, one payload:

* the cadence: a checkpoint stored in the database right after the append
  that crosses a multiple of ``audit_checkpoint_every`` (same transaction),
  and on demand. They bound a rewrite to a stretch of the log and travel in
  exports; being in the database, they are deleted with a cut tail;
* the anchor (``anchor.py``): the head of every committed transaction,
  signed before the action is answered and kept outside the database. It
  covers the tail: the newest entries a person's action depends on.

Invariants:

* each signature is verified with the key's public half as soon as it is
  made;
* ``server`` is the audit key's keyid: the one name of this server that is
  stored with every checkpoint, so the payload can be rebuilt from the
  database or an export alone;
* ``verify_log`` is pure and streaming: every checkpoint's signature, and
  the anchor's, is checked when the walk reaches its sequence number, and the
  chain must hold the signed head there; a signed head past the end means a
  truncated tail; a log of the server with no anchor is not intact.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Key, Signature, Signer
from sqlalchemy import select
from sqlalchemy.orm import Session

from update_server.audit.chain import (
    ChainBrokenError,
    ChainedEntry,
    ChainWalk,
    canonical_time,
    parse_canonical_time,
)
from update_server.audit.errors import CheckpointError
from update_server.audit.store import head, iter_entries, lock_log
from update_server.models import AuditCheckpoint, AuditEntry

logger = logging.getLogger(__name__)

PAYLOAD_TYPE = "audit-checkpoint"
#: How a report names the signed head the chain lost (``_check``, ``_truncated``).
SIGNED = "the signed checkpoint"
ANCHORED = "the head anchored outside the database"


@dataclass(frozen=True, kw_only=True)
class SignedCheckpoint:
    """The chain head at ``seq``, and the audit key's signature over it."""

    seq: int
    head_hash: str
    time: datetime
    keyid: str
    signature: str

    def payload(self) -> bytes:
        """The exact bytes the audit key signed (canonical JSON)."""
        body = {
            "_type": PAYLOAD_TYPE,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "time": canonical_time(self.time),
            "server": self.keyid,
        }
        return str(encode_canonical(body)).encode()

    def verify(self, key: Key) -> None:
        """Raise ``CheckpointError`` unless ``key`` (the audit key) signed this head."""
        if self.keyid != key.keyid:
            raise CheckpointError(
                f"the checkpoint at entry {self.seq} is signed by key {self.keyid[:16]}, "
                f"not by the audit key {key.keyid[:16]}"
            )
        try:
            key.verify_signature(Signature(self.keyid, self.signature), self.payload())
        except (UnverifiedSignatureError, VerificationError):
            raise CheckpointError(
                f"the signature of the checkpoint at entry {self.seq} does not verify "
                "with the audit key: it was forged or altered"
            ) from None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.payload())
        return {**body, "keyid": self.keyid, "signature": self.signature}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SignedCheckpoint:
        """Read ``to_json``'s form back; ``ValueError`` if it is anything else."""
        expected = {"_type", "seq", "head_hash", "time", "server", "keyid", "signature"}
        if set(obj) != expected or obj["_type"] != PAYLOAD_TYPE:
            raise ValueError(f"a checkpoint has exactly the fields {sorted(expected)}")
        if obj["server"] != obj["keyid"]:
            raise ValueError("a checkpoint's server is the keyid of its audit key")
        seq, texts = obj["seq"], [obj[name] for name in ("head_hash", "time", "keyid", "signature")]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError("a checkpoint's seq is a positive integer")
        if not all(isinstance(value, str) for value in texts):
            raise ValueError("a checkpoint's head_hash, time, keyid and signature are strings")
        return cls(
            seq=seq,
            head_hash=obj["head_hash"],
            time=parse_canonical_time(obj["time"]),
            keyid=obj["keyid"],
            signature=obj["signature"],
        )

    @classmethod
    def from_row(cls, row: AuditCheckpoint) -> SignedCheckpoint:
        time = row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC)
        return cls(
            seq=row.seq,
            head_hash=row.head_hash,
            time=time,
            keyid=row.keyid,
            signature=row.signature,
        )


def sign_head(signer: Signer, *, seq: int, head_hash: str, now: datetime) -> SignedCheckpoint:
    """Sign the head through the HSM signer and verify the signature at once."""
    keyid = signer.public_key.keyid
    unsigned = SignedCheckpoint(
        seq=seq, head_hash=head_hash, time=now.astimezone(UTC), keyid=keyid, signature=""
    )
    signature = signer.sign(unsigned.payload())
    signed = SignedCheckpoint(
        seq=seq, head_hash=head_hash, time=unsigned.time, keyid=keyid, signature=signature.signature
    )
    signed.verify(signer.public_key)
    return signed


def store(session: Session, checkpoint: SignedCheckpoint) -> None:
    session.add(
        AuditCheckpoint(
            seq=checkpoint.seq,
            head_hash=checkpoint.head_hash,
            time=checkpoint.time,
            keyid=checkpoint.keyid,
            signature=checkpoint.signature,
        )
    )
    session.flush()


def checkpoint_now(session: Session, signer: Signer, *, now: datetime) -> SignedCheckpoint:
    """Sign the current head on demand (``fwserver audit checkpoint``); flushes.

    Idempotent: a head that is already signed is returned as it is.
    """
    lock_log(session)
    seq, head_hash = head(session)
    if seq == 0:
        raise CheckpointError("the audit log is empty: there is no head to sign")
    existing = session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.seq == seq)).first()
    if existing is not None:
        return SignedCheckpoint.from_row(existing)
    signed = sign_head(signer, seq=seq, head_hash=head_hash, now=now)
    store(session, signed)
    return signed


def cadence(every: int, signer: Callable[[], Signer]) -> Callable[[Session, AuditEntry], None]:
    """The ``AuditSink.appended`` hook: checkpoint each ``every``-th entry.

    A key that cannot sign (token locked, PIN missing) does not refuse the
    action being recorded: the failure is logged, ``verify`` reports the
    longer stretch without a checkpoint, and the next boundary signs the
    head again. A database failure storing it does refuse the action.
    """

    def appended(session: Session, entry: AuditEntry) -> None:
        if entry.seq % every:
            return
        try:
            signed = sign_head(signer(), seq=entry.seq, head_hash=entry.hash, now=entry.time)
        except Exception as exc:  # noqa: BLE001 - any key failure: log it, keep the action
            # HSM errors never quote a PIN; no traceback for an expected failure.
            logger.error("audit checkpoint at entry %d not signed: %s", entry.seq, exc)  # noqa: TRY400
            return
        store(session, signed)

    return appended


def load_checkpoints(session: Session) -> list[SignedCheckpoint]:
    """Every checkpoint in sequence order (one per ``every`` entries: small)."""
    rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq))
    return [SignedCheckpoint.from_row(row) for row in rows]


def latest_checkpoint(session: Session) -> SignedCheckpoint | None:
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc()).limit(1)
    row = session.scalars(query).first()
    return SignedCheckpoint.from_row(row) if row is not None else None


@dataclass(frozen=True, kw_only=True)
class AuditReport:
    """What ``verify_log`` found. ``first_bad`` is None when the log is intact.

    ``head_seq`` is the last entry proven intact; ``checkpoint`` the last
    checkpoint whose signature and head both verified.
    """

    head_seq: int
    head_hash: str
    first_bad: int | None = None
    reason: str = ""
    checkpoint: SignedCheckpoint | None = None
    anchor: SignedCheckpoint | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.head_seq,
            "first_bad": self.first_bad,
            "reason": self.reason,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
            "anchor": self.anchor.to_json() if self.anchor else None,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        if not self.ok:
            return f"audit log NOT intact: first bad entry {self.first_bad}: {self.reason}"
        signed = f", signed up to entry {self.checkpoint.seq}" if self.checkpoint else ""
        anchored = f", head anchored at entry {self.anchor.seq}" if self.anchor else ""
        entries = "1 entry" if self.head_seq == 1 else f"{self.head_seq} entries"
        return f"audit log intact: {entries}{signed}{anchored}"


def verify_log(
    entries: Iterable[ChainedEntry],
    checkpoints: Iterable[SignedCheckpoint],
    key: Key,
    *,
    anchor: SignedCheckpoint | None,
    every: int | None = None,
) -> AuditReport:
    """Walk the chain once, checking each checkpoint and the anchor on the way (pure).

    ``anchor`` is the head anchored outside the database (None: an export,
    or no anchor found; ``verify_database`` says which). Reports the first
    bad sequence number: the broken entry; for a signed head the chain no
    longer holds, the first entry after the previous good checkpoint (the
    rewrite lies between the two); for a forged or foreign checkpoint, its
    own sequence number; for a truncated tail, the first missing entry.
    """
    walk, good = ChainWalk(), None
    pending = deque(sorted(checkpoints, key=lambda cp: cp.seq))
    try:
        for entry in entries:
            walk.step(entry)
            while pending and pending[0].seq <= entry.seq:
                good = _check(pending.popleft(), entry, good, key)
            if anchor is not None and anchor.seq == entry.seq:
                _check(anchor, entry, good, key, what=ANCHORED)
        if pending:
            _truncated(walk.head_seq, pending[0], key)
        if anchor is not None and anchor.seq > walk.head_seq:
            _truncated(walk.head_seq, anchor, key, what=ANCHORED)
    except ChainBrokenError as exc:
        return AuditReport(
            head_seq=walk.head_seq,
            head_hash=walk.head_hash,
            first_bad=exc.seq,
            reason=exc.reason,
            checkpoint=good,
        )
    return AuditReport(
        head_seq=walk.head_seq,
        head_hash=walk.head_hash,
        checkpoint=good,
        anchor=anchor,
        warnings=_warnings(walk.head_seq, good, every) + _unanchored(walk.head_seq, anchor),
    )


def _check(
    checkpoint: SignedCheckpoint,
    entry: ChainedEntry,
    good: SignedCheckpoint | None,
    key: Key,
    *,
    what: str = SIGNED,
) -> SignedCheckpoint:
    _signature(checkpoint, key)
    if checkpoint.seq != entry.seq or checkpoint.head_hash != entry.hash:
        # The rewrite lies after the last good checkpoint (an anchor from another
        # log may sit at that very entry: then it is the one named).
        first = min((good.seq if good else 0) + 1, checkpoint.seq)
        signed = "signed" if what == SIGNED else "anchored outside the database"
        raise ChainBrokenError(
            first,
            f"rewritten: the chain no longer holds the head {signed} at entry "
            f"{checkpoint.seq}; entries {first} to {checkpoint.seq} were changed and their "
            "hashes recomputed",
        )
    return checkpoint


def _truncated(
    head_seq: int, checkpoint: SignedCheckpoint, key: Key, *, what: str = SIGNED
) -> None:
    _signature(checkpoint, key)
    missing = (
        f"entry {head_seq + 1} is missing"
        if checkpoint.seq == head_seq + 1
        else f"entries {head_seq + 1} to {checkpoint.seq} are missing"
    )
    raise ChainBrokenError(
        head_seq + 1,
        f"log truncated: it ends at entry {head_seq} but {what} at entry "
        f"{checkpoint.seq} covers {checkpoint.seq} entries: {missing}",
    )


def _signature(checkpoint: SignedCheckpoint, key: Key) -> None:
    try:
        checkpoint.verify(key)
    except CheckpointError as exc:
        raise ChainBrokenError(checkpoint.seq, str(exc)) from None


def _warnings(head_seq: int, good: SignedCheckpoint | None, every: int | None) -> tuple[str, ...]:
    """An unsigned tail is normal below the cadence; longer, it needs a look."""
    signed = good.seq if good else 0
    if head_seq == signed or (every is not None and head_seq - signed < every):
        return ()
    span = f"entry {head_seq}" if head_seq == signed + 1 else f"entries {signed + 1} to {head_seq}"
    where = "no signed checkpoint at all" if good is None else "no signed checkpoint"
    if every is None:
        return (f"{where} covers {span}: a cut there would not show",)
    return (
        f"{where} covers {span}, although one is made every {every} entries: the audit "
        "key failed to sign (see the server log) or checkpoints were deleted",
    )


def _unanchored(head_seq: int, anchor: SignedCheckpoint | None) -> tuple[str, ...]:
    """Entries after the anchor: a commit under way, or a key or disk failure."""
    if anchor is None or anchor.seq >= head_seq:
        return ()
    span = (
        f"entry {head_seq}"
        if head_seq == anchor.seq + 1
        else (f"entries {anchor.seq + 1} to {head_seq}")
    )
    return (
        f"{span} not anchored outside the database yet: a commit under way, or the "
        "audit key or the anchor file failed (see the server log); a cut there would not show",
    )


def verify_database(
    session: Session, key: Key, *, anchor: SignedCheckpoint | None, every: int | None = None
) -> AuditReport:
    """Check the stored log against its checkpoints and the server's anchored head.

    ``anchor`` is what ``anchor.read_anchor`` found (None: no anchor file). A
    server's log with entries and no anchored head is not intact: nothing
    would show a cut of the entries after its last stored checkpoint.
    """
    checkpoints = load_checkpoints(session)
    with closing(iter_entries(session)) as entries:
        report = verify_log(entries, checkpoints, key, anchor=anchor, every=every)
    if anchor is not None or not report.ok or report.head_seq == 0:
        return report
    after = report.checkpoint.seq if report.checkpoint else 0
    return replace(
        report,
        first_bad=after + 1,
        reason=(
            f"no head is anchored outside the database: a cut of the entries after entry "
            f"{after} would not show; the audit key failed to sign (see the server log) or "
            "the anchor file was removed; once the cause is known, 'fwserver audit "
            "checkpoint' signs and anchors the current head"
        ),
        warnings=(),
    )
