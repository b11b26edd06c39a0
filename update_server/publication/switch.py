"""The atomic switch of the published repository, with a journal for crashes.

One change writes, in order: the firmware files (hard links from staging,
so each appears whole), the new targets roles, the new snapshot, a new root
(its versioned file, then ``root.json``), and ``timestamp.json`` last. Until
``timestamp.json`` is replaced no device can reach the new snapshot, so the
new files are invisible; replacing it is the commit point (TUF spec 5.6: a
client starts from timestamp).

Before the first write, a journal (``<data-dir>/publication.journal``) lists
every file and directory the change creates, a backup of every file it
replaces (a hard link to the old inode) and the SHA-256 of the new
timestamp. If the change fails, or the process dies, ``recover`` (run under
the publication lock before the next change) decides by the timestamp on
disk: the old one means roll back (delete what was created, put backups
back), the new one means the change committed (drop backups and staging).
Either way the repository is as before or as after, never between, and no
orphan file is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fwcommon.files import atomic_write, fsync_dir
from update_server.publication.repository import METADATA_DIR

logger = logging.getLogger(__name__)

JOURNAL_FILE = "publication.journal"
TIMESTAMP_FILE = f"{METADATA_DIR}/timestamp.json"


def journal_path(data_dir: Path) -> Path:
    return data_dir / JOURNAL_FILE


@dataclass(frozen=True)
class Change:
    """What one publication, renewal or import writes (paths relative to the repository)."""

    #: (staged file, destination) for each firmware file, as hard links.
    links: Sequence[tuple[Path, str]]
    #: (destination, bytes) in write order, ``timestamp.json`` excluded.
    files: Sequence[tuple[str, bytes]]
    timestamp: bytes
    #: For the audit trail and recovery: what the change is.
    action: str
    object: str
    upload_id: str | None = None
    #: Staging directory to remove once the change has committed.
    staging: Path | None = None


@dataclass(frozen=True)
class Recovered:
    """What ``recover`` found: an interrupted change, committed or rolled back."""

    committed: bool
    action: str
    object: str
    upload_id: str | None


@dataclass
class _Journal:
    action: str
    object: str
    upload_id: str | None
    staging: str | None
    timestamp_sha256: str
    dirs: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)


def _reached(step: str) -> None:
    """A seam for tests: called after each step of ``apply`` (they raise here)."""


def apply(
    repository: Path,
    journal: Path,
    change: Change,
    *,
    before_timestamp: Callable[[], object] | None = None,
) -> None:
    """Write ``change`` into ``repository``, ``timestamp.json`` last.

    ``before_timestamp`` runs just before the commit point (the caller
    commits its audit entries there: if they cannot be written, nothing is
    published). On any failure the change is undone and the error re-raised.
    """
    plan = _plan(repository, change)
    atomic_write(journal, json.dumps(plan.__dict__, indent=1).encode(), mode=0o600)
    _reached("journal")
    try:
        _write(repository, change, plan, before_timestamp)
    except BaseException:
        recover(repository, journal)
        raise
    try:
        _reached("timestamp")
        _finish(repository, journal, plan)
    except Exception:  # committed: what is left, the next recover() finishes
        logger.exception(
            "%s of %s is published; cleanup left to recovery", plan.action, plan.object
        )


def _plan(repository: Path, change: Change) -> _Journal:
    plan = _Journal(
        action=change.action,
        object=change.object,
        upload_id=change.upload_id,
        staging=None if change.staging is None else str(change.staging),
        timestamp_sha256=hashlib.sha256(change.timestamp).hexdigest(),
    )
    for _source, destination in change.links:
        if not (repository / destination).exists():
            _plan_dirs(repository, destination, plan.dirs)
            plan.created.append(destination)
    for destination, _data in change.files:
        target = repository / destination
        _plan_dirs(repository, destination, plan.dirs)
        if target.exists():
            plan.backups[destination] = _backup_name(destination)
        else:
            plan.created.append(destination)
    return plan


def _plan_dirs(repository: Path, destination: str, dirs: list[str]) -> None:
    parts = destination.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        relative = "/".join(parts[:depth])
        if relative not in dirs and not (repository / relative).is_dir():
            dirs.append(relative)


def _backup_name(destination: str) -> str:
    directory, _, name = destination.rpartition("/")
    return f"{directory}/.{name}.bak" if directory else f".{name}.bak"


def _write(
    repository: Path,
    change: Change,
    plan: _Journal,
    before_timestamp: Callable[[], object] | None,
) -> None:
    for relative in plan.dirs:
        (repository / relative).mkdir()
        fsync_dir((repository / relative).parent)
    new = set(plan.created)
    for source, destination in change.links:
        if destination in new:
            os.link(source, repository / destination)
            fsync_dir((repository / destination).parent)
    _reached("targets")
    for destination, data in change.files:
        backup = plan.backups.get(destination)
        if backup is not None:
            (repository / backup).unlink(missing_ok=True)
            os.link(repository / destination, repository / backup)
        atomic_write(repository / destination, data)
        _reached(destination)
    if before_timestamp is not None:
        before_timestamp()
    _reached("before-timestamp")
    atomic_write(repository / TIMESTAMP_FILE, change.timestamp)


def recover(repository: Path, journal: Path) -> Recovered | None:
    """Finish or undo an interrupted change, by what ``timestamp.json`` holds."""
    if not journal.is_file():
        return None
    plan = _Journal(**json.loads(journal.read_bytes()))
    current = repository / TIMESTAMP_FILE
    committed = current.is_file() and (
        hashlib.sha256(current.read_bytes()).hexdigest() == plan.timestamp_sha256
    )
    if committed:
        _finish(repository, journal, plan)
    else:
        _undo(repository, journal, plan)
    logger.warning(
        "%s of %s was interrupted; %s",
        plan.action,
        plan.object,
        "it had committed" if committed else "rolled back",
    )
    return Recovered(committed, plan.action, plan.object, plan.upload_id)


def _undo(repository: Path, journal: Path, plan: _Journal) -> None:
    for destination, backup in plan.backups.items():
        if (repository / backup).exists():
            (repository / backup).replace(repository / destination)
    for relative in reversed(plan.created):
        (repository / relative).unlink(missing_ok=True)
    for relative in reversed(plan.dirs):
        with contextlib.suppress(OSError):  # not empty: something else lives there
            (repository / relative).rmdir()
    _sync_parents(repository, [*plan.created, *plan.backups])
    journal.unlink()


def _finish(repository: Path, journal: Path, plan: _Journal) -> None:
    for backup in plan.backups.values():
        (repository / backup).unlink(missing_ok=True)
    if plan.staging is not None:
        shutil.rmtree(plan.staging, ignore_errors=True)
    journal.unlink(missing_ok=True)
    fsync_dir(journal.parent)


def _sync_parents(repository: Path, files: Sequence[str]) -> None:
    for directory in {(repository / relative).parent for relative in files}:
        if directory.is_dir():
            fsync_dir(directory)
