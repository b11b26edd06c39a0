"""Check for and install an update: ngclient, the install policy, the slot writer.

One ``check``/``update`` is one TUF session (TUF spec 5.3 to 5.7): a fresh
``ngclient.Updater`` that trusts only the provisioned root (``bootstrap=``
every time, so a root in the writable cache is never trusted on its own),
refreshes the metadata, walks the delegations for this hardware model
(``discovery``), and hands the verified candidates to the pure ``policy``.
``update`` then confirms the chosen target with ngclient, streams it into
the inactive slot (``download``) and commits the slot as pending with the
signed metadata it was verified against as evidence. The next ``fwclient
boot`` tries it.

Time (R25, R52): the only clock is the system clock, read once per session.
A clock behind the time floor (the latest time this device has trusted) is
logged as ``clock_skew`` and the floor is used instead: every expiry is
checked again at the floor, so a set-back clock cannot revive expired
metadata. After a successful refresh the floor rises to the clock's time;
since ngclient has just accepted a timestamp valid at that time, a clock
set forward raises the floor at most to the timestamp's expiry (a day).
Provisioning seeds the floor (``client.provisioning``); a device with none
(provisioned by an older client, never refreshed) takes the client's build
time as its floor, so no session trusts a clock older than its client. A
damaged floor record is rebuilt from what the device can prove (rule P3 of
``client.provisioning``), logged as ``integrity_failure``, and the session
goes on.

Every outcome is one event in the device's log, with the event type and a
sentence a person can follow; failures return a result (they never raise
past ``check``/``update``), and the running firmware is never touched.

Idle polls: a long-running client (``fwclient run``) reuses one ``Remote``,
and the ``Remote`` remembers, in memory only, what its last full refresh
saw (``PollMemory``). A poll then starts with one conditional request for
``timestamp.json`` (``If-None-Match`` with the last ETag). When the answer
is "unchanged" (a ``304``, or the very same bytes from a server without
ETags), the last full refresh began less than ``max_age`` ago (24 h,
monotonic clock), the server then answered "not found" for the next root
version, and the top-level metadata verified then has not expired at the
device's trusted time, the probe for that root is answered from memory. All
the rest runs as in any poll, with no further request: ngclient verifies
root, timestamp, snapshot and targets from the cache (signatures, versions,
expiries), ``check_fresh`` checks the expiries again at the trusted time,
and discovery and the policy decide again from the device's floor, known-bad
list and boot environment as they are now. Otherwise the poll is a full
refresh, root probe first (TUF 5.3), and ngclient is handed the timestamp
bytes just fetched, so they cost no second request. Any failure forgets the
memory: the next poll is a full refresh.

Why skipping the probe does not weaken freeze or rollback protection: while
``timestamp.json`` is byte for byte the one already verified, there is
nothing new to trust, and a newer root could only matter for metadata not
seen yet; any new timestamp (which every change of snapshot, targets or
online keys brings) runs the whole TUF workflow, root probe first. A server
that wants to hide a new root can answer its probe with "not found" as
easily as it can keep serving an old timestamp, so the probe never bounded
a freeze: expiry does, and an expired timestamp is never skipped. The
bounded age still makes a device ask for a newer root at least daily (a
root that rotates only root keys changes no other file).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from client import authorizations as authorization_store
from client import delta, discovery
from client.directive import Directive, Window
from client.download import DownloadStoppedError, download_into
from client.errors import ClientError, FailsafeError, UpdateRefusedError
from client.events import AUTHORIZATION_REFUSALS, EventType
from client.evidence import role_file_name, root_file_name
from client.fetcher import ResumableFetcher
from client.offline import Offline
from client.policy import (
    AUTHORIZATION_EVENTS,
    AssignmentRefusal,
    Candidate,
    Choice,
    Refusal,
    RunningEntry,
    choose,
)
from client.provisioning import BUILT, time_floor
from client.readiness import Activation, Decision, Guard
from client.slots import TargetRef, open_inactive
from client.state import Mode, SlotRecord, StateDir
from repo_metadata.authorization import (
    AuthorizationContext,
    AuthorizationError,
    AuthorizationKeys,
    SignedAuthorization,
)
from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo

logger = logging.getLogger(__name__)

DEFAULT_TRIES = 3
#: How long an idle poll may answer the root probe from memory (module docstring).
ROOT_PROBE_MAX_AGE = 24 * 3600.0
_CONFIG = UpdaterConfig()

#: What each event means, in words a technician can act on.
MEANING: Mapping[EventType, str] = {
    EventType.ROLLBACK_ATTACK: "the server offered metadata older than what this device"
    " already trusts (rollback or replay)",
    EventType.FREEZE_ATTACK: "the metadata offered has expired: the server may be frozen"
    " or replaying old files",
    EventType.MIX_AND_MATCH: "a metadata file is not the version or hash the repository's"
    " snapshot or timestamp lists (mix-and-match)",
    EventType.BAD_SIGNATURE: "metadata is not signed by enough of the keys trusted for its role",
    EventType.BAD_HASH: "the downloaded firmware does not match its signed length and hash",
    EventType.TOO_LONG: "the server sent more bytes than the signed length (endless data)",
    EventType.SLOW_RETRIEVAL: "the server sends too slowly (slow retrieval)",
    EventType.UNREACHABLE: "the update server could not be reached; the current firmware"
    " keeps running",
    EventType.FIRMWARE_DOWNGRADE: "a signed firmware is below this device's security floor",
    EventType.HARDWARE_MISMATCH: "a signed firmware is not for this hardware model",
    EventType.CLOCK_SKEW: "the system clock is behind the latest trusted time",
    EventType.KNOWN_BAD: "this firmware failed its health check here before",
    EventType.INTEGRITY_FAILURE: "firmware bytes and the signed record of them disagree (R29)",
    EventType.FAILSAFE_REFUSED: "the device is in failsafe mode: only a signed recovery may"
    " change it",
    EventType.INSTALLED: "a verified firmware is in the inactive slot, pending a reboot",
    EventType.OFFLINE_INSTALL: "a verified firmware from a bundle, installed with no network",
    EventType.AWAITING_AUTHORIZATION: "this release needs a technician's authorization for this"
    " device (R9); the current firmware keeps running until one arrives",
    EventType.PREREQUISITE_MISSING: "this release needs an intermediate release installed first",
    EventType.AUTHORIZATION_ACCEPTED: "a technician's authorization verified and is bound to"
    " the install it allows",
    EventType.AUTHORIZATION_REPLAYED: "a technician's authorization was used here before (replay)",
    EventType.AUTHORIZATION_EXPIRED: "a technician's authorization has expired",
    EventType.AUTHORIZATION_WRONG_DEVICE: "a technician's authorization is for another device",
    EventType.AUTHORIZATION_WRONG_RELEASE: "a technician's authorization is for another release",
    EventType.AUTHORIZATION_BAD_SIGNATURE: "a technician's authorization does not verify"
    " (altered or wrongly signed)",
    EventType.AUTHORIZATION_UNTRUSTED_KEY: "a technician's authorization is signed by a key"
    " the trusted root does not list",
    EventType.DEFERRED_IN_USE: "the device is in use (R52): the verified firmware waits in"
    " the inactive slot, the current firmware keeps running, the next poll tries again",
    EventType.NO_UPDATE: "no newer firmware for this device",
    EventType.CHECKED: "a newer firmware is available",
    EventType.RUNNING_NOT_LISTED: "the signed release set does not account for the firmware"
    " this device runs (it lists neither it nor a newer one, or signs it no more): old"
    " metadata replayed (after a cache wipe) or the release withdrawn",
    EventType.INSUFFICIENT_SPACE: "the signed firmware does not fit this device's slot or"
    " free storage",
    EventType.ASSIGNMENT_REFUSED: "the release the server assigns to this device is refused by"
    " the device's own rules (signed set, install policy); the current firmware keeps running",
    EventType.NO_ASSIGNMENT: "this device installs only what a deployment assigns to it, and"
    " none is assigned now",
    EventType.POLL_UNANSWERED: "the server gave this registered device no valid poll answer:"
    " nothing new is installed this poll, the metadata is still refreshed",
    EventType.SERVER_FROZEN: "the update server is in its failsafe freeze: nothing is installed"
    " or activated, the current verified firmware keeps running",
    EventType.DELTA_FAILED: "a delta could not carry the chosen release; its full image is"
    " downloaded instead",
    EventType.DEFERRED_WINDOW: "outside the maintenance window: the verified firmware waits in"
    " the inactive slot, the current firmware keeps running, a poll inside the window"
    " activates it",
    EventType.ERROR: "the update could not proceed",
}

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
#: Refusals that only wait (``Outcome.WAITING``): the device is fine as it is.
_WAITING = frozenset({EventType.AWAITING_AUTHORIZATION, EventType.PREREQUISITE_MISSING})
#: What changes the state of a release's authorization (``awaiting`` is logged once).
_AUTHORIZATION_STEPS = (
    EventType.AWAITING_AUTHORIZATION,
    EventType.AUTHORIZATION_ACCEPTED,
    EventType.AUTHORIZATION_USED,
    EventType.INSTALLED,
    EventType.DEFERRED_IN_USE,
    *AUTHORIZATION_REFUSALS,
)
# ngclient's version errors that compare a file with the version its listing
# (timestamp or snapshot) names, rather than with the version already trusted:
# ``listed`` then ``served``.
_LISTED = re.compile(
    r"^Expected snapshot version (?P<listed>\d+), got (?P<served>\d+)"
    r"|^Expected \S+ v(?P<role_listed>\d+), got v(?P<role_served>\d+)"
)
# ngclient's words for a snapshot that no longer lists a role it listed (TUF 5.5.5).
_DROPPED = re.compile(r"^New snapshot is missing info for ")
# tuf's words for one key id signing twice (a threshold counted twice).
_DUPLICATE_SIGNATURE = re.compile(r"^Multiple signatures found for keyid ")
#: Failures a check or an update reports as its result.
_EXPECTED = (
    ClientError,
    tuf_errors.RepositoryError,
    tuf_errors.DownloadError,
    InvalidFieldError,
    OSError,
)


class Outcome(StrEnum):
    INSTALLED = "installed"
    AVAILABLE = "available"
    UP_TO_DATE = "up_to_date"
    PENDING_REBOOT = "pending_reboot"
    #: Waiting for something outside the device, nothing wrong: a technician's
    #: authorization, or an intermediate release to install first.
    WAITING = "waiting"
    #: R52: verified and kept, not activated: the device is in use, or outside the
    #: maintenance window (``candidate`` says what, ``event`` which).
    DEFERRED = "deferred"
    #: The server's failsafe freeze: nothing installed or activated, nothing wrong here.
    FROZEN = "frozen"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class UpdateResult:
    outcome: Outcome
    event: EventType
    message: str
    candidate: Candidate | None = None

    @property
    def ok(self) -> bool:
        return self.outcome not in {Outcome.REFUSED, Outcome.FAILED}


@dataclass(frozen=True)
class LastRefresh:
    """What the last full refresh on a ``Remote`` saw."""

    #: The ``timestamp.json`` bytes ngclient verified, and their ETag.
    timestamp: bytes
    etag: str | None
    #: The root URL the server answered "not found" (None: not seen).
    absent_root: str | None
    #: The earliest expiry of the top-level metadata it verified.
    expires: datetime
    #: ``PollMemory.clock()`` when it began.
    began: float


@dataclass
class PollMemory:
    """What a long-running client remembers between polls (module docstring)."""

    max_age: float = ROOT_PROBE_MAX_AGE
    clock: Callable[[], float] = time.monotonic
    last: LastRefresh | None = None

    def skips_root_probe(self, last: LastRefresh, timestamp: bytes, *, at: datetime) -> bool:
        """Whether a poll that fetched ``timestamp`` may answer the root probe from ``last``."""
        return (
            last.absent_root is not None
            and timestamp == last.timestamp
            and 0 <= self.clock() - last.began < self.max_age
            and at < last.expires
        )


@dataclass(frozen=True)
class Remote:
    """Where the repository is, the network to reach it with, and what polls remember."""

    server: str
    fetcher: ResumableFetcher
    memory: PollMemory = field(default_factory=PollMemory, compare=False, repr=False)

    @property
    def metadata_url(self) -> str:
        return f"{self.server.rstrip('/')}/metadata/"

    @property
    def timestamp_url(self) -> str:
        return f"{self.metadata_url}timestamp.json"

    @property
    def targets_url(self) -> str:
        return f"{self.server.rstrip('/')}/targets/"


def classify(exc: BaseException) -> EventType:
    """The event an error is logged as (TUF's errors named by the attack they stop)."""
    if isinstance(exc, ClientError):
        return exc.event
    mapping: tuple[tuple[type[BaseException], EventType], ...] = (
        (tuf_errors.ExpiredMetadataError, EventType.FREEZE_ATTACK),
        (tuf_errors.UnsignedMetadataError, EventType.BAD_SIGNATURE),
        (tuf_errors.LengthOrHashMismatchError, EventType.MIX_AND_MATCH),
        (tuf_errors.DownloadLengthMismatchError, EventType.TOO_LONG),
        (tuf_errors.SlowRetrievalError, EventType.SLOW_RETRIEVAL),
        (tuf_errors.DownloadError, EventType.UNREACHABLE),
    )
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return _version_event(str(exc))
    if _DROPPED.match(str(exc)):
        return EventType.ROLLBACK_ATTACK  # a role dropped is a role rolled back to nothing
    if isinstance(exc, DeserializationError) and _DUPLICATE_SIGNATURE.match(str(exc.__cause__)):
        return EventType.BAD_SIGNATURE
    for kind, event in mapping:
        if isinstance(exc, kind):
            return event
    return EventType.ERROR


def _version_event(message: str) -> EventType:
    """Rollback, or mix-and-match, by which side of a version comparison is older.

    A file older than the version its listing names is a stale file mixed
    into a newer set (mix-and-match). A listing that names a version older
    than the file signed for it, or than the one trusted, points back in
    time: a rollback, whichever check caught it first.
    """
    match = _LISTED.match(message)
    if match is None:
        return EventType.ROLLBACK_ATTACK
    listed = int(match["listed"] or match["role_listed"])
    served = int(match["served"] or match["role_served"])
    return EventType.MIX_AND_MATCH if served < listed else EventType.ROLLBACK_ATTACK


def _detail(exc: BaseException) -> str:
    """What went wrong, with the cause tuf hides behind a generic deserialization error."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(exc, DeserializationError) and cause is not None and str(cause):
        return f"{text}: {cause}"
    return text


def explain(event: EventType, detail: str) -> str:
    meaning = MEANING.get(event, event.value.replace("_", " "))
    return f"{meaning}: {detail}" if detail else meaning


def trusted_time(clock: datetime, floor: datetime | None) -> datetime:
    """The device's trusted time: the clock, or the time floor if the clock is behind it."""
    return clock if floor is None or clock >= floor else floor


def session_time(state: StateDir, *, clock: datetime) -> datetime:
    """The trusted time of a session starting at ``clock`` (R25, R52): the one rule for it.

    The time floor is ``state``'s record; with none (provisioned by an older
    client), the client's build time; a damaged record is rebuilt and logged
    (``provisioning.time_floor``). Every session takes its time from here:
    the device's and the conformance entry point's.
    """
    return trusted_time(clock, time_floor(state, clock=clock, built=BUILT))


def refresh_metadata(
    remote: Remote,
    *,
    cache: Path,
    root: bytes,
    at: datetime,
    state: StateDir,
    network: FetcherInterface | None = None,
    reference: datetime | None = None,
) -> tuple[Updater, dict[str, datetime]]:
    """One TUF refresh (spec 5.3 to 5.5) as every session runs it; the top-level expiries.

    ngclient trusts ``root`` alone (``bootstrap=``: a root in the writable
    ``cache`` is never trusted on its own) and reaches the remote through
    ``network`` (by default a ``_SessionFetcher`` over its paced fetcher).
    Every top-level expiry is then checked again at the trusted time ``at``,
    and only then does ``state``'s time floor rise to ``at``.

    An offline session (``client.offline``) gives its ``reference`` time
    instead (O2): ngclient's expiry checks and the check above run at it,
    and the time floor is left to the install (O6).
    """
    cache.mkdir(parents=True, exist_ok=True)
    updater = Updater(
        metadata_dir=str(cache),
        metadata_base_url=remote.metadata_url,
        target_base_url=remote.targets_url,
        fetcher=_SessionFetcher(remote) if network is None else network,
        config=_CONFIG,
        bootstrap=root,
    )
    if reference is not None:
        set_reference_time(updater, reference)
    updater.refresh()
    expiries = discovery.check_fresh(cache, at if reference is None else reference)
    if reference is None:
        state.raise_time_floor(at)
    return updater, expiries


def _usable_documents(store: authorization_store.Store, at: datetime) -> authorization_store.Store:
    """``store`` holding only the bound documents still usable at ``at`` (N1); records kept."""
    documents = {
        nonce: document
        for nonce, document in store.documents.items()
        if store.records[nonce].usable_until >= at
    }
    return dataclasses.replace(store, documents=documents)


def set_reference_time(updater: Updater, reference: datetime) -> None:
    """O2 of ``client.offline``: ngclient checks every expiry at ``reference``, not its clock.

    python-tuf 7.0.1 has no public way to give ngclient its reference time;
    its ``TrustedMetadataSet`` reads the one attribute set here, the only
    private attribute this client touches (ADR 0007). A python-tuf without
    it fails here, closed, rather than check at its own clock unnoticed.
    """
    trusted = updater._trusted_set
    if not hasattr(trusted, "reference_time"):
        raise RuntimeError(
            "this python-tuf has no Updater._trusted_set.reference_time: offline updates"
            " need python-tuf 7.0.1's (ADR 0007)"
        )
    trusted.reference_time = reference


def target_url(remote: Remote, target: TargetFile, *, consistent_snapshot: bool) -> str:
    """Where ``target`` is served; with consistent snapshots, under its hash (TUF 5.7.3).

    The hash is the SHA-256, which every firmware lists (``_candidate``); a
    target without one is named by its first hash, as the spec allows.
    """
    if not consistent_snapshot:
        return f"{remote.targets_url}{target.path}"
    digest = target.hashes.get("sha256") or next(iter(target.hashes.values()))
    directory, slash, name = target.path.rpartition("/")
    return f"{remote.targets_url}{directory}{slash}{digest}.{name}"


def check(
    state: StateDir,
    remote: Remote,
    *,
    directive: Directive,
    recovery: bool = False,
    authorizations: Sequence[SignedAuthorization] = (),
) -> UpdateResult:
    """Refresh the metadata and say what ``directive`` would have installed; change no slot."""
    return _guarded(
        state,
        lambda session: session.check(recovery=recovery),
        remote,
        directive,
        authorizations,
    )


def update(
    state: StateDir,
    remote: Remote,
    *,
    directive: Directive,
    recovery: bool = False,
    tries: int = DEFAULT_TRIES,
    should_stop: Callable[[], bool] = lambda: False,
    guard: Guard | None = None,
    authorizations: Sequence[SignedAuthorization] = (),
    offline: Offline | None = None,
) -> UpdateResult:
    """Check, then download, verify and install the chosen firmware as pending.

    R52: ``guard`` (``client.readiness``; None: no ready-check configured)
    is asked once the firmware is verified in the inactive slot and before
    the slot is marked pending. In use, the slot stays sealed but not
    pending (never booted as it is), ``deferred_in_use`` is logged, and the
    result is ``DEFERRED`` with the deferred ``candidate``; the next update
    of the same target resumes the sealed slot from its end: its bytes are
    hashed again, not downloaded again. A sealed slot was chosen over a
    pending slot flagged "wait": every boot path already treats a sealed,
    never committed slot as not bootable, so no boot rule changes.

    R9, R58: ``authorizations`` are the technicians' documents this update
    holds (picked up at the poll, or handed over as files). Policy rule 5
    decides with them; the document that allows the chosen release is bound
    to it (``client.authorizations`` N1) before any byte is written, and
    spent once the slot is pending (N2). A deferral keeps it bound, so the
    next update finishes the same install within the document's grace. A
    document handed over that allows nothing is logged with the reason.

    Issue 11: ``directive`` is what the server's poll said, or
    ``client.directive.STANDALONE`` for a device with no server to ask
    (required: rule P4 of ``client.directive``). Frozen, nothing is
    installed or activated (``server_frozen``); the selection is policy
    rule 8's; outside the window, the verified firmware is sealed, not
    pending (``deferred_window``, before the clinical-use guard is asked),
    and a pending slot waits for the window before the agent reboots into it.

    Issue 13: ``offline`` makes it an offline session over a bundle
    (``remote`` is ``client.bundle_source``'s), with ``client.offline``'s
    reference time (O2) and floor (O6), and its install logged (O8).
    """

    def run(session: _Session) -> UpdateResult:
        result = session.check(recovery=recovery, log_available=False)
        if result.candidate is None or result.outcome is not Outcome.AVAILABLE:
            return result
        try:
            return session.install(
                result.candidate,
                recovery=recovery,
                tries=tries,
                should_stop=should_stop,
                guard=guard or Guard(),
            )
        finally:
            session.log_contradicted()

    return _guarded(state, run, remote, directive, authorizations, offline=offline)


def _guarded(
    state: StateDir,
    action: Callable[[_Session], UpdateResult],
    remote: Remote,
    directive: Directive,
    authorizations: Sequence[SignedAuthorization] = (),
    *,
    offline: Offline | None = None,
) -> UpdateResult:
    state.require_provisioned()
    session = _Session(state, remote, directive, authorizations, offline)
    try:
        return action(session)
    except BaseException as exc:
        remote.memory.last = None  # any failure: the next poll is a full refresh
        if not isinstance(exc, _EXPECTED):
            raise
        event = classify(exc)
        message = explain(event, _detail(exc))
        session.log(event, message, error=type(exc).__name__)
        refused = event not in {EventType.UNREACHABLE, EventType.ERROR}
        return UpdateResult(Outcome.REFUSED if refused else Outcome.FAILED, event, message)


class _Session:
    """One refresh of the metadata, and what follows from it."""

    def __init__(
        self,
        state: StateDir,
        remote: Remote,
        directive: Directive,
        authorizations: Sequence[SignedAuthorization] = (),
        offline: Offline | None = None,
    ) -> None:
        self.state = state
        self.remote = remote
        #: What the server's poll said (``client.directive``).
        self.directive = directive
        #: The one that allows the chosen release, once chosen.
        self.authorization: SignedAuthorization | None = None
        self.identity = state.identity()
        clock = datetime.now(UTC)
        self.at = session_time(state, clock=clock)
        self.clock = clock
        #: Issue 13: an offline session's bundle and freshness bound (None: online).
        self.offline = offline
        #: When the metadata's expiries are checked: ``at``, or offline O2's reference time.
        self.metadata_at = self.at
        #: N3's "dropped once its time has passed": online at ``at``, to which the refresh
        #: raises the floor before any record is written; offline at the floor, which rises
        #: to T, not the clock (O6): a clock set back to after the floor must not find a
        #: spent nonce dropped (R25).
        dropped_at = self.at
        if offline is not None:
            floor = time_floor(state, clock=clock, built=BUILT)
            self.metadata_at = offline.reference_time(clock=clock, floor=floor)
            dropped_at = floor
        #: What the device keeps of authorizations (N1-N4), read once per session.
        self.kept = _usable_documents(authorization_store.load(state, at=dropped_at), self.at)
        #: The technicians' documents this session holds (policy rule 5): those given,
        #: and those bound to an install not finished yet (N1: a deferral keeps them).
        self.held = self.kept.held_with(authorizations)
        self._updater: Updater | None = None
        #: ngclient's network for this session (set by the refresh).
        self._network_fetcher: _SessionFetcher | None = None
        self.roles: dict[str, discovery.SignedRole] = {}
        #: Policy rule 6 (R29): the running version signed with other bytes.
        self.contradicted: tuple[Refusal, ...] = ()

    @property
    def updater(self) -> Updater:
        if self._updater is None:
            raise RuntimeError("no metadata refresh in this session yet")
        return self._updater

    def log(self, event: EventType, message: str, **detail: Any) -> None:
        self.state.events.append(event, message, now=self.at, **detail)

    # -- checking ------------------------------------------------------------

    def check(self, *, recovery: bool, log_available: bool = True) -> UpdateResult:
        env = self.state.bootenv()
        if env.mode is Mode.FAILSAFE and not recovery:
            raise FailsafeError("refusing to update; a technician can install a signed recovery")
        if recovery and env.mode is not Mode.FAILSAFE:
            raise ClientError("--recovery is only for a device in failsafe mode")
        if env.pending is not None and not self.directive.frozen:
            message = f"slot {env.pending} is installed and waits for a reboot (fwclient boot)"
            closed = self._closed_window()
            if closed is not None:
                return self._defer_window(closed, message, slot=env.pending)
            return UpdateResult(Outcome.PENDING_REBOOT, EventType.INSTALLED, message)
        if self.clock < self.at:
            self.log(
                EventType.CLOCK_SKEW,
                explain(
                    EventType.CLOCK_SKEW,
                    f"the clock reads {self.clock:%Y-%m-%d %H:%M:%S}Z, the latest trusted time"
                    f" is {self.at:%Y-%m-%d %H:%M:%S}Z; expiries are checked at the latter",
                ),
                clock=self.clock.isoformat(),
                time_floor=self.at.isoformat(),
            )
        self._refresh()
        choice = self._choose(recovery=recovery, archive=recovery)
        if not recovery and any(r.event is EventType.KNOWN_BAD for r in choice.refused):
            # A line lists only its current releases (discovery.py): one that failed
            # here may hide an older release that is right for this device.
            choice = self._choose(recovery=False, archive=True)
        if self.directive.unanswered is not None:
            self._log_unanswered(self.directive.unanswered)
        if self.directive.frozen:
            return self._frozen(choice, pending=env.pending)
        return self._report(choice, log_available=log_available)

    def _choose(self, *, recovery: bool, archive: bool) -> Choice:
        candidates = list(self._candidates(archive=archive))
        context = self._authorization_context()
        choice = choose(
            candidates,
            hardware_model=self.identity.hardware_model,
            floor=self.state.floor(),
            known_bad=set(self.state.known_bad()),
            running_sha256=self._running_sha256(),
            running_entry=self._running_entry(candidates),
            authorizations=context,
            selection=self.directive.selection,
            recovery=recovery,
        )
        self.authorization = choice.authorization
        self._handed_over_refusals(context, choice, candidates)
        return choice

    def _authorization_context(self) -> AuthorizationContext:
        """Policy rule 5's input: the keys the verified root trusts, the documents, the nonces."""
        root = discovery.read_top_level(self.state.metadata_dir, Root.type).signed
        try:
            trusted = AuthorizationKeys.from_root(root)
        except AuthorizationError:
            trusted = None  # a root ngclient accepted, but a field we cannot use: trust none
        return AuthorizationContext(
            trusted,
            self.identity.device_id,
            self.at,
            held=self.held,
            nonces=self.kept.records,
        )

    def _handed_over_refusals(
        self, context: AuthorizationContext, choice: Choice, candidates: Sequence[Candidate]
    ) -> None:
        """Log why each held document allows nothing, unless rule 5 already said it."""
        offered = {c.path: c.sha256 for c in candidates}
        named = {r.candidate.path for r in choice.refused}
        for document in self.held:
            if document == choice.authorization or document.authorization.target_path in named:
                continue
            verdict = context.refusal(document, offered)
            if verdict is None:
                continue
            event = AUTHORIZATION_EVENTS[verdict.problem]
            auth = document.authorization
            self.log(
                event,
                explain(event, f"{auth.target_path} for {auth.device_id}: {verdict.detail}"),
                target=auth.target_path,
                nonce=auth.nonce,
                technician=auth.technician,
            )

    def _running_record(self) -> SlotRecord | None:
        """What the running slot was verified as (None: no readable record)."""
        try:
            return self.state.slot_record(self.state.bootenv().active)
        except ClientError:
            return None

    def _running_sha256(self) -> str | None:
        """The SHA-256 the running slot was verified with (None: no readable record)."""
        record = self._running_record()
        return record.sha256 if record is not None else None

    def _running_entry(self, candidates: Sequence[Candidate]) -> RunningEntry | None:
        """Policy rule 7's lookup (R56, R57): the running slot's own path, as signed now.

        Only when no candidate has that path: a superseded release sits in
        its bin, a withdrawn one nowhere. ``get_targetinfo`` walks to the one
        role delegated for the path (a bin: one small download, then cached),
        so the answer is ngclient's, from signed metadata alone.
        """
        record = self._running_record()
        if record is None or any(c.path == record.target_path for c in candidates):
            return None
        path = record.target_path
        if self.updater.get_targetinfo(path) is None:
            return RunningEntry(path, None)
        roles, target = discovery.signing_roles(self.state.metadata_dir, path, at=self.metadata_at)
        return RunningEntry(path, _candidate(path, target, roles[-1].name))

    def _refresh(self) -> None:
        memory = self.remote.memory
        began, last = memory.clock(), memory.last
        network = self._network(memory, last)
        self._network_fetcher = network
        self._updater, expiries = refresh_metadata(
            self.remote,
            cache=self.state.metadata_dir,
            root=self.state.trusted_root.read_bytes(),
            at=self.at,
            state=self.state,
            network=network,
            reference=None if self.offline is None else self.metadata_at,
        )
        # After a skipped probe the age still counts from the last full refresh.
        if not network.skipped_root and network.timestamp is not None:
            memory.last = LastRefresh(
                network.timestamp,
                network.etag,
                network.absent_root,
                min(expiries.values()),
                began,
            )

    def _network(self, memory: PollMemory, last: LastRefresh | None) -> _SessionFetcher:
        """ngclient's network for this session: an idle poll asks timestamp.json first."""
        if last is None:
            return _SessionFetcher(self.remote)
        fetched = self.remote.fetcher.fetch_unless(
            self.remote.timestamp_url, last.etag, max_length=_CONFIG.timestamp_max_length
        )
        timestamp = last.timestamp if fetched.data is None else fetched.data
        skip = memory.skips_root_probe(last, timestamp, at=self.at)
        return _SessionFetcher(
            self.remote,
            timestamp=timestamp,
            etag=fetched.etag,
            known_absent=last.absent_root if skip else None,
        )

    def _candidates(self, *, archive: bool) -> Iterator[Candidate]:
        """Firmware for this model, each path once: from the first role (pre-order) listing it.

        That is the role ngclient's walk resolves the path to; with ``archive``
        a current release is met in the line's list before its bin.
        """
        prefix = f"{self.identity.hardware_model}/"
        cache = self.state.metadata_dir
        seen: set[str] = set()
        walk = discovery.walk(
            self.updater, cache, prefix=prefix, at=self.metadata_at, archive=archive
        )
        for role in walk:
            self.roles[role.name] = role
            for path, target in discovery.install_targets(role, prefix):
                candidate = _candidate(path, target, role.name)
                if candidate is not None and path not in seen:
                    seen.add(path)
                    yield candidate

    def _report(self, choice: Choice, *, log_available: bool) -> UpdateResult:
        """Log the choice; its result. ``log_available``: False when an install follows.

        Policy rule 6's integrity failures (R29) are logged after everything
        else, after the install too (``update``), so that ``status`` shows
        them as the last update result; with nothing chosen, they are it.
        """
        for refusal in choice.refused:
            if not self._already_awaiting(refusal):
                self._log_refusal(refusal)
        assignment = self._report_assignment(choice.assignment_refused)
        unlisted = self._report_unlisted(choice)
        self.contradicted = choice.contradicted
        chosen = choice.chosen
        if chosen is None and unlisted is not None:
            return UpdateResult(Outcome.REFUSED, EventType.RUNNING_NOT_LISTED, unlisted)
        if assignment is not None:
            self.log_contradicted()
            message = self._noting_contradicted(assignment)
            return UpdateResult(Outcome.REFUSED, EventType.ASSIGNMENT_REFUSED, message)
        if chosen is None and (choice.contradicted or choice.refused):
            self.log_contradicted()
            first = (*choice.contradicted, *choice.refused)[0]
            message = explain(first.event, first.describe())
            waiting = not choice.contradicted and all(r.event in _WAITING for r in choice.refused)
            return UpdateResult(
                Outcome.WAITING if waiting else Outcome.REFUSED, first.event, message
            )
        if chosen is None and (choice.unassigned or self.directive.unanswered is not None):
            return self._unassigned(choice)
        if chosen is None:
            running = self.state.floor().installed_version or "no recorded version"
            message = explain(
                EventType.NO_UPDATE,
                f"{self.identity.hardware_model} runs {running};"
                f" {choice.considered} signed release(s) looked at",
            )
            self.log(EventType.NO_UPDATE, message, considered=choice.considered)
            return UpdateResult(Outcome.UP_TO_DATE, EventType.NO_UPDATE, message)
        message = explain(
            EventType.CHECKED,
            f"{chosen.path} version {chosen.info.version}"
            f" (security version {chosen.info.security_version})",
        )
        if log_available:
            self.log(EventType.CHECKED, message, target=chosen.path, version=chosen.info.version)
            self.log_contradicted()
        return UpdateResult(
            Outcome.AVAILABLE, EventType.CHECKED, self._noting_contradicted(message), chosen
        )

    def _report_assignment(self, refusal: AssignmentRefusal | None) -> str | None:
        """Policy rule 8: log the refused assignment with its reason; its message."""
        if refusal is None:
            return None
        message = explain(EventType.ASSIGNMENT_REFUSED, refusal.describe())
        assignment = refusal.assignment
        signed = refusal.candidate
        self.log(
            EventType.ASSIGNMENT_REFUSED,
            message,
            deployment=assignment.deployment,
            target=assignment.target_path,
            sha256=assignment.sha256,
            version=assignment.version,
            reason=refusal.reason,
            **({} if signed is None else {"signed_version": signed.info.version}),
        )
        return message

    def _unassigned(self, choice: Choice) -> UpdateResult:
        """Policy rule 8 with nothing assigned: ``no_assignment``, or the unanswered poll (P3)."""
        running = self.state.floor().installed_version or "no recorded version"
        if self.directive.unanswered is not None:
            message = explain(EventType.POLL_UNANSWERED, self.directive.unanswered)
            return UpdateResult(Outcome.FAILED, EventType.POLL_UNANSWERED, message)
        message = explain(
            EventType.NO_ASSIGNMENT,
            f"{self.identity.hardware_model} runs {running};"
            f" {choice.considered} signed release(s) looked at",
        )
        self.log(EventType.NO_ASSIGNMENT, message, considered=choice.considered)
        return UpdateResult(Outcome.UP_TO_DATE, EventType.NO_ASSIGNMENT, message)

    def _log_unanswered(self, reason: str) -> None:
        """P3 of ``client.directive``: why this poll follows no answer of the server."""
        self.log(EventType.POLL_UNANSWERED, explain(EventType.POLL_UNANSWERED, reason))

    def _frozen(self, choice: Choice, *, pending: str | None) -> UpdateResult:
        """P5: log rules 6 and 7 (facts about what runs), ``server_frozen``; install nothing."""
        unlisted = self._report_unlisted(choice)
        self.contradicted = choice.contradicted
        self.log_contradicted()
        held = choice.chosen
        notes = [] if held is None else [f"{held.path} version {held.info.version} is held back"]
        if pending is not None:
            notes.append(f"slot {pending} stays pending until the device reboots")
        detail = "; ".join(notes) or "nothing to hold back"
        message = explain(EventType.SERVER_FROZEN, detail)
        self.log(
            EventType.SERVER_FROZEN,
            message,
            **({} if held is None else {"target": held.path, "version": held.info.version}),
            **({} if pending is None else {"pending": pending}),
        )
        if unlisted is not None:
            return UpdateResult(Outcome.REFUSED, EventType.RUNNING_NOT_LISTED, unlisted)
        return UpdateResult(Outcome.FROZEN, EventType.SERVER_FROZEN, message)

    def _closed_window(self) -> Window | None:
        """P6 of ``client.directive``: the window, if the session's own time is outside it."""
        window = self.directive.window
        return None if window is None or window.is_open(self.at) else window

    def _defer_window(
        self, window: Window, what: str, *, slot: str, chosen: Candidate | None = None
    ) -> UpdateResult:
        """P6: log ``deferred_window`` for ``slot`` (sealed, or pending); the result."""
        message = explain(
            EventType.DEFERRED_WINDOW,
            f"{what}; the maintenance window is {window.describe()}, the device's time is"
            f" {self.at.isoformat()}",
        )
        assignment = self.directive.selection.assignment
        self.log(
            EventType.DEFERRED_WINDOW,
            message,
            slot=slot,
            opens=window.opens.isoformat(),
            closes=window.closes.isoformat(),
            **({} if chosen is None else {"target": chosen.path, "version": chosen.info.version}),
            **({} if assignment is None else {"deployment": assignment.deployment}),
        )
        message = self._noting_contradicted(message)
        return UpdateResult(Outcome.DEFERRED, EventType.DEFERRED_WINDOW, message, chosen)

    def _already_awaiting(self, refusal: Refusal) -> bool:
        """``awaiting_authorization`` is logged once per release, not at every poll."""
        if refusal.event is not EventType.AWAITING_AUTHORIZATION:
            return False
        last = self.state.events.last(*_AUTHORIZATION_STEPS)
        return (
            last is not None
            and last.get("type") == EventType.AWAITING_AUTHORIZATION.value
            and last.get("detail", {}).get("target") == refusal.candidate.path
        )

    def _log_refusal(self, refusal: Refusal) -> None:
        self.log(
            refusal.event,
            explain(refusal.event, refusal.describe()),
            target=refusal.candidate.path,
            version=refusal.candidate.info.version,
            security_version=refusal.candidate.info.security_version,
        )

    def log_contradicted(self) -> None:
        """Log policy rule 6's integrity failures (R29): reported whatever is installed."""
        for refusal in self.contradicted:
            self._log_refusal(refusal)

    def _noting_contradicted(self, message: str) -> str:
        """``message``, then each rule 6 integrity failure, so the person running it reads them."""
        notes = (
            f"; {refusal.event}: {explain(refusal.event, refusal.describe())}"
            for refusal in self.contradicted
        )
        return message + "".join(notes)

    def _report_unlisted(self, choice: Choice) -> str | None:
        """Log policy rule 7 (the running release not in the signed set); its message."""
        if not choice.unlisted:
            return None
        running = self.state.floor().installed_version
        model, considered = self.identity.hardware_model, choice.considered
        if choice.withdrawn is None:
            detail = (
                f"{model} runs {running}; none of the {considered} signed release(s) for it"
                " is that version or a newer one this device takes"
            )
        else:
            detail = (
                f"{model} runs {running}, and the verified metadata does not sign its target"
                f" {choice.withdrawn} (any more); {considered} signed release(s) looked at"
            )
        message = explain(EventType.RUNNING_NOT_LISTED, detail)
        where = {} if choice.withdrawn is None else {"target": choice.withdrawn}
        self.log(
            EventType.RUNNING_NOT_LISTED,
            message,
            running=running,
            considered=considered,
            **where,
        )
        return message

    # -- installing ----------------------------------------------------------

    def install(
        self,
        chosen: Candidate,
        *,
        recovery: bool,
        tries: int,
        should_stop: Callable[[], bool],
        guard: Guard,
    ) -> UpdateResult:
        target, evidence = self._confirm(chosen)
        document = self.authorization
        if document is not None:  # N1: bound before any byte is written
            store = authorization_store.accept(self.state, document, at=self.at, store=self.kept)
        ref = TargetRef(chosen.path, chosen.length, chosen.sha256)
        transfer = self._carry_by_delta(  # issue 13: chosen first
            chosen, recovery=recovery, should_stop=should_stop
        )
        with open_inactive(self.state, ref, recovery=recovery) as writer:
            fetched = ref.length - writer.offset
            download_into(
                writer,
                fetcher=self.remote.fetcher,
                url=self._target_url(target),
                should_stop=should_stop,
            )
            record = SlotRecord(
                target_path=chosen.path,
                length=chosen.length,
                sha256=chosen.sha256,
                version=chosen.info.version,
                security_version=chosen.info.security_version,
                role=chosen.role,
                verified_at=self.at.isoformat(),
            )
            writer.seal(record=record, evidence=evidence)
            closed = self._closed_window()  # P6: scheduling first, then the device's guard
            if closed is not None:
                what = f"{chosen.path} version {chosen.info.version} verified in slot {writer.slot}"
                return self._defer_window(closed, what, slot=writer.slot, chosen=chosen)
            # R52: the last step before activation; nothing is pending until it says idle.
            decision = guard.decide(
                Activation.INSTALL, version=chosen.info.version, recovery=recovery
            )
            if not decision.proceed:
                return self._defer(chosen, writer.slot, decision)
            if document is not None:  # N2: spent before the install is activated (fail closed)
                nonce = document.authorization.nonce
                authorization_store.mark_used(self.state, nonce, at=self.at, store=store)
            if self.offline is not None:
                self._note_offline(chosen)
            # Logs "installed" once the slot is pending.
            writer.mark_pending(
                record=record,
                tries=tries,
                now=self.at,
                ready_check=decision.detail,
                transfer=transfer.detail(fetched=fetched),
            )
        message = explain(
            EventType.INSTALLED,
            f"{chosen.path} version {chosen.info.version} in slot {writer.slot}"
            f" ({transfer.describe(fetched=fetched)}); it runs after the next boot"
            " (fwclient boot)",
        )
        message = self._noting_contradicted(message)
        return UpdateResult(Outcome.INSTALLED, EventType.INSTALLED, message, chosen)

    def _carry_by_delta(
        self, chosen: Candidate, *, recovery: bool, should_stop: Callable[[], bool]
    ) -> delta.Transfer:
        """Issue 13: the chosen release's bytes carried by a delta when one fits.

        The release is already chosen, confirmed and authorized on its full
        image; a delta only fills the inactive slot with its bytes (rules in
        ``client.delta``). Any delta failure is logged ``delta_failed`` and
        the full image's download follows in this session. An offline
        session takes the full image its bundle carries: removable media
        saves nothing by a delta, and a bundle holds none. A stop request
        stops the delta's download as it stops the full image's
        (``DownloadStoppedError``, logged as the full download's stop is): it
        is no delta failure, and no full download follows.
        """
        if self.offline is not None:
            return delta.Transfer()
        try:
            return delta.by_delta(
                self.state,
                self.updater,
                chosen,
                running=self._running_record(),
                at=self.metadata_at,
                download=self._download_target,
                recovery=recovery,
                should_stop=should_stop,
            )
        except delta.DeltaFailedError as exc:
            self.log(
                EventType.DELTA_FAILED,
                explain(EventType.DELTA_FAILED, str(exc)),
                target=chosen.path,
                delta=exc.path,
                reason=str(exc),
            )
            return delta.Transfer(downloaded=exc.downloaded)

    def _download_target(
        self, target: TargetFile, file: Path, should_stop: Callable[[], bool]
    ) -> None:
        """ngclient's download of a (small) target to ``file``: length and hashes checked.

        Stopped after the chunk in hand once ``should_stop()``, as the full
        image's download is (``DownloadStoppedError``).
        """
        network = self._network_fetcher
        if network is None:
            raise RuntimeError("no metadata refresh in this session yet")
        with network.stopping(should_stop):
            self.updater.download_target(target, str(file))

    def _note_offline(self, chosen: Candidate) -> None:
        """O8, O6 of ``client.offline``: log the offline install, raise the floor to T."""
        offline = self.offline
        if offline is None:
            return
        reference = self.metadata_at
        self.log(
            EventType.OFFLINE_INSTALL,
            f"{chosen.path} version {chosen.info.version} installed from a bundle, with no"
            f" network; its metadata was checked at {reference.isoformat()}",
            target=chosen.path,
            version=chosen.info.version,
            reference_time=reference.isoformat(),
            max_age_seconds=int(offline.max_age.total_seconds()),
            **dict(offline.source),
        )
        self.state.raise_time_floor(reference)

    def _defer(self, chosen: Candidate, slot: str, decision: Decision) -> UpdateResult:
        """R52: log ``deferred_in_use`` for the sealed, not pending ``slot``; its result."""
        message = explain(
            EventType.DEFERRED_IN_USE,
            f"{chosen.path} version {chosen.info.version} verified in slot {slot},"
            f" not activated: {decision.detail}",
        )
        self.log(
            EventType.DEFERRED_IN_USE,
            message,
            slot=slot,
            target=chosen.path,
            version=chosen.info.version,
            activation=Activation.INSTALL.value,
        )
        message = self._noting_contradicted(message)
        return UpdateResult(Outcome.DEFERRED, EventType.DEFERRED_IN_USE, message, chosen)

    def _confirm(self, chosen: Candidate) -> tuple[TargetFile, dict[str, bytes]]:
        """ngclient's own answer for the chosen path, and the evidence for it.

        The target ngclient resolves must be the one chosen, signed by the
        same role; the evidence is the signed metadata it was verified with,
        byte for byte: each root version after the provisioned one (ngclient
        keeps every root it verified in ``root_history/``), the top-level
        targets and every delegated role the walk visits down to the signer.
        """
        found = self.updater.get_targetinfo(chosen.path)
        cache = self.state.metadata_dir
        roles, target = discovery.signing_roles(cache, chosen.path, at=self.metadata_at)
        listed = self.roles[chosen.role].signed.targets.get(chosen.path)
        if found is None or found != target or roles[-1].name != chosen.role or target != listed:
            raise UpdateRefusedError(
                f"{chosen.path}: the delegation walk resolves it to another role's entry;"
                " refusing an ambiguous target"
            )
        provisioned = Metadata[Root].from_bytes(self.state.trusted_root.read_bytes())
        trusted = discovery.read_top_level(cache, Root.type).signed.version
        evidence = {
            root_file_name(version): (cache / "root_history" / f"{version}.root.json").read_bytes()
            for version in range(provisioned.signed.version + 1, trusted + 1)
        }
        evidence.update({role_file_name(role.name): role.data for role in roles})
        return target, evidence

    def _target_url(self, target: TargetFile) -> str:
        root = discovery.read_top_level(self.state.metadata_dir, Root.type).signed
        return target_url(self.remote, target, consistent_snapshot=root.consistent_snapshot)


class _SessionFetcher(FetcherInterface):
    """ngclient's network for one session, over the remote's fetcher.

    ``timestamp.json`` is fetched once per session, with its ETag, or handed
    in already fetched by the idle poll's conditional request. A root
    version the server answers "not found" is noted (``absent_root``), and
    ``known_absent``, when the idle poll allows it, is answered "not found"
    from memory, as the server answered it at the last full refresh.
    """

    def __init__(
        self,
        remote: Remote,
        *,
        timestamp: bytes | None = None,
        etag: str | None = None,
        known_absent: str | None = None,
    ) -> None:
        self._remote = remote
        self._known_absent = known_absent
        self.timestamp = timestamp
        self.etag = etag
        self.absent_root: str | None = None
        self.skipped_root = False
        self._should_stop: Callable[[], bool] = _never

    @contextmanager
    def stopping(self, should_stop: Callable[[], bool]) -> Iterator[None]:
        """Within the block, a target's download stops once ``should_stop()``."""
        self._should_stop = should_stop
        try:
            yield
        finally:
            self._should_stop = _never

    def _fetch(self, url: str) -> Iterator[bytes]:
        # Only ngclient's download_target reads through here (metadata: download_bytes).
        return _until_stopped(self._remote.fetcher.fetch(url), self._should_stop, url=url)

    def download_bytes(self, url: str, max_length: int) -> bytes:
        fetcher = self._remote.fetcher
        if url == self._remote.timestamp_url:
            if self.timestamp is None:
                fetched = fetcher.fetch_unless(url, None, max_length=max_length)
                self.timestamp, self.etag = fetched.data or b"", fetched.etag
            return self.timestamp
        if url == self._known_absent:
            self.absent_root, self.skipped_root = url, True
            raise tuf_errors.DownloadHTTPError(f"{url}: not found at the last full refresh", 404)
        try:
            return fetcher.download_bytes(url, max_length)
        except tuf_errors.DownloadHTTPError as exc:
            if exc.status_code in {403, 404} and url.endswith(".root.json"):
                self.absent_root = url  # ngclient's sign that no newer root exists
            raise


def _never() -> bool:
    return False


def _until_stopped(
    chunks: Iterator[bytes], should_stop: Callable[[], bool], *, url: str
) -> Iterator[bytes]:
    """``chunks``, cut off by ``DownloadStoppedError`` after the one in hand once asked."""
    received = 0
    try:
        for chunk in chunks:
            yield chunk
            received += len(chunk)
            if should_stop():
                raise DownloadStoppedError(f"stopped after {received} bytes of {url}")
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # now, not when collected: the connection closes with it


def _candidate(path: str, target: TargetFile, role: str) -> Candidate | None:
    """A firmware candidate, or ``None`` for a file that is not firmware (an SBOM)."""
    if not target.custom:
        return None
    if not _SHA256.match(target.hashes.get("sha256", "")):
        logger.warning("ignoring %s: no SHA-256 in its signed hashes", path)
        return None
    try:
        info = FirmwareInfo.from_target(target)
    except InvalidFieldError as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return None
    return Candidate(path, target.length, target.hashes["sha256"], info, role)
