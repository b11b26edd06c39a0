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

Every outcome is one event in the device's log, with the event type and a
sentence a person can follow; failures return a result (they never raise
past ``check``/``update``), and the running firmware is never touched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, Root, TargetFile
from tuf.ngclient import Updater

from client import discovery
from client.download import download_into
from client.errors import ClientError, FailsafeError, UpdateRefusedError
from client.events import EventType
from client.evidence import role_file_name, root_file_name
from client.fetcher import ResumableFetcher
from client.policy import Candidate, Choice, choose
from client.slots import TargetRef, open_inactive
from client.state import Mode, SlotRecord, StateDir
from repo_metadata.errors import InvalidFieldError
from repo_metadata.firmware import FirmwareInfo

logger = logging.getLogger(__name__)

DEFAULT_TRIES = 3

#: What each event means, in words a technician can act on.
MEANING: Mapping[EventType, str] = {
    EventType.ROLLBACK_ATTACK: "the server offered metadata older than what this device"
    " already trusts (rollback or replay)",
    EventType.FREEZE_ATTACK: "the metadata offered has expired: the server may be frozen"
    " or replaying old files",
    EventType.MIX_AND_MATCH: "a metadata file is not the version or hash the repository's"
    " snapshot or timestamp lists (mix-and-match)",
    EventType.BAD_SIGNATURE: "metadata is not signed by enough of the keys trusted for its role",
    EventType.BAD_HASH: "the downloaded firmware does not match its signed hash",
    EventType.TOO_LONG: "the server sent more bytes than the signed length (endless data)",
    EventType.SLOW_RETRIEVAL: "the server sends too slowly (slow retrieval)",
    EventType.UNREACHABLE: "the update server could not be reached; the current firmware"
    " keeps running",
    EventType.FIRMWARE_DOWNGRADE: "a signed firmware is below this device's security floor",
    EventType.HARDWARE_MISMATCH: "a signed firmware is not for this hardware model",
    EventType.CLOCK_SKEW: "the system clock is behind the latest trusted time",
    EventType.KNOWN_BAD: "this firmware failed its health check here before",
    EventType.FAILSAFE_REFUSED: "the device is in failsafe mode: only a signed recovery may"
    " change it",
    EventType.INSTALLED: "a verified firmware is in the inactive slot, pending a reboot",
    EventType.NO_UPDATE: "no newer firmware for this device",
    EventType.CHECKED: "a newer firmware is available",
    EventType.ERROR: "the update could not proceed",
}

# ngclient's version errors that mean "this file is not the one listed"
# rather than "this file is older than the one trusted".
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_MISMATCH = re.compile(r"^Expected snapshot version \d+, got \d+|^Expected \S+ v\d+, got v\d+")


class Outcome(StrEnum):
    INSTALLED = "installed"
    AVAILABLE = "available"
    UP_TO_DATE = "up_to_date"
    PENDING_REBOOT = "pending_reboot"
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
class Remote:
    """Where the repository is, and the network to reach it with."""

    server: str
    fetcher: ResumableFetcher

    @property
    def metadata_url(self) -> str:
        return f"{self.server.rstrip('/')}/metadata/"

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
        mismatch = _MISMATCH.match(str(exc))
        return EventType.MIX_AND_MATCH if mismatch else EventType.ROLLBACK_ATTACK
    for kind, event in mapping:
        if isinstance(exc, kind):
            return event
    return EventType.ERROR


def explain(event: EventType, detail: str) -> str:
    meaning = MEANING.get(event, event.value.replace("_", " "))
    return f"{meaning}: {detail}" if detail else meaning


def check(state: StateDir, remote: Remote, *, recovery: bool = False) -> UpdateResult:
    """Refresh the metadata and say what would be installed; change no slot."""
    return _guarded(state, lambda session: session.check(recovery=recovery), remote)


def update(
    state: StateDir,
    remote: Remote,
    *,
    recovery: bool = False,
    tries: int = DEFAULT_TRIES,
    should_stop: Callable[[], bool] = lambda: False,
) -> UpdateResult:
    """Check, then download, verify and install the chosen firmware as pending."""

    def run(session: _Session) -> UpdateResult:
        result = session.check(recovery=recovery, log_available=False)
        if result.candidate is None or result.outcome is not Outcome.AVAILABLE:
            return result
        return session.install(
            result.candidate, recovery=recovery, tries=tries, should_stop=should_stop
        )

    return _guarded(state, run, remote)


def _guarded(
    state: StateDir, action: Callable[[_Session], UpdateResult], remote: Remote
) -> UpdateResult:
    state.require_provisioned()
    session = _Session(state, remote)
    try:
        return action(session)
    except (
        ClientError,
        tuf_errors.RepositoryError,
        tuf_errors.DownloadError,
        InvalidFieldError,
        OSError,
    ) as exc:
        event = classify(exc)
        message = explain(event, str(exc) or type(exc).__name__)
        session.log(event, message, error=type(exc).__name__)
        refused = event not in {EventType.UNREACHABLE, EventType.ERROR}
        return UpdateResult(Outcome.REFUSED if refused else Outcome.FAILED, event, message)


class _Session:
    """One refresh of the metadata, and what follows from it."""

    def __init__(self, state: StateDir, remote: Remote) -> None:
        self.state = state
        self.remote = remote
        self.identity = state.identity()
        clock = datetime.now(UTC)
        floor = state.time_floor()
        #: The device's trusted time: the clock, or the floor if the clock is behind it.
        self.at = clock if floor is None or clock >= floor else floor
        self.clock = clock
        self._updater: Updater | None = None
        self.roles: dict[str, discovery.SignedRole] = {}

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
        if env.pending is not None:
            message = f"slot {env.pending} is installed and waits for a reboot (fwclient boot)"
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
        choice = choose(
            self._candidates(),
            hardware_model=self.identity.hardware_model,
            floor=self.state.floor(),
            known_bad=set(self.state.known_bad()),
            recovery=recovery,
        )
        return self._report(choice, log_available=log_available)

    def _refresh(self) -> None:
        cache = self.state.metadata_dir
        cache.mkdir(parents=True, exist_ok=True)
        self._updater = Updater(
            metadata_dir=str(cache),
            metadata_base_url=self.remote.metadata_url,
            target_base_url=self.remote.targets_url,
            fetcher=self.remote.fetcher,
            bootstrap=self.state.trusted_root.read_bytes(),
        )
        self._updater.refresh()
        discovery.check_fresh(cache, self.at)
        self.state.raise_time_floor(self.at)

    def _candidates(self) -> Iterator[Candidate]:
        prefix = f"{self.identity.hardware_model}/"
        cache = self.state.metadata_dir
        for role in discovery.walk(self.updater, cache, prefix=prefix, at=self.at):
            self.roles[role.name] = role
            for path, target in role.signed.targets.items():
                candidate = _candidate(path, target, role.name)
                if path.startswith(prefix) and candidate is not None:
                    yield candidate

    def _report(self, choice: Choice, *, log_available: bool) -> UpdateResult:
        for refusal in choice.refused:
            self.log(
                refusal.event,
                explain(refusal.event, refusal.describe()),
                target=refusal.candidate.path,
                version=refusal.candidate.info.version,
                security_version=refusal.candidate.info.security_version,
            )
        chosen = choice.chosen
        if chosen is None and choice.refused:
            first = choice.refused[0]
            message = explain(first.event, first.describe())
            return UpdateResult(Outcome.REFUSED, first.event, message)
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
        return UpdateResult(Outcome.AVAILABLE, EventType.CHECKED, message, chosen)

    # -- installing ----------------------------------------------------------

    def install(
        self,
        chosen: Candidate,
        *,
        recovery: bool,
        tries: int,
        should_stop: Callable[[], bool],
    ) -> UpdateResult:
        target, evidence = self._confirm(chosen)
        ref = TargetRef(chosen.path, chosen.length, chosen.sha256)
        with open_inactive(self.state, ref, recovery=recovery) as writer:
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
            # Logs "installed" once the slot is pending.
            writer.commit(record=record, evidence=evidence, tries=tries, now=self.at)
        message = explain(
            EventType.INSTALLED,
            f"{chosen.path} version {chosen.info.version} in slot {writer.slot};"
            " it runs after the next boot (fwclient boot)",
        )
        return UpdateResult(Outcome.INSTALLED, EventType.INSTALLED, message, chosen)

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
        roles, target = discovery.signing_roles(cache, chosen.path, at=self.at)
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
        if not root.consistent_snapshot:
            return f"{self.remote.targets_url}{target.path}"
        # Consistent snapshots (TUF 5.7.3): the file is named by its hash.
        directory, slash, name = target.path.rpartition("/")
        return f"{self.remote.targets_url}{directory}{slash}{target.hashes['sha256']}.{name}"


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
