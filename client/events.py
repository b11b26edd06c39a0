"""Every decision the client makes, as one JSON line in a hash-chained log.

The event ``type`` names its class (the vocabulary below is fixed), so a
technician, a SIEM or the manufacturer reads the same words; each line
carries the hash of the previous one, so an edited, deleted, inserted or
reordered line is detected by ``fwclient log verify`` (R27, R28 on the
device). Appends are fsynced before the decision they record takes effect.
The chain (genesis, digest, walk) is ``fwcommon.hashchain``'s, over compact
JSON, the same as the server's audit log.

Power loss: every append writes one whole line and is fsynced before the
next, so only the last line can be cut short (or filled with zeros by the
file system). Such a tail is not an entry: readers skip it, and the next
append cuts it off and records ``log_tail_repaired`` with the bytes dropped,
so the log keeps working and the loss is visible. Skipping it weakens
nothing: whoever can write the file can drop its last entries anyway.

Damage: a whole line that is not an entry (a flipped bit, an edit that broke
the JSON) must not stop the device either. The next append counts it as one
entry it cannot read, chains on from the SHA-256 of its bytes, and records
``log_damaged`` first; ``verify`` still reports the damaged line as the
first bad one, and readers (``status``) skip it.

Retention: a device's storage is bounded, and a full disk would make every
write fail. When an append would take ``events.log`` past ``max_bytes``, the
file is first renamed ``events.<seq>.log``, ``<seq>`` being its last entry's,
and a new ``events.log`` continues the chain (its first ``prev`` is that
entry's hash, its ``seq`` the next one). Beyond ``archives`` archives, the
oldest are deleted. The rotation is one rename, made durable (directory
fsync) before anything else; then a ``log_rotated`` entry, the new file's
first, names the archive just made and every archive about to be deleted,
made durable too; then the deletions, oldest first, each made durable; then
the entry asked for. No file is ever shifted, and no archive is deleted
before a durable entry names it. So a power loss at any step leaves files
that chain: before the rename nothing changed; after it, ``events.log`` is
missing or empty and the next append reads the head from the newest archive
(no rotation recorded, nothing deleted: the archive left over its count is
named and deleted at the next rotation); after the record, a deletion it
names and that did not happen is named again at the next rotation.

``verify`` checks the chain through every retained file, oldest first, and
says where the retained history starts. When it starts at seq S > 1, the
archive that held entry S - 1 (``events.<S-1>.log``) must be named as deleted
by a retained ``log_rotated`` entry, as the rotation that deleted it did;
otherwise the oldest archives were removed by other means, reported with
``first_bad`` S - 1, the last entry of the archive missing without a record.
This is checked once the chain verifies through every retained file: a
record past a break in the chain proves nothing. (The chain is not keyed:
whoever can rewrite every retained file can forge a record too. What it
proves is order, integrity, and that no deletion happened outside a
rotation the log itself recorded.)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from fwcommon.files import fsync_dir
from fwcommon.hashchain import (
    GENESIS,
    Break,
    ChainBreakError,
    ChainWalker,
    Entry,
    Link,
    bytes_digest,
    compact_json,
    entry_digest,
)

_TAIL = 64 * 1024  # longer than any one line the client writes
#: Size past which ``events.log`` is archived: about 3,000 entries of ~350
#: bytes (an idle poll's ``no_update``), four months of hourly polls; also
#: what ``status`` reads at most to find the last update result.
MAX_BYTES = 1024 * 1024
#: Archives kept beside ``events.log``: at most 5 MiB in all, and never less
#: than the last 16 months of hourly polls (a yearly audit, with margin).
ARCHIVES = 4
#: Reads of a log that another process rotated meanwhile, before the answer stands.
_READ_TRIES = 3


class EventType(StrEnum):
    PROVISIONED = "provisioned"
    CHECKED = "checked"
    NO_UPDATE = "no_update"
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    UPDATED = "updated"
    ROLLED_BACK = "rolled_back"
    BOOTED = "booted"
    ROLLBACK_ATTACK = "rollback_attack"
    FREEZE_ATTACK = "freeze_attack"
    MIX_AND_MATCH = "mix_and_match"
    BAD_SIGNATURE = "bad_signature"
    BAD_HASH = "bad_hash"
    TOO_LONG = "too_long"
    SLOW_RETRIEVAL = "slow_retrieval"
    CLOCK_SKEW = "clock_skew"
    FIRMWARE_DOWNGRADE = "firmware_downgrade"
    HARDWARE_MISMATCH = "hardware_mismatch"
    INTEGRITY_FAILURE = "integrity_failure"
    FAILSAFE_ENTERED = "failsafe_entered"
    FAILSAFE_REFUSED = "failsafe_refused"
    FAILSAFE_LEFT = "failsafe_left"
    VERIFIED = "verified"
    HEALTH_CHECK_FAILED = "health_check_failed"
    #: A firmware that already failed its health check here is not installed again.
    KNOWN_BAD = "known_bad"
    UNREACHABLE = "unreachable"
    #: The signed set lists neither the running release nor a newer one (replay, withdrawal).
    RUNNING_NOT_LISTED = "running_not_listed"
    #: A signed firmware larger than a slot or than the free storage: nothing written.
    INSUFFICIENT_SPACE = "insufficient_space"
    #: Temporary files of writes a power cut interrupted, removed at boot.
    LEFTOVERS_REMOVED = "leftovers_removed"
    #: The log's last line, cut short by a power loss, was removed.
    LOG_TAIL_REPAIRED = "log_tail_repaired"
    #: Whole lines at the log's end that are not entries (damage); the chain goes on after them.
    LOG_DAMAGED = "log_damaged"
    #: events.log was archived; names the archive and the oldest ones deleted next.
    LOG_ROTATED = "log_rotated"
    #: R9/R25: the release needs a technician's authorization this device does not hold yet.
    AWAITING_AUTHORIZATION = "awaiting_authorization"
    #: The release needs a newer installed version first (``min_installed_version``).
    PREREQUISITE_MISSING = "prerequisite_missing"
    #: A technician's authorization verified and was bound to the install it allows.
    AUTHORIZATION_ACCEPTED = "authorization_accepted"
    #: The install it allowed is being activated: the authorization is spent.
    AUTHORIZATION_USED = "authorization_used"
    #: Refused authorizations, one type per threat (``fwcommon.authorization``).
    AUTHORIZATION_REPLAYED = "authorization_replayed"
    AUTHORIZATION_EXPIRED = "authorization_expired"
    AUTHORIZATION_WRONG_DEVICE = "authorization_wrong_device"
    AUTHORIZATION_WRONG_RELEASE = "authorization_wrong_release"
    AUTHORIZATION_BAD_SIGNATURE = "authorization_bad_signature"
    AUTHORIZATION_UNTRUSTED_KEY = "authorization_untrusted_key"
    AUTHORIZATION_MALFORMED = "authorization_malformed"
    #: R52: the clinical-use guard said the device is in use; nothing activated, retried later.
    DEFERRED_IN_USE = "deferred_in_use"
    #: Issue 11 (``client.directive``): what the server's poll directed, and what came of it.
    #: A deployment's assigned target, refused by the device's own rules (policy rule 8).
    ASSIGNMENT_REFUSED = "assignment_refused"
    #: The device installs only what a deployment assigns, and none is assigned now.
    NO_ASSIGNMENT = "no_assignment"
    #: A registered device got no valid poll answer: nothing new installed this poll.
    POLL_UNANSWERED = "poll_unanswered"
    #: The server is in its failsafe freeze: nothing installed or activated this poll.
    SERVER_FROZEN = "server_frozen"
    #: Verified and kept, not activated: outside the maintenance window.
    DEFERRED_WINDOW = "deferred_window"
    #: Issue 13 (``client.offline`` O8): the install that follows came from a bundle, with
    #: no network; the next online report carries it to the server.
    OFFLINE_INSTALL = "offline_install"
    #: Issue 13 (``client.delta``): a delta could not carry the release (the reason says
    #: why); the full image is downloaded in the same session.
    DELTA_FAILED = "delta_failed"
    ERROR = "error"


#: A technician's authorization refused by the device, one type per threat.
AUTHORIZATION_REFUSALS = frozenset(
    {
        EventType.AUTHORIZATION_REPLAYED,
        EventType.AUTHORIZATION_EXPIRED,
        EventType.AUTHORIZATION_WRONG_DEVICE,
        EventType.AUTHORIZATION_WRONG_RELEASE,
        EventType.AUTHORIZATION_BAD_SIGNATURE,
        EventType.AUTHORIZATION_UNTRUSTED_KEY,
        EventType.AUTHORIZATION_MALFORMED,
    }
)


@dataclass(frozen=True)
class LogReport:
    entries: int
    first_bad: int | None = None
    reason: str = ""
    #: Where the retained history starts (after 1: older entries were rotated out).
    first_seq: int = 1

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.entries - 1


#: What an entry's hash covers besides its ``seq`` and ``prev`` (``fwcommon.hashchain``).
_BODY = ("time", "type", "message", "detail")


class EventLog:
    """An append-only JSON-lines file; each line chains to the one before.

    With its archives (``events.<seq>.log``, oldest first), one chain: see
    the module docstring for the rotation and its power safety.
    """

    def __init__(self, path: Path, *, max_bytes: int = MAX_BYTES, archives: int = ARCHIVES) -> None:
        if max_bytes < 1 or archives < 1:
            raise ValueError("an event log keeps at least one archive of at least one byte")
        self.path = path
        self.max_bytes = max_bytes
        self.keep = archives
        self._archive_name = re.compile(
            rf"^{re.escape(path.stem)}\.([0-9]+){re.escape(path.suffix)}\Z"
        )

    def archives(self) -> list[Path]:
        """The retained archives, oldest first (by the last seq their name carries)."""
        try:
            names = [path.name for path in self.path.parent.iterdir()]
        except FileNotFoundError:
            return []
        found = sorted(
            (int(match[1]), name) for name in names if (match := self._archive_name.match(name))
        )
        return [self.path.parent / name for _, name in found]

    def _newest_first(self) -> Iterator[Path]:
        """events.log, then the archives newest first.

        The archives are listed only once events.log is read, so a rotation
        in between (a reader needs no lock) moves nothing out of sight.
        """
        yield self.path
        yield from reversed(self.archives())

    def _head(self) -> _Head:
        """Where the chain goes on: the last entry, after any damaged lines that follow it."""
        damaged: list[bytes] = []
        for path in self._newest_first():
            for raw in reversed(_whole_lines(path)):
                entry = _entry(raw)
                if entry is None:
                    damaged.append(raw)
                    continue
                seq, digest = int(entry["seq"]), str(entry["hash"])
                if damaged:
                    return _Head(seq + len(damaged), bytes_digest(damaged[0]), len(damaged))
                return _Head(seq, digest)
        if damaged:
            return _Head(len(damaged), bytes_digest(damaged[0]), len(damaged))
        return _Head(0, GENESIS)

    def _cut_torn_tail(self) -> int:
        """Remove a last line a power loss cut short; return the bytes removed."""
        if not self.path.is_file():
            return 0
        with self.path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            start = max(0, size - _TAIL)
            handle.seek(start)
            tail = handle.read()
            if tail.endswith(b"\n"):
                return 0
            if b"\n" not in tail and start > 0:  # a torn line longer than the window
                start = 0
                handle.seek(0)
                tail = handle.read()
            keep = start + tail.rfind(b"\n") + 1  # rfind gives -1 when no line ends: keep 0
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            return size - keep

    def append(
        self, event: EventType, message: str, *, now: datetime, **detail: Any
    ) -> dict[str, Any]:
        """Write one event durably (fsync) and return it."""
        dropped = self._cut_torn_tail()
        if dropped:
            self._write(
                EventType.LOG_TAIL_REPAIRED,
                f"the log's last line was cut short by a power loss; {dropped} byte(s) removed",
                now=now,
                detail={"bytes": dropped},
            )
        damaged = self._head().damaged
        if damaged:
            self._write(
                EventType.LOG_DAMAGED,
                f"the log ends with {damaged} line(s) that are not entries; the chain goes on"
                " after them and 'fwclient log verify' names the first",
                now=now,
                detail={"lines": damaged},
            )
        return self._write(event, message, now=now, detail=detail)

    def _write(
        self, event: EventType, message: str, *, now: datetime, detail: Mapping[str, Any]
    ) -> dict[str, Any]:
        head = self._head()
        entry, line = _line(head, event, message, now=now, detail=detail)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._is_full(len(line), head=head.seq):
            head = self._rotate(head, now=now)
            entry, line = _line(head, event, message, now=now, detail=detail)
        self._append_line(line)
        return entry

    def _append_line(self, line: bytes) -> None:
        created = not self.path.exists()
        with self.path.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        if created:
            fsync_dir(self.path.parent)  # the file's name, not only its line, survives a power cut

    def _archive(self, seq: int) -> Path:
        """The name events.log takes when archived with ``seq`` as its last entry."""
        return self.path.with_name(f"{self.path.stem}.{seq}{self.path.suffix}")

    def _is_full(self, size: int, *, head: int) -> bool:
        """Whether events.log (last entry ``head``) is archived before ``size`` more bytes."""
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if current == 0 or current + size <= self.max_bytes:
            return False
        # An archive of that name: events.log holds no entry of its own (only a
        # tampered log), so it is not rotated and all evidence is kept.
        return not self._archive(head).exists()

    def _rotate(self, head: _Head, *, now: datetime) -> _Head:
        """Archive events.log, record it, then delete the oldest archives; return the new head.

        Each step is durable before the next, and the record names every
        archive deleted after it (leftovers of a rotation a power loss cut
        short included), so no deletion goes unrecorded.
        """
        archive = self._archive(head.seq)
        self.path.replace(archive)
        fsync_dir(self.path.parent)
        archives = self.archives()
        doomed = archives[: max(0, len(archives) - self.keep)]
        names = [path.name for path in doomed]
        message = f"the event log was archived as {archive.name}"
        if names:
            message += f"; deleting the oldest archive(s): {', '.join(names)}"
        record, line = _line(
            head,
            EventType.LOG_ROTATED,
            message,
            now=now,
            detail={"archive": archive.name, "deleted": names},
        )
        self._append_line(line)
        for oldest in doomed:
            oldest.unlink(missing_ok=True)  # oldest first, each durable: no gap opens in the rest
            fsync_dir(self.path.parent)
        return _Head(int(record["seq"]), str(record["hash"]))

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every whole line, archives first (a torn last line is not an entry)."""
        for path in [*self.archives(), self.path]:
            yield from _read(path, strict=False)

    def verify(self) -> LogReport:
        """Check the chain through the retained files; name the first bad sequence number.

        Read without the lock: a read that overlapped a rotation by the
        writer is read again, so a rotation is never reported as a gap.
        """
        archives = self.archives()
        for _ in range(_READ_TRIES):
            named = self._archive if archives else None
            report = _check([*archives, self.path], archive=named)
            again = self.archives()
            if report.ok or again == archives:
                break
            archives = again
        return report

    def last(self, *types: EventType) -> dict[str, Any] | None:
        """The most recent event of one of ``types`` (any type if none given)."""
        wanted = {t.value for t in types}
        for path in self._newest_first():
            found = _last_of(path, wanted)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    #: Whole lines after the last entry that are not entries.
    damaged: int = 0


def _line(
    head: _Head, event: EventType, message: str, *, now: datetime, detail: Mapping[str, Any]
) -> tuple[dict[str, Any], bytes]:
    """The entry that follows ``head``, and its line as written."""
    body = {
        "time": now.astimezone(UTC).isoformat(),
        "type": event.value,
        "message": message,
        "detail": dict(detail),
    }
    seq, prev = head.seq + 1, head.hash
    digest = entry_digest(seq=seq, prev=prev, body=body, canonical=compact_json)
    entry = {"seq": seq, **body, "prev": prev, "hash": digest}
    return entry, (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _entry(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as an entry, or None when it is not one (damage)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
        return None
    return entry if isinstance(entry.get("hash"), str) else None


def _read(path: Path, *, strict: bool = True) -> Iterator[dict[str, Any]]:
    """The whole lines of ``path`` (none if it does not exist).

    ``strict`` raises on a line that is not an entry (``verify`` names it);
    otherwise such a line is skipped (readers such as ``status``).
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if not (line.endswith(b"\n") and line.strip()):
                continue
            if strict:
                yield json.loads(line)
            elif (entry := _entry(line)) is not None:
                yield entry


def _whole_lines(path: Path) -> list[bytes]:
    """The whole lines at the end of ``path``: a window from its end, or all if needed.

    The window's first piece may be the end of a longer line, so it is
    dropped; if no entry is left in the window, the whole file is read.
    """
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - _TAIL)
            handle.seek(start)
            pieces = handle.read().split(b"\n")[:-1]  # the last piece is a torn tail or b""
            if start > 0:
                pieces = pieces[1:]
            if start > 0 and not any(_entry(p) for p in pieces if p.strip()):
                handle.seek(0)
                pieces = handle.read().split(b"\n")[:-1]
    except FileNotFoundError:
        return []
    return [piece for piece in pieces if piece.strip()]


def _last_of(path: Path, wanted: set[str]) -> dict[str, Any] | None:
    found = None
    for entry in _read(path, strict=False):
        if not wanted or entry.get("type") in wanted:
            found = entry
    return found


def _check(files: list[Path], *, archive: Callable[[int], Path] | None) -> LogReport:
    """The chain through ``files``, oldest first.

    Only a rotated log (``archive`` names its archives) may start after
    seq 1, and then a verified ``log_rotated`` entry must name the archive
    that held the entry before the start as deleted.
    """
    walker, count, first = ChainWalker(canonical=compact_json), 0, 1
    deleted: set[str] = set()
    try:
        for entry in (entry for path in files for entry in _read(path)):
            seq = entry.get("seq")
            if archive is not None and count == 0 and isinstance(seq, int) and seq > 1:
                first = seq  # entries before it were rotated out, if a record says so
                walker = ChainWalker(
                    canonical=compact_json, start=Link(seq - 1, str(entry.get("prev")))
                )
            body = {k: entry.get(k) for k in _BODY}
            walker.step(Entry(seq=seq, prev=entry.get("prev"), digest=entry.get("hash"), body=body))
            deleted.update(_deleted(entry))
            count += 1
    except ChainBreakError as exc:
        reason = "entry missing or out of order" if exc.kind is Break.SEQUENCE else "entry altered"
        return LogReport(count, exc.seq, reason, first)
    except (ValueError, KeyError, TypeError, AttributeError):  # a line that is not an object
        return LogReport(count, first + count, "line is not a log entry", first)
    if archive is not None and first > 1 and archive(first - 1).name not in deleted:
        reason = f"entries before seq {first} were removed without a recorded rotation"
        return LogReport(0, first - 1, reason, first)
    return LogReport(count, first_seq=first)


def _deleted(entry: Mapping[str, Any]) -> list[str]:
    """The archives a ``log_rotated`` entry names as deleted (none for any other entry)."""
    detail = entry.get("detail")
    if entry.get("type") != EventType.LOG_ROTATED or not isinstance(detail, dict):
        return []
    names = detail.get("deleted")
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []
