"""One simulated device of the fleet benchmark: the real protocol, no flash.

A ``SimDevice`` is a few objects in memory (its Ed25519 key, its event log's
unacknowledged entries, its slots) and a metadata directory on disk; many
of them share one ``Link`` (a urllib3 pool of keep-alive TLS connections).
It does what ``client`` does at each poll, by the same rules:

- F1 A check-in is ONE request signed with the device key by the profile
  ``client.device_api`` uses (``fwcommon.message_signatures``: RFC 9421,
  fresh nonce, ``created`` now): ``GET /api/v1/device/poll``, whose answer
  (mode, install, assignment, window) is read as issue 11's contract says.
- F2 Then one conditional ``GET metadata/timestamp.json`` (``If-None-Match``
  with the last ETag): a ``304`` ends the poll (``no_update`` logged, as
  the client does). Only a new timestamp, or an assignment not yet
  installed, runs a TUF session: a fresh ``ngclient.Updater`` over the
  device's own metadata directory, trusting only the provisioned root
  (``bootstrap=``), handed the timestamp bytes just fetched (no second
  request), every signature and version checked by python-tuf.
- F3 The poll's assignment is installed only if ngclient finds its path
  in the signed metadata with the same SHA-256, for this hardware model,
  at a version above the running one. The target is downloaded by
  ngclient (length and hashes verified) into the inactive slot's file;
  activation switches the slot, unless the poll says the server is frozen
  or the maintenance window is closed (then it is deferred to a later poll).
- F4 The event log is ``client.events``' chain (``fwcommon.hashchain``,
  compact JSON); a report (``POST /api/v1/device/reports``, signed) carries
  ``client.report.build_report``'s fields and the entries after the last
  acknowledged one, and is sent after every poll that changed something
  (W1), as the client does.
- F5 Every answer is checked; anything else is an error counted against
  its kind (``Recorder``), never retried: a retry would hide it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

from fwcommon.hashchain import GENESIS, compact_json, entry_digest
from fwcommon.message_signatures import public_key_dict, signed_json
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.semver import SemVer

POLL = "/api/v1/device/poll"
REGISTER = "/api/v1/devices/register"
REPORTS = "/api/v1/device/reports"
TIMESTAMP = "/metadata/timestamp.json"
#: Longest answer read from the server (as ``client.device_api``).
MAX_ANSWER = 1024 * 1024
#: Entries one report carries at most (``client.report.MAX_ENTRIES``).
MAX_ENTRIES = 200
INITIAL_VERSION = "1.0.0"


class DeviceError(Exception):
    """A request failed or an answer was not what the protocol says (F5)."""


@dataclass
class Recorder:
    """Latencies (s) and errors by kind of request, from every thread."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def took(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.latencies[kind].append(seconds)

    def failed(self, kind: str, message: str) -> None:
        with self._lock:
            self.errors[kind] += 1
            self.samples.setdefault(kind, message[:300])

    def reset(self) -> None:
        with self._lock:
            self.latencies.clear()
            self.errors.clear()
            self.samples.clear()


@dataclass(frozen=True)
class Link:
    """What the devices share: the server, its CA'd pool, the provisioned root, the recorder."""

    server: str
    pool: urllib3.PoolManager
    root: bytes
    recorder: Recorder
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    @classmethod
    def open(cls, *, server: str, ca: Path, root: bytes, connections: int) -> Link:
        pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=connections,
            block=True,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca),
            retries=False,
            timeout=urllib3.Timeout(connect=30, read=60),
        )
        return cls(server.rstrip("/"), pool, root, Recorder())

    def get(self, path: str, headers: Mapping[str, str]) -> urllib3.BaseHTTPResponse:
        return self.pool.request(
            "GET", self.server + path, headers=dict(headers), preload_content=False
        )


@dataclass(frozen=True)
class Assignment:
    """A signed target a deployment assigns to this device (the server's word, F3)."""

    target_path: str
    sha256: str


@dataclass(frozen=True)
class Directive:
    """What a check-in answered (F1): the freeze, the assignment, the maintenance window."""

    frozen: bool = False
    assignment: Assignment | None = None
    window: tuple[datetime, datetime] | None = None

    def activates(self, now: datetime) -> bool:
        if self.frozen:
            return False
        return self.window is None or self.window[0] <= now < self.window[1]


@dataclass
class Slot:
    version: str
    sha256: str | None = None


@dataclass
class SimDevice:
    """One device: key, log, slots and TUF cache (module docstring)."""

    device_id: str
    hardware_model: str
    directory: Path
    signer: CryptoSigner = field(default_factory=CryptoSigner.generate_ed25519)
    entries: list[dict[str, Any]] = field(default_factory=list)
    head: tuple[int, str] = (0, GENESIS)
    acked: int = 0
    etag: str | None = None
    timestamp: bytes | None = None
    slots: dict[str, Slot] = field(
        default_factory=lambda: {"a": Slot(INITIAL_VERSION), "b": Slot(INITIAL_VERSION)}
    )
    active: str = "a"
    #: Verified in the inactive slot, waiting for an open window or the end of a freeze.
    pending: Assignment | None = None
    reported_version: str | None = None
    #: Its registration was accepted.
    registered: bool = False
    #: Check-ins answered, reports acknowledged.
    checkins: int = 0
    reports: int = 0

    @property
    def running_version(self) -> str:
        return self.slots[self.active].version

    # --- F4: the event log and reports ------------------------------------------------

    def log(self, event: str, message: str, *, now: datetime, **detail: Any) -> None:
        body = {
            "time": now.astimezone(UTC).isoformat(),
            "type": event,
            "message": message,
            "detail": detail,
        }
        seq, prev = self.head[0] + 1, self.head[1]
        digest = entry_digest(seq=seq, prev=prev, body=body, canonical=compact_json)
        self.entries.append({"seq": seq, **body, "prev": prev, "hash": digest})
        self.head = (seq, digest)

    def report_body(self) -> dict[str, Any]:
        """``client.report.build_report``'s fields, and the entries not yet acknowledged."""
        entries = self.entries[:MAX_ENTRIES]
        last = next((e for e in reversed(self.entries) if e["type"] != "no_update"), None)
        return {
            "device_id": self.device_id,
            "hardware_model": self.hardware_model,
            "running_version": self.running_version,
            "installed_version": self.running_version,
            "slot": self.active,
            "security_floor": 1,
            "mode": "normal",
            "pending": None,
            "metadata_expires": {},
            "last_update": None
            if last is None
            else {"type": last["type"], "message": last["message"], "time": last["time"]},
            "damaged": False,
            "entries": entries,
            "more": len(self.entries) > len(entries),
        }

    def report(self, link: Link) -> None:
        """Send reports until the log is acknowledged (W2's rounds, bounded)."""
        for _round in range(10):
            body = self.report_body()
            answer = self.signed(link, "POST", REPORTS, body, kind="report")
            seq, digest = answer.get("acked_seq"), answer.get("acked_hash")
            if "refused" in answer or type(seq) is not int:
                raise DeviceError(f"report refused: {answer}")
            if seq and not any(e["seq"] == seq and e["hash"] == digest for e in body["entries"]):
                raise DeviceError(f"the server acknowledged entry {seq}, which was not sent")
            self.entries = [e for e in self.entries if e["seq"] > seq]
            self.acked = seq
            self.reported_version = body["running_version"]
            self.reports += 1
            if not body["more"]:
                return

    # --- F1: signed requests -----------------------------------------------------------

    def signed(
        self, link: Link, method: str, path: str, body: Any | None, *, kind: str
    ) -> dict[str, Any]:
        """One signed request (F1); its JSON object, or ``DeviceError``; timed as ``kind``."""
        url = link.server + path
        data, headers = signed_json(
            method, url, body, signer=self.signer, key_id=self.device_id, created=link.clock()
        )
        start = time.perf_counter()
        try:
            response = link.pool.request(
                method, url, body=data or None, headers=headers, preload_content=False
            )
            raw = response.read(MAX_ANSWER + 1)
            response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise DeviceError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        link.recorder.took(kind, time.perf_counter() - start)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if response.status not in (200, 201) or not isinstance(answer, dict):
            raise DeviceError(f"{method} {path}: HTTP {response.status} {raw[:200]!r}")
        return answer

    def register(self, link: Link, token: str) -> None:
        body = {
            "device_id": self.device_id,
            "hardware_model": self.hardware_model,
            "public_key": public_key_dict(self.signer.public_key),
            "token": token,
        }
        answer = self.signed(link, "POST", REGISTER, body, kind="register")
        if answer.get("state") != "accepted":
            raise DeviceError(f"registered as {answer.get('state')!r}, not accepted")
        self.registered = True
        self.log(
            "provisioned",
            f"provisioned as {self.device_id} ({self.hardware_model})",
            now=link.clock(),
            device_id=self.device_id,
            hardware_model=self.hardware_model,
        )

    def check_in(self, link: Link) -> Directive:
        answer = self.signed(link, "GET", POLL, None, kind="checkin")
        self.checkins += 1
        return _directive(answer)

    # --- F2, F3: one poll --------------------------------------------------------------

    def poll(self, link: Link) -> bool:
        """One poll; whether it changed something (and was reported). Raises ``DeviceError``."""
        directive = self.check_in(link)
        now = link.clock()
        fresh = self._conditional_timestamp(link)
        wanted = directive.assignment
        if wanted is not None and (self._has(wanted) or self.pending == wanted):
            wanted = None
        installs = wanted is not None and not directive.frozen  # a freeze installs nothing
        if fresh is not None or wanted is not None:
            updater = self._session(link, fresh or self.timestamp)
            if installs and wanted is not None:
                self._install(link, updater, wanted, now=now)
        changed = self._settle(directive, now=now) or installs
        if changed or self.reported_version is None:  # W1: a change, or never reported
            self.report(link)
        return changed

    def _settle(self, directive: Directive, *, now: datetime) -> bool:
        """Activate what waits in the other slot, if the directive allows; log the outcome."""
        if directive.frozen:
            self.log("server_frozen", "the server is frozen: nothing installed", now=now)
            return False
        if self.pending is None:
            self.log("no_update", "no newer firmware for this device", now=now)
            return False
        if not directive.activates(now):
            self.log("deferred_window", "verified, not activated: window closed", now=now)
            return False
        self._activate(now=now)
        return True

    def _has(self, wanted: Assignment) -> bool:
        return self.slots[self.active].sha256 == wanted.sha256

    def _conditional_timestamp(self, link: Link) -> bytes | None:
        """F2: the new timestamp's bytes, or None when the server answered 304."""
        start = time.perf_counter()
        try:
            response = link.get(TIMESTAMP, {"If-None-Match": self.etag} if self.etag else {})
            data = response.read(MAX_ANSWER + 1)
            response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise DeviceError(f"GET {TIMESTAMP}: {type(exc).__name__}: {exc}") from None
        link.recorder.took("timestamp", time.perf_counter() - start)
        if response.status == 304 and self.etag is not None:
            return None
        if response.status != 200:
            raise DeviceError(f"GET {TIMESTAMP}: HTTP {response.status}")
        self.etag = response.headers.get("ETag")
        return data

    def _session(self, link: Link, timestamp: bytes | None) -> Updater:
        """F2: one TUF refresh over this device's cache, trusting the provisioned root only."""
        cache = self.directory / "metadata"
        cache.mkdir(parents=True, exist_ok=True)
        fetcher = _Fetcher(link, {link.server + TIMESTAMP: timestamp} if timestamp else {})
        updater = Updater(
            metadata_dir=str(cache),
            metadata_base_url=link.server + "/metadata/",
            target_base_url=link.server + "/targets/",
            fetcher=fetcher,
            bootstrap=link.root,
        )
        start = time.perf_counter()
        try:
            updater.refresh()
        except tuf_errors.RepositoryError as exc:
            raise DeviceError(f"TUF refused the metadata: {type(exc).__name__}: {exc}") from None
        except tuf_errors.DownloadError as exc:
            raise DeviceError(f"TUF refresh: {type(exc).__name__}: {exc}") from None
        link.recorder.took("tuf_refresh", time.perf_counter() - start)
        self.timestamp = timestamp
        return updater

    def _install(self, link: Link, updater: Updater, wanted: Assignment, *, now: datetime) -> None:
        """F3: verify the assignment against the signed metadata, download into the other slot."""
        target = updater.get_targetinfo(wanted.target_path)
        target, info = _checked(
            target, wanted, model=self.hardware_model, running=self.running_version
        )
        inactive = "b" if self.active == "a" else "a"
        start = time.perf_counter()
        try:
            updater.download_target(target, str(self.directory / f"slot-{inactive}.bin"))
        except (tuf_errors.DownloadError, tuf_errors.RepositoryError) as exc:
            raise DeviceError(f"download of {wanted.target_path}: {exc}") from None
        link.recorder.took("download", time.perf_counter() - start)
        self.slots[inactive] = Slot(info.version, wanted.sha256)
        self.pending = wanted
        self.log(
            "downloaded",
            f"{wanted.target_path} version {info.version} verified in slot {inactive}",
            now=now,
            slot=inactive,
            target=wanted.target_path,
            version=info.version,
        )

    def _activate(self, *, now: datetime) -> None:
        inactive = "b" if self.active == "a" else "a"
        slot = self.slots[inactive]
        target = self.pending.target_path if self.pending else ""
        self.log(
            "installed",
            f"firmware {slot.version} installed in slot {inactive}, 1 boot tries",
            now=now,
            slot=inactive,
            target=target,
            version=slot.version,
            security_version=1,
            recovery=False,
        )
        self.active, self.pending = inactive, None
        self.log(
            "updated",
            f"firmware {slot.version} in slot {inactive} passed its health check and is committed",
            now=now,
            slot=inactive,
            version=slot.version,
        )


def _checked(
    target: TargetFile | None, wanted: Assignment, *, model: str, running: str
) -> tuple[TargetFile, FirmwareInfo]:
    """F3: the signed firmware named by ``wanted``, or ``DeviceError`` saying why not."""
    if target is None:
        raise DeviceError(f"{wanted.target_path} is not in the signed metadata")
    if target.hashes.get("sha256") != wanted.sha256:
        raise DeviceError(f"{wanted.target_path} is signed with another SHA-256")
    info = FirmwareInfo.from_target(target)
    if model not in info.hardware_models:
        raise DeviceError(f"{wanted.target_path} is not for {model}")
    if not SemVer.parse(running) < info.semver:
        raise DeviceError(f"{wanted.target_path} ({info.version}) is not newer than {running}")
    return target, info


def _directive(answer: Mapping[str, Any]) -> Directive:
    """The poll's answer (the contract of issue 11); a malformed one is an error (F5)."""
    try:
        mode = answer["mode"]
        assigned = answer["assignment"]
        window = answer["window"]
        assignment = (
            None
            if assigned is None
            else Assignment(str(assigned["target_path"]), str(assigned["sha256"]))
        )
        opens = (
            None
            if window is None
            else (
                datetime.fromisoformat(window["opens"]),
                datetime.fromisoformat(window["closes"]),
            )
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DeviceError(f"the poll's answer is not a directive ({exc})") from None
    if mode not in ("normal", "frozen"):
        raise DeviceError(f"the poll's mode {mode!r} is neither normal nor frozen")
    return Directive(frozen=mode == "frozen", assignment=assignment, window=opens)


class _Fetcher(FetcherInterface):
    """ngclient's network over the shared pool; the timestamp just fetched is served as is."""

    def __init__(self, link: Link, fetched: dict[str, bytes]) -> None:
        self._link = link
        self._fetched = fetched

    def _fetch(self, url: str) -> Iterator[bytes]:
        if url in self._fetched:
            return iter([self._fetched.pop(url)])
        response = self._link.pool.request("GET", url, preload_content=False)
        if response.status != 200:
            response.drain_conn()
            response.release_conn()
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status}", response.status)
        return _chunks(response)


def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    try:
        yield from response.stream(64 * 1024)
    finally:
        response.release_conn()
