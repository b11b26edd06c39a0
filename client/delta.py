"""Delta updates: another way to carry the bytes of the release already chosen (issue 13).

A delta never changes what is installed, only how its bytes travel. The
install policy chooses the release on its full image first (hardware model,
floors, R9 authorization, the directive), the clinical-use guard (R52) is
asked as for any install, and the image sealed into the slot is checked
against the full image's signed length and SHA-256, whichever way it came.
The rules:

- X1 Which delta (``choose``, pure): the target ``<release path>.from-<running
  version>.bsdiff`` as ngclient resolves it (``lookup``: signed, verified,
  through the delegations), used only when its signed ``delta`` field names
  the chosen release as its ``image`` and, as its base, exactly the firmware
  the running slot was verified as (its record's target path, SHA-256 and
  length), in format bsdiff4; when the role that signs the release is on its
  delegation path (the release's role, or a bin that role delegates to: the
  same signers' say); and when it is smaller than the full image. Anything
  else is not a failure, only no delta: the full image is downloaded and
  nothing is logged for it. An offline session (a bundle) looks for none:
  the bundle carries the full image (``client.update``).
- X2 Carried into the inactive slot (``carry``): only when the slot starts
  from zero. A slot holding part of the same image (a resumed download) or all
  of it (sealed, deferred by R52 or a power cut) goes on with the full
  image's usual path, which has less left to fetch: its bytes are kept as a
  resume (a checkpoint), and ``seal`` checks them again.
- X3 Before applying: ngclient downloads the delta as any target (its signed
  length and hashes, TUF 5.7.3), and the running slot's bytes are hashed
  again against the delta's ``base_sha256`` and ``base_length`` (R29: a base
  that decayed since it was verified is not patched). A stop request (the
  agent shutting down) stops the delta's download as it stops the full
  image's (``client.download``, after the chunk in hand): the stop passes
  through as ``DownloadStoppedError``, not as a delta failure; the slot,
  which holds none of the image yet, keeps its progress record at zero, the
  partial delta is removed, and the next session starts over.
- X4 The image is rebuilt by ``fwcommon.delta.apply_delta`` (bounded by the
  full image's signed length) through the slot writer, hashed on its way in
  and compared with the full image's signed length and SHA-256 (the binding
  hash, ADR 0002) before anything is made durable; only a match is
  checkpointed, at the image's full length. The install then opens the slot
  as usual, resumes at its end, and ``seal`` reads the slot back and checks it
  again before the slot may be marked pending.
- X5 Any failure of the delta (its lookup, download, hash, the base, the
  apply, the output) is ``DeltaFailedError``: the slot's bytes are discarded,
  the caller logs ``delta_failed`` with the reason and downloads the full
  image in the same session. What refuses the slot itself (failsafe mode, a
  slot pending, a known-bad firmware, no room) is the install's refusal and
  passes through unchanged, as for a full image.
- X6 Power cut while applying: applying writes no checkpoint, so the slot's
  progress record stays at offset zero and the slot has no record; the next
  session starts the slot over (by delta or in full), and the running slot is
  only ever read. The downloaded delta (``slot_<s>.delta`` beside the slots)
  is removed once applied or failed, and one a cut left behind by the next
  online session, before any slot is opened: left there, it would count
  against the storage free for the slot and refuse every later install
  (``insufficient_space``) on a device with room for one image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater

from client import discovery
from client.download import DownloadStoppedError
from client.errors import ClientError
from client.integrity import Digest, file_digest
from client.policy import Candidate
from client.slots import SlotWriter, TargetRef, open_inactive
from client.state import SlotRecord, StateDir
from fwcommon.delta import FORMAT, DeltaError, apply_delta
from repo_metadata.delta import DeltaInfo, delta_path
from repo_metadata.errors import InvalidFieldError

#: The downloaded delta, beside the slot it rebuilds (``slot_<s>.delta``), while it is applied.
SPOOL = ".delta"
#: What a download of the full image is called in the ``installed`` event.
FULL = "full"
#: ... and one carried by a delta.
DELTA = "delta"

#: ``download(target, file, should_stop)``: fetch a target through ngclient (its signed
#: length and hashes checked), raising ``DownloadStoppedError`` once ``should_stop()``.
Download = Callable[[TargetFile, Path, Callable[[], bool]], None]


class DeltaFailedError(Exception):
    """The delta at ``path`` could not carry the image (X5); ``str(e)`` is the reason."""

    def __init__(self, path: str, reason: str, *, downloaded: int = 0) -> None:
        super().__init__(reason)
        self.path = path
        #: Bytes of the delta fetched before it failed (counted in the install's total).
        self.downloaded = downloaded


@dataclass(frozen=True)
class Transfer:
    """How an install's bytes came: the ``installed`` event's detail."""

    #: The delta that carried the image (None: the full image was downloaded).
    delta: str | None = None
    #: Bytes fetched for delta attempts (a failed one counts too).
    downloaded: int = 0

    def detail(self, *, fetched: int) -> dict[str, object]:
        """The detail, ``fetched`` being what the full image's download fetched."""
        detail: dict[str, object] = {
            "transfer": FULL if self.delta is None else DELTA,
            "downloaded": self.downloaded + fetched,
        }
        if self.delta is not None:
            detail["delta"] = self.delta
        return detail

    def describe(self, *, fetched: int) -> str:
        """The same, in words for the person running the update."""
        total = f"{self.downloaded + fetched:,} bytes downloaded"
        return f"{total}, full image" if self.delta is None else f"{total}, by delta {self.delta}"


@dataclass(frozen=True)
class OfferedDelta:
    """A delta target as ngclient resolved it, and its delegation path.

    ``roles``: from ``targets`` down to the role that signs it, each one
    delegating the next; not the other roles ngclient's walk visited on the
    way (a non-terminating line, then a sibling role: X1).
    """

    target: TargetFile
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The delta chosen to carry ``release``'s bytes (X1)."""

    release: Candidate
    target: TargetFile
    info: DeltaInfo

    @property
    def path(self) -> str:
        return self.target.path

    @property
    def length(self) -> int:
        return self.target.length


def choose(
    offered: OfferedDelta | None, *, release: Candidate, running: SlotRecord | None
) -> Plan | None:
    """X1: the delta to carry ``release``, or None (download the full image)."""
    if offered is None or running is None or running.failed:
        return None
    try:
        info = DeltaInfo.from_target(offered.target)
    except InvalidFieldError:
        return None
    base = (running.target_path, running.sha256, running.length)
    if (
        info.image != release.path
        or (info.base, info.base_sha256, info.base_length) != base
        or info.format != FORMAT
        or release.role not in offered.roles
        or not 0 < offered.target.length < release.length
    ):
        return None
    return Plan(release, offered.target, info)


def by_delta(
    state: StateDir,
    updater: Updater,
    release: Candidate,
    *,
    running: SlotRecord | None,
    at: datetime,
    download: Download,
    recovery: bool,
    should_stop: Callable[[], bool],
) -> Transfer:
    """Carry the chosen ``release`` into the inactive slot by delta when one fits (X1 to X4).

    ``running`` is the running slot's record; ``download`` fetches a target
    through ngclient (its length and hashes checked), stopping once
    ``should_stop()`` (X3). The answer says how the slot was filled: by a
    delta, or not at all (the full image's download follows). Raises
    ``DeltaFailedError`` (X5), ``DownloadStoppedError`` (X3) or the slot's
    own refusals (``ClientError``).
    """
    discard_leftovers(state)  # X6: before any slot is opened and its room counted
    if running is None:
        return Transfer()
    try:
        path = delta_path(release.path, running.version)
    except InvalidFieldError:
        return Transfer()  # a running version no delta can name (X1)
    offered = lookup(updater, state.metadata_dir, path, at=at)
    plan = choose(offered, release=release, running=running)
    if plan is None:
        return Transfer()
    downloaded = carry(state, plan, download=download, recovery=recovery, should_stop=should_stop)
    return Transfer() if downloaded is None else Transfer(plan.path, downloaded)


def discard_leftovers(state: StateDir) -> None:
    """X6: remove a delta file a power cut left beside the slots (none is in use now)."""
    for leftover in state.slots_dir.glob(f"slot_*{SPOOL}"):
        leftover.unlink()


def lookup(updater: Updater, cache: Path, path: str, *, at: datetime) -> OfferedDelta | None:
    """The delta target at ``path``, as ngclient resolves it now (None: none signed).

    Raises ``DeltaFailedError`` when the metadata on its way cannot be
    loaded or verified (a bin that fails): the full image does not need it.
    """
    try:
        target = updater.get_targetinfo(path)
        if target is None:
            return None
        visited, _found = discovery.signing_roles(cache, path, at=at)
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as exc:
        raise DeltaFailedError(path, f"looking up {path}: {exc}") from None
    return OfferedDelta(target, delegation_path(visited, path))


def delegation_path(visited: Sequence[discovery.SignedRole], path: str) -> tuple[str, ...]:
    """The roles from ``targets`` down to the one signing ``path`` (the last visited).

    ngclient's walk is pre-order and depth first: the role that delegated a
    visited role is the nearest one before it whose delegations name it for
    ``path``. A role visited on the way that led elsewhere is left out.
    """
    chain = [visited[-1]]
    for role in reversed(visited[:-1]):
        delegations = role.signed.delegations
        children = () if delegations is None else delegations.get_roles_for_target(path)
        if any(child == chain[-1].name for child, _terminating in children):
            chain.append(role)
    return tuple(role.name for role in reversed(chain))


def carry(
    state: StateDir,
    plan: Plan,
    *,
    download: Download,
    recovery: bool,
    should_stop: Callable[[], bool],
) -> int | None:
    """X2 to X4: rebuild ``plan``'s release in the inactive slot; the delta bytes downloaded.

    None when the slot already holds part or all of the image (X2: no delta
    tried). Raises ``DeltaFailedError`` (X5), the slot's bytes discarded, or
    the slot's own refusals (``ClientError``), before it changes; and
    ``DownloadStoppedError`` when asked to stop (X3), the slot left at zero.
    """
    release = plan.release
    ref = TargetRef(release.path, release.length, release.sha256)
    with open_inactive(state, ref, recovery=recovery) as writer:
        if writer.offset != 0:
            # X2: opening cleared a sealed slot's record; its bytes are kept for the
            # install that follows, as a resume from here (seal checks them again).
            writer.checkpoint()
            return None
        spool = state.slots_dir / f"slot_{writer.slot}{SPOOL}"
        try:
            _download(plan, spool, download, should_stop)
            _rebuild(state, plan, writer, spool)
        except DeltaFailedError:
            writer.abort()
            raise
        finally:
            spool.unlink(missing_ok=True)
        writer.checkpoint()  # X4: durable, at the full length, only once it matches
    return plan.length


def _download(plan: Plan, spool: Path, download: Download, should_stop: Callable[[], bool]) -> None:
    try:
        download(plan.target, spool, should_stop)
    except DownloadStoppedError:
        raise  # X3: a stop request, not a failure of the delta (no fallback, no delta_failed)
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as exc:
        raise DeltaFailedError(plan.path, f"downloading {plan.path}: {exc}") from None


def _rebuild(state: StateDir, plan: Plan, writer: SlotWriter, spool: Path) -> None:
    """X3, X4: check the base, apply the delta into ``writer``, compare with the release."""
    release, info = plan.release, plan.info
    base = state.slot_image(state.bootenv().active)
    try:
        if file_digest(base, limit=info.base_length) != Digest(info.base_length, info.base_sha256):
            reason = (  # R29: a base that decayed since it was verified is not patched
                f"the running slot no longer holds {info.base} as verified (its length or"
                " SHA-256 differs): not patching it"
            )
        else:
            sink = _HashingSink(writer)
            apply_delta(base, spool, cast(BinaryIO, sink), max_output=release.length)
            if sink.digest() == Digest(release.length, release.sha256):
                return
            reason = (
                f"{plan.path} rebuilds {sink.length} bytes that are not {release.path}"
                " as signed (their length or SHA-256 differs)"
            )
    except (DeltaError, ClientError, OSError) as exc:
        reason = f"{plan.path}: {exc}"
    raise DeltaFailedError(plan.path, reason, downloaded=plan.length)


class _HashingSink:
    """Where ``apply_delta`` writes: the slot writer (bounded by the signed length), hashed."""

    def __init__(self, writer: SlotWriter) -> None:
        self._writer = writer
        self._hasher = hashlib.sha256()
        self.length = 0

    def write(self, data: bytes) -> int:
        self._writer.write(data)  # past the signed length: too_long, slot cleared
        self._hasher.update(data)
        self.length += len(data)
        return len(data)

    def digest(self) -> Digest:
        return Digest(self.length, self._hasher.hexdigest())
