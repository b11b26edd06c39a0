"""The device's state directory: where everything lives, and the small
records kept there. Every record is written atomically (temp file, fsync,
rename, directory fsync), so a power cut leaves the old or the new record,
never half of one; at most it also leaves the temporary file, which the next
boot removes (``leftovers``).

One writer at a time: a command that changes the directory holds ``lock()``
(an exclusive ``flock`` on ``lock``), so two commands cannot interleave their
writes to the boot environment, the slots, the floors or the event log.
Readers (``fwclient status``) need no lock: each record they read is whole.

::

    STATE/
      provisioned/root.json     the trusted root (read-only; never replaced by the cache)
      provisioned/device.json   {"device_id", "hardware_model", "slot_capacity",
                                "offline_max_age_seconds"}: the identity and settings
      provisioned/device_key.json  which key the device signs with (client.identity)
      provisioned/device_key.pem   its private key, 0600 (absent for a secure element's key)
      metadata/                 the TUF metadata cache (ngclient's metadata_dir)
      slots/slot_a.bin, slot_b.bin            firmware images
      slots/slot_a.json, slot_b.json          SlotRecord: what was verified into the slot
      slots/slot_a.evidence/, slot_b.evidence/ the signed metadata it was verified with
      slots/slot_a.progress.json, ...          an interrupted download: target and durable offset
      known_bad.json            firmware that failed its health check here (never reinstalled)
      bootenv.json              BootEnv: active slot, pending slot, boot tries, mode
      floor.json                Floor: security-version floor and installed version
      time_floor.json           the latest trusted time seen (clock sanity)
      events.log                the hash-chained event log (older entries in events.<seq>.log)
      authorizations.json       technicians' authorizations accepted here: nonce, install, used
                                (client.authorizations; outside the cache: a wipe forgets none)
      registered.json           the server that registered this device (client.device_api)
      report.json               the log entry the server last acknowledged (client.report)
      lock                      held by the one process changing the directory

The floors live outside ``metadata/``: wiping the cache must not reset them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from client.errors import ClientError, ProvisioningError
from client.events import EventLog
from client.offline import DEFAULT_MAX_AGE, check_max_age
from fwcommon.files import atomic_write, fsync_dir

logger = logging.getLogger(__name__)

SLOTS = ("a", "b")
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
#: Seconds a command waits for another one to finish with the state directory.
LOCK_WAIT = 10.0
#: A slot's size when provisioning does not say (``fwclient provision --slot-capacity``).
DEFAULT_SLOT_CAPACITY = 1024**3
_LOCK_RETRY = 0.05
#: ``device.json``'s key for ``DeviceIdentity.offline_max_age``, in seconds.
_OFFLINE_MAX_AGE = "offline_max_age_seconds"

# What an interrupted write leaves behind, by the writer's naming:
# ``atomic_write`` (fwcommon.files) stages ".<name>.<8 random>.tmp" beside
# the record; ``write_evidence`` (client.evidence) stages the directory
# ".slot_<s>.evidence.tmp"; ngclient stages "tmp<8 random>" in its metadata
# directory (where nothing else writes). None of these names is ever a
# record, a slot image or a progress record (what a resumed download needs).
_STAGED_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp\Z")
_NGCLIENT_FILE = re.compile(r"^tmp[a-z0-9_]{8}\Z")
_STAGED_EVIDENCE = re.compile(r"^\.slot_[ab]\.evidence\.tmp\Z")


class StateBusyError(ClientError):
    """Another process is changing the state directory (it holds the lock)."""


class Mode(StrEnum):
    NORMAL = "normal"
    #: R24/R33: keeps what runs, refuses every change except a signed recovery.
    FAILSAFE = "failsafe"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    hardware_model: str
    #: Bytes one firmware slot holds (set at provisioning): a larger target is refused.
    slot_capacity: int = DEFAULT_SLOT_CAPACITY
    #: How long after its expiry a bundle's metadata is still accepted (``client.offline``
    #: O3; set at provisioning, whole seconds; a run may only narrow it).
    offline_max_age: timedelta = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        if not DEVICE_ID.match(self.device_id):
            raise ProvisioningError(f"device id {self.device_id!r} is not valid")
        if not DEVICE_ID.match(self.hardware_model):
            raise ProvisioningError(f"hardware model {self.hardware_model!r} is not valid")
        capacity = self.slot_capacity
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ProvisioningError(f"slot capacity {capacity!r} is not a positive byte count")
        max_age = self.offline_max_age
        if not isinstance(max_age, timedelta) or max_age % timedelta(seconds=1):
            raise ProvisioningError(f"offline maximum age {max_age!r} is not whole seconds")
        try:
            check_max_age(max_age)
        except ValueError as exc:
            raise ProvisioningError(str(exc)) from None


@dataclass(frozen=True)
class BootEnv:
    """What the boot loader reads: which slot runs, which one is on trial."""

    active: str = "a"
    pending: str | None = None
    tries_left: int = 0
    mode: Mode = Mode.NORMAL
    #: The slot that ran before the pending one (the fallback).
    previous: str | None = None
    #: The pending slot holds a signed recovery: committing it leaves failsafe.
    recovery: bool = False

    def with_changes(self, **changes: Any) -> BootEnv:
        return replace(self, **changes)


@dataclass(frozen=True)
class Floor:
    """Anti-rollback state (R25): never lowered."""

    security_version: int = 0
    installed_version: str | None = None


@dataclass(frozen=True)
class SlotRecord:
    """What was verified into a slot, from the signed target (R29)."""

    target_path: str
    length: int
    sha256: str
    version: str
    security_version: int
    #: Name of the targets role that signed the target, in the evidence.
    role: str
    verified_at: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: The slot failed its trial boot: never booted again, never reinstalled.
    failed: bool = False
    #: The firmware passed its trial boot here and was committed (R25, R29): only a
    #: committed slot runs for good or sets the floor after a rebuild. False: written
    #: by an install, never committed. None: the record predates the mark (its stored
    #: JSON has no ``committed`` key, and is written back without one); read as not
    #: committed but for the ``client.boot`` rule on a legacy active slot.
    committed: bool | None = None


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


class StateDir:
    """Paths and records of one device's state directory."""

    def __init__(self, root: Path, *, lock_wait: float = LOCK_WAIT) -> None:
        self.root = root
        self.lock_wait = lock_wait
        self._lock_fd: int | None = None
        self._holding = threading.RLock()

    # -- paths ---------------------------------------------------------------

    @property
    def provisioned(self) -> Path:
        return self.root / "provisioned"

    @property
    def trusted_root(self) -> Path:
        return self.provisioned / "root.json"

    @property
    def metadata_dir(self) -> Path:
        return self.root / "metadata"

    @property
    def slots_dir(self) -> Path:
        return self.root / "slots"

    def slot_image(self, slot: str) -> Path:
        return self.slots_dir / f"slot_{slot}.bin"

    def slot_record_file(self, slot: str) -> Path:
        return self.slots_dir / f"slot_{slot}.json"

    def slot_evidence(self, slot: str) -> Path:
        return self.slots_dir / f"slot_{slot}.evidence"

    def slot_progress(self, slot: str) -> Path:
        return self.slots_dir / f"slot_{slot}.progress.json"

    @property
    def known_bad_file(self) -> Path:
        return self.root / "known_bad.json"

    @property
    def events(self) -> EventLog:
        return EventLog(self.root / "events.log")

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"

    # -- one writer at a time ----------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the state directory against every other writer until the block ends.

        An exclusive ``flock`` on ``lock``: the kernel releases it when the
        holder's process ends, however it ends, so a kill or a power cut never
        leaves the directory locked. Reentrant within this object (a command
        that installs then boots holds it once). Waits up to ``lock_wait``
        seconds, then raises ``StateBusyError`` naming the holder's pid, which
        the holder writes in the file for that message only.
        """
        if not self._holding.acquire(timeout=self.lock_wait):
            raise self._busy("another thread of this process")
        try:
            if self._lock_fd is not None:
                yield
                return
            self._lock_fd = self._acquire()
            try:
                yield
            finally:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
        finally:
            self._holding.release()

    def _acquire(self) -> int:
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            self._wait_for(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _wait_for(self, fd: int) -> None:
        deadline = time.monotonic() + self.lock_wait
        waiting = False
        while not _try_flock(fd):
            holder = _holder(fd)
            if time.monotonic() >= deadline:
                raise self._busy(holder)
            if not waiting:
                logger.warning("%s is in use by %s: waiting for it", self.root, holder)
                waiting = True
            time.sleep(_LOCK_RETRY)

    def _busy(self, holder: str) -> StateBusyError:
        return StateBusyError(
            f"{self.root} is in use by {holder}, another fwclient changing it;"
            f" waited {self.lock_wait:g} s. Run this again once it has finished"
            " (the agent, 'fwclient run', lets go between polls), or wait longer with --lock-wait"
        )

    # -- leftovers of interrupted writes ---------------------------------------------

    def leftovers(self) -> list[Path]:
        """Temporary files and directories that writes cut short by a power loss left.

        Looked for only where the client writes (the directory itself,
        ``provisioned/``, ``slots/``, ``metadata/``), never through a link: a
        slot's image and its progress record, which a resumed download needs,
        are never among them. Remove them only while holding ``lock()``: a
        running writer's temporary file looks the same.
        """
        found: list[Path] = []
        for directory in (self.root, self.provisioned, self.slots_dir, self.metadata_dir):
            if directory != self.root and (directory.is_symlink() or not directory.is_dir()):
                continue
            cache = directory == self.metadata_dir
            with os.scandir(directory) as entries:
                found.extend(Path(e.path) for e in entries if _is_leftover(e, cache=cache))
        return sorted(found)

    # -- provisioning ----------------------------------------------------------

    def is_provisioned(self) -> bool:
        return self.trusted_root.is_file() and (self.provisioned / "device.json").is_file()

    def require_provisioned(self) -> None:
        if not self.is_provisioned():
            raise ProvisioningError(
                f"{self.root} is not a provisioned device: run 'fwclient provision' first"
            )

    def identity(self) -> DeviceIdentity:
        self.require_provisioned()
        file = self.provisioned / "device.json"
        data = _read_json(file)
        capacity = data.get("slot_capacity", DEFAULT_SLOT_CAPACITY)
        # A device provisioned before the setting existed has the default (O3).
        seconds = data.get(_OFFLINE_MAX_AGE, DEFAULT_MAX_AGE // timedelta(seconds=1))
        if isinstance(seconds, bool) or not isinstance(seconds, int) or abs(seconds) > 2**40:
            raise ProvisioningError(f"{file}: {_OFFLINE_MAX_AGE} is not a number of seconds")
        try:
            return DeviceIdentity(
                str(data["device_id"]),
                str(data["hardware_model"]),
                capacity,
                offline_max_age=timedelta(seconds=seconds),
            )
        except ProvisioningError as exc:
            raise ProvisioningError(f"{file} is damaged: {exc}") from None

    def write_identity(self, identity: DeviceIdentity) -> None:
        data = asdict(identity)
        del data["offline_max_age"]
        data[_OFFLINE_MAX_AGE] = identity.offline_max_age // timedelta(seconds=1)
        _write_json(self.provisioned / "device.json", data, mode=0o444)

    # -- records -----------------------------------------------------------------

    def bootenv(self) -> BootEnv:
        """The boot environment; ``ProvisioningError`` if the file is not one (damage)."""
        file = self.root / "bootenv.json"
        data = _read_json(file, default={})
        try:
            if "mode" in data:
                data["mode"] = Mode(data["mode"])
            env = BootEnv(**data)
        except (TypeError, ValueError) as exc:
            raise ProvisioningError(f"{file} is not a boot environment ({exc})") from None
        if env.active not in SLOTS or env.pending not in (None, *SLOTS):
            raise ProvisioningError(f"{file} names a slot that does not exist")
        return env

    def write_bootenv(self, env: BootEnv) -> None:
        if env.active not in SLOTS or (env.pending is not None and env.pending not in SLOTS):
            raise ValueError(f"invalid boot environment {env}")
        _write_json(self.root / "bootenv.json", asdict(env))

    def floor(self) -> Floor:
        """The floors; ``ProvisioningError`` if the file is not a floor record (damage)."""
        file = self.root / "floor.json"
        try:
            return Floor(**_read_json(file, default={}))
        except TypeError as exc:
            raise ProvisioningError(f"{file} is not a floor record ({exc})") from None

    def replace_damaged_floor(self, floor: Floor) -> None:
        """Write ``floor`` over a floor record that cannot be read; a readable one is kept."""
        try:
            self.floor()
        except ProvisioningError:
            _write_json(self.root / "floor.json", asdict(floor))
            return
        raise ValueError("the floor record is readable: it is only ever raised")

    def write_floor(self, floor: Floor) -> None:
        current = self.floor()
        if floor.security_version < current.security_version:
            raise ValueError("the security floor is never lowered")
        _write_json(self.root / "floor.json", asdict(floor))

    @property
    def time_floor_file(self) -> Path:
        return self.root / "time_floor.json"

    def time_floor(self) -> datetime | None:
        """The time floor (None: no record yet); ``ProvisioningError`` if it is damaged.

        A record is ``{"time": <ISO 8601 with a UTC offset>}`` and nothing else.
        """
        file = self.time_floor_file
        if not file.is_file():
            return None
        try:
            return _moment(_read_json(file))
        except ValueError as exc:
            raise ProvisioningError(f"{file} is not a time floor record ({exc})") from None

    def replace_damaged_time_floor(self, moment: datetime) -> None:
        """Write ``moment`` over a time floor that cannot be read; a readable one is kept."""
        try:
            self.time_floor()
        except ProvisioningError:
            self._write_time_floor(moment)
            return
        raise ValueError("the time floor is readable: it is only ever raised")

    def raise_time_floor(self, moment: datetime) -> None:
        """Remember ``moment`` as the earliest time it can now be (never lowered)."""
        current = self.time_floor()
        if current is None or moment > current:
            self._write_time_floor(moment)

    def _write_time_floor(self, moment: datetime) -> None:
        _write_json(self.time_floor_file, {"time": moment.astimezone(UTC).isoformat()})

    def slot_record(self, slot: str) -> SlotRecord | None:
        file = self.slot_record_file(slot)
        if not file.is_file():
            return None
        data = _read_json(file)
        if "committed" in data and not isinstance(data["committed"], bool):
            raise ProvisioningError(f"{file} is not a slot record (committed is not a boolean)")
        try:
            return SlotRecord(**data)
        except TypeError as exc:
            raise ProvisioningError(f"{file} is not a slot record ({exc})") from None

    def write_slot_record(self, slot: str, record: SlotRecord | None) -> None:
        file = self.slot_record_file(slot)
        if record is None:
            if file.is_file():
                file.unlink()
                fsync_dir(file.parent)  # the slot is unbootable before its bytes change
            return
        data = asdict(record)
        if record.committed is None:  # a legacy record stays one: only a boot marks it
            del data["committed"]
        _write_json(file, data)

    def known_bad(self) -> dict[str, dict[str, Any]]:
        """Firmware (by SHA-256) that failed its health check on this device."""
        return _read_json(self.known_bad_file, default={})

    def replace_damaged_known_bad(self) -> None:
        """Start an empty list over a known-bad record that cannot be read; keep a readable one."""
        try:
            self.known_bad()
        except ProvisioningError:
            _write_json(self.known_bad_file, {})
            return
        raise ValueError("the known-bad record is readable: it is only ever added to")

    def add_known_bad(self, record: SlotRecord, *, at: datetime) -> None:
        entries = self.known_bad()
        entries[record.sha256] = {
            "target_path": record.target_path,
            "version": record.version,
            "at": at.astimezone(UTC).isoformat(),
        }
        _write_json(self.known_bad_file, entries)


def remove_leftovers(paths: list[Path]) -> None:
    """Remove what ``StateDir.leftovers`` found (a staged evidence directory whole)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _is_leftover(entry: os.DirEntry[str], *, cache: bool) -> bool:
    if entry.is_file(follow_symlinks=False):
        staged = _NGCLIENT_FILE if cache else _STAGED_FILE
        return bool(staged.match(entry.name))
    return entry.is_dir(follow_symlinks=False) and bool(_STAGED_EVIDENCE.match(entry.name))


def _moment(data: dict[str, Any]) -> datetime:
    """The time a time floor record holds; ``ValueError`` if it is not one."""
    text = data.get("time")
    if set(data) != {"time"} or not isinstance(text, str):
        raise ValueError("it holds no time")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("its time has no UTC offset")
    return moment


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    """Who holds the lock, as far as the file says (for a message; never trusted)."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"pid {text}" if text.isdigit() else "a process that has not written its pid yet"


def _read_json(path: Path, *, default: dict[str, Any] | None = None) -> dict[str, Any]:
    if not path.is_file():
        if default is not None:
            return dict(default)
        raise ProvisioningError(f"{path} is missing")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ProvisioningError(f"{path} is corrupt ({exc})") from None
    if not isinstance(data, dict):
        raise ProvisioningError(f"{path} is not a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any], *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, text.encode(), mode=mode)
