"""The audit log as JSON lines, for backup and offline checking (R28, R32, R61).

An export is one JSON object per line: every entry in sequence order with
all its fields and hashes, then one final line ``{"checkpoint": ...}``
holding the latest signed checkpoint (or null if the log has none yet).
Anyone holding the audit public key can check it offline with
``verify_export``: the same chain walk as for the database, against the
signed head.

Invariants:

* the checkpoint is read before the entries, so the entries always reach
  the exported head; entries newer than it are exported too, unsigned;
* the file appears whole or not at all (temporary file, fsync, rename,
  directory fsync) and is readable by its owner only;
* reading an export is streaming, line by line, with a bounded line length:
  a hostile file cannot exhaust memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Generator, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from securesystemslib.signer import Key
from sqlalchemy.orm import Session

from fwcommon.files import fsync_dir
from update_server.audit.chain import (
    ChainBrokenError,
    ChainedEntry,
    EntryRecord,
    canonical_time,
    parse_canonical_time,
)
from update_server.audit.checkpoint import (
    AuditReport,
    SignedCheckpoint,
    latest_checkpoint,
    verify_log,
)
from update_server.audit.errors import ExportFormatError
from update_server.audit.store import iter_entries
from update_server.audit.vocabulary import ENTRY_COLUMNS

MAX_LINE = 1024 * 1024
#: An exported entry's keys: a stored entry's columns, ``seq`` the only number.
COLUMNS = ENTRY_COLUMNS
TEXT_FIELDS = tuple(name for name in COLUMNS if name != "seq")


def entry_json(entry: ChainedEntry) -> dict[str, Any]:
    """One entry as JSON: every field, the time in canonical form."""
    record = EntryRecord.of(entry)
    return {
        "seq": record.seq,
        **{name: getattr(record, name) for name in TEXT_FIELDS},
        "time": canonical_time(record.time),
    }


def entry_from_json(obj: Any) -> EntryRecord:
    """``entry_json``'s form read back strictly; ``ValueError`` if it is not."""
    if not isinstance(obj, dict) or set(obj) != set(COLUMNS):
        raise ValueError(f"an entry has exactly the fields {', '.join(COLUMNS)}")
    seq = obj["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise ValueError("seq is not an integer")  # noqa: TRY004 - one error kind for bad files
    texts = {name: obj[name] for name in TEXT_FIELDS}
    if not all(isinstance(value, str) for value in texts.values()):
        raise ValueError("an entry's fields other than seq are strings")
    return EntryRecord(seq=seq, **{**texts, "time": parse_canonical_time(texts["time"])})


@dataclass(frozen=True)
class ExportSummary:
    entries: int
    head_seq: int
    checkpoint: SignedCheckpoint | None


def write_export(session: Session, out: IO[bytes]) -> ExportSummary:
    """Stream the log to ``out``: entries, then the latest signed checkpoint."""
    checkpoint = latest_checkpoint(session)
    count, head_seq = 0, 0
    for entry in iter_entries(session):
        out.write(_line(entry_json(entry)))
        count, head_seq = count + 1, entry.seq
    out.write(_line({"checkpoint": checkpoint.to_json() if checkpoint else None}))
    return ExportSummary(count, head_seq, checkpoint)


def _line(obj: Mapping[str, Any]) -> bytes:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode() + b"\n"


@contextmanager
def atomic_output(path: Path, *, mode: int = 0o600) -> Iterator[IO[bytes]]:
    """A file that replaces ``path`` only if the block succeeds, durably."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def verify_export(path: Path, key: Key) -> AuditReport:
    """Check an export offline with the audit public key ``key``.

    Raises ``ExportFormatError`` for a file that cannot be read as an export
    at all (empty, line too long); reports everything else, tampering
    included, as an ``AuditReport`` naming the first bad sequence number.
    """
    last_number, last = _last_line(path)
    try:
        obj = json.loads(last)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or set(obj) != {"checkpoint"}:
        try:
            entry_from_json(obj)
        except ValueError:
            reason = (
                "export truncated or damaged: its final line is neither an entry nor a checkpoint"
            )
            return _unsigned(path, last_number, key, reason)
        reason = "export truncated: its final line, the signed checkpoint, is missing"
        return _unsigned(path, last_number + 1, key, reason)
    try:
        body = obj["checkpoint"]
        checkpoint = None if body is None else SignedCheckpoint.from_json(body)
    except (ValueError, TypeError) as exc:
        return _unsigned(path, last_number, key, f"its final checkpoint line is malformed: {exc}")
    with closing(_entries(path, last_number)) as entries:
        return verify_log(entries, [checkpoint] if checkpoint else [], key, anchor=None)


def _unsigned(path: Path, stop: int, key: Key, reason: str) -> AuditReport:
    """The entries checked as a chain, then failed for want of a checkpoint."""
    with closing(_entries(path, stop)) as entries:
        report = verify_log(entries, [], key, anchor=None)
    if not report.ok:
        return report
    return replace(report, first_bad=report.head_seq + 1, reason=reason, warnings=())


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        number = 0
        while line := handle.readline(MAX_LINE + 1):
            number += 1
            if len(line) > MAX_LINE:
                raise ExportFormatError(f"{path}: line {number} is longer than {MAX_LINE} bytes")
            yield number, line


def _last_line(path: Path) -> tuple[int, bytes]:
    found: tuple[int, bytes] | None = None
    for found in _lines(path):  # noqa: B007 - the loop keeps the last line
        pass
    if found is None:
        raise ExportFormatError(f"{path}: empty, not an audit export")
    return found


def _entries(path: Path, stop: int) -> Generator[EntryRecord]:
    """Entries on lines 1 to ``stop - 1``; a bad line breaks the chain there."""
    for number, line in _lines(path):
        if number >= stop:
            return
        try:
            yield entry_from_json(json.loads(line))
        except ValueError as exc:
            raise ChainBrokenError(number, f"line {number} is not an audit entry: {exc}") from None
