"""Which firmware to install: a pure decision over signed candidates.

Input is what TUF verified (each candidate's path, length, hash and signed
``FirmwareInfo``) and what the device knows about itself (hardware model,
security floor, installed version, firmware that already failed here). No
I/O, no clock. The rules, in the order they are applied to each candidate
newer than what runs:

1. R15: the target must list this device's hardware model (``hardware_mismatch``).
2. R25: its ``security_version`` must not be below the device's security floor
   (``firmware_downgrade``): a validly signed old build is still a downgrade.
3. Its ``min_installed_version`` must be met by the installed version (an
   unknown installed version meets none; ``prerequisite_missing``: the
   device waits for an intermediate release, nothing is wrong).
4. It must not have failed its health check on this device before
   (``known_bad``): no reinstall loop.
5. R9, R58: if it requires a technician's authorization, one of the
   documents held must allow exactly this install
   (``repo_metadata.authorization.check``: trusted key, this device, this
   path and SHA-256, a nonce not used, not expired at the trusted time).
   With none held it waits (``awaiting_authorization``); a held one that
   fails is refused by its own event type (replayed, expired, wrong device,
   wrong release, bad signature, untrusted key). The chosen candidate's
   document is returned with the choice, so the install binds it.

The newest (semantic-version order) candidate that passes is chosen.
Candidates not newer than the installed version are ignored without a word
(they are the normal state of a repository), and so are pre-releases unless
asked for. A refusal is reported only for a candidate newer than both the
installed version and the chosen one: that is the case a person must hear
about ("3.0.0 was offered and refused because ...").

A signed recovery (``recovery=True``, failsafe mode) may reinstall the
installed version; every other rule still holds.

The running release must be accounted for by the signed set:

6. R29: a candidate for this model with the running version but another
   SHA-256 than the running slot's (the same version, other bytes) is never
   chosen, and is always reported as ``integrity_failure``
   (``contradicted``), whatever else is chosen: the signed set contradicts
   what runs, and a person must hear of it. It freezes nothing else: each
   release is verified on its own, so a newer release that passes rules 1
   to 5 is still chosen (one signing mistake must not keep a fleet from a
   security fix). With nothing chosen, the integrity failure is the result.
7. R25: when the set holds neither the running version nor a newer release
   this device would take (for its model; a pre-release only when asked
   for), as after a replay of old metadata after a cache wipe or a
   withdrawn release, the choice says so (``unlisted``): never a silent
   "no update". A release the device would never install does not count as
   newer. R56, R57: candidates cannot tell a withdrawn release from a
   superseded one (a line in hashed bins lists only its current releases),
   so when the running slot's own target path is not among them, the
   caller looks that path up in the verified metadata (``RunningEntry``,
   ngclient's walk to the one role delegated for it) and hands the answer
   in. Signed there no more for this model with the running version, the
   running release is withdrawn: ``unlisted`` too (with ``withdrawn``, its
   path), even with newer releases signed, so a server that keeps a device
   on a withdrawn release by assigning it nothing cannot keep it quiet. A
   superseded release, still signed in its bin, is quiet; one signed there
   with other bytes than the running slot's is rule 6's.

A delta target (issue 13) is never a candidate: a ``Candidate`` carries the
``FirmwareInfo`` of a full image, which a delta's signed field is not
(``repo_metadata.delta`` DI1), so the client skips it as any target that is
not firmware; ``client.discovery.install_targets`` lists what a role offers
without its deltas. A delta only carries the chosen release's bytes; these
rules decide on the release alone.

Which candidates may be chosen at all is the server's selection
(``client.directive``), which the device never trusts further than this:

8. R13, issue 11: with an assignment, only the signed candidate with exactly
   the assigned path and SHA-256 may be chosen, and only if it is newer
   than what runs (a recovery: not older), not a pre-release unless asked
   for, and passes rules 1, 2 and 4 (``assignment_refused``, with the reason:
   ``not_signed`` (never signed for this model, or withdrawn),
   ``other_sha256``, ``not_newer``, ``prerelease``, ``integrity_failure``
   (rule 6), or the refusing rule's event); rules 3 and 5 wait as for any
   release. No other candidate is considered, so none is reported refused.
   An assignment of exactly what runs (its path signed with the running
   slot's SHA-256, among the candidates or found by rule 7's lookup: with
   hashed bins a superseded release is signed in its bin only) is up to
   date, not a refusal: a deployment keeps assigning its release to the
   devices that installed it.
   With "assigned" and no assignment, nothing is chosen (``unassigned``);
   with "newest", the newest that passes (above). Rules 6 and 7 are computed
   over the whole signed set whatever the selection, so a device running a
   withdrawn release reports it whatever the server says.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from client.directive import Assignment, Install, Selection
from client.events import EventType
from client.state import Floor
from repo_metadata.authorization import AuthorizationContext, Problem, SignedAuthorization
from repo_metadata.firmware import FirmwareInfo
from repo_metadata.semver import SemVer

#: Rule 5: the event each refused authorization is logged as.
AUTHORIZATION_EVENTS: dict[Problem, EventType] = {
    Problem.MALFORMED: EventType.AUTHORIZATION_MALFORMED,
    Problem.UNTRUSTED_KEY: EventType.AUTHORIZATION_UNTRUSTED_KEY,
    Problem.BAD_SIGNATURE: EventType.AUTHORIZATION_BAD_SIGNATURE,
    Problem.WRONG_DEVICE: EventType.AUTHORIZATION_WRONG_DEVICE,
    Problem.WRONG_RELEASE: EventType.AUTHORIZATION_WRONG_RELEASE,
    Problem.REPLAYED: EventType.AUTHORIZATION_REPLAYED,
    Problem.EXPIRED: EventType.AUTHORIZATION_EXPIRED,
}


@dataclass(frozen=True)
class Candidate:
    """One signed firmware target, as TUF verified it."""

    path: str
    length: int
    sha256: str
    info: FirmwareInfo
    #: The targets role that signs it (the evidence chain ends there).
    role: str

    @property
    def version(self) -> SemVer:
        return self.info.semver


@dataclass(frozen=True)
class RunningEntry:
    """Rule 7's lookup: what the verified metadata signs now at the running slot's own path."""

    path: str
    #: The firmware signed there now (None: nothing, or nothing that is firmware).
    signed: Candidate | None


@dataclass(frozen=True)
class Refusal:
    candidate: Candidate
    event: EventType
    reason: str

    def describe(self) -> str:
        return f"{self.candidate.path} (version {self.candidate.info.version}): {self.reason}"


@dataclass(frozen=True)
class Choice:
    """The decision: at most one target to install, and the refusals worth reporting."""

    chosen: Candidate | None
    refused: tuple[Refusal, ...] = ()
    #: How many signed candidates for this model were looked at.
    considered: int = 0
    #: Rule 7: the signed set holds neither the running version nor a newer one.
    unlisted: bool = False
    #: Rule 6 (R29): the running version signed with other bytes; never chosen.
    contradicted: tuple[Refusal, ...] = ()
    #: Rule 5: the technician's authorization that allows ``chosen`` (if it needs one).
    authorization: SignedAuthorization | None = None
    #: Rule 8: "assigned", and nothing is assigned.
    unassigned: bool = False
    #: Rule 8: the assignment refused, and why.
    assignment_refused: AssignmentRefusal | None = None
    #: Rule 7: the running slot's own path, which the verified metadata signs no more.
    withdrawn: str | None = None


@dataclass(frozen=True)
class AssignmentRefusal:
    """Rule 8: the server's assignment, refused by the device's own rules."""

    assignment: Assignment
    #: A short code (``not_signed``, ``other_sha256``, ...; or the refusing rule's event).
    reason: str
    #: What a person reads.
    detail: str
    #: The signed candidate at the assigned path (None: none is signed for this device).
    candidate: Candidate | None = None

    def describe(self) -> str:
        a = self.assignment
        why = f"deployment {a.deployment}"
        if a.deployment is None:  # client.directive P7
            why = "offered to leave a withdrawn release"
        return f"{a.target_path} ({why}, version {a.version}): {self.detail}"


def choose(
    candidates: Iterable[Candidate],
    *,
    hardware_model: str,
    floor: Floor,
    known_bad: Collection[str] = (),
    running_sha256: str | None,
    running_entry: RunningEntry | None,
    authorizations: AuthorizationContext,
    selection: Selection,
    recovery: bool = False,
    prereleases: bool = False,
) -> Choice:
    """The acceptable candidate the selection allows, why others were refused, rules 6 and 7.

    ``known_bad`` holds the SHA-256 of firmware that failed its health check
    on this device; ``running_sha256`` is the running slot's (None: unknown);
    ``running_entry`` rule 7's lookup of the running slot's path (None: not
    looked up, because a candidate has that path or the device has no
    record of it); ``authorizations`` what rule 5 decides from and
    ``selection`` what rule 8 does (all required: there is no default that
    would let a release through or keep a withdrawal quiet).
    """
    installed = SemVer.parse(floor.installed_version) if floor.installed_version else None
    newest_first = sorted(candidates, key=lambda c: (c.version, c.path), reverse=True)
    looked_up = _looked_up(running_entry, newest_first)
    contradicted = _other_bytes(
        [*newest_first, *looked_up], hardware_model, installed, running_sha256
    )
    withdrawn = _withdrawn(running_entry, hardware_model, installed)
    unlisted = installed is not None and (
        withdrawn is not None
        or not any(
            _accounts_for_running(c, hardware_model, installed, prereleases=prereleases)
            for c in newest_first
        )
    )
    excluded = {refusal.candidate.path for refusal in contradicted}
    considered = len(newest_first)
    base = Choice(None, (), considered, unlisted, contradicted, withdrawn=withdrawn)
    if selection.assignment is not None:
        return _assigned(
            selection.assignment,
            newest_first,
            looked_up,
            base,
            excluded=excluded,
            rules=_Rules(
                hardware_model, floor, installed, known_bad, authorizations, running_sha256
            ),
            recovery=recovery,
            prereleases=prereleases,
        )
    if selection.install is Install.ASSIGNED:
        return replace(base, unassigned=True)
    refused: list[Refusal] = []
    for candidate in newest_first:
        if candidate.path in excluded or not _worth_considering(
            candidate, installed, recovery=recovery, prereleases=prereleases
        ):
            continue
        refusal = _refusal(candidate, hardware_model, floor, installed, known_bad)
        document = None
        if refusal is None and candidate.info.requires_authorization:
            document, refusal = _authorized(candidate, authorizations)
        if refusal is None:
            return replace(base, chosen=candidate, refused=tuple(refused), authorization=document)
        refused.append(refusal)
    return replace(base, refused=tuple(refused))


@dataclass(frozen=True)
class _Rules:
    """What rules 1 to 5 decide from."""

    hardware_model: str
    floor: Floor
    installed: SemVer | None
    known_bad: Collection[str]
    authorizations: AuthorizationContext
    running_sha256: str | None


#: Rule 8: refusals of the assigned candidate that wait, as for any release (rules 3, 5).
_WAITS = frozenset({EventType.PREREQUISITE_MISSING, EventType.AWAITING_AUTHORIZATION})


def _assigned(
    assignment: Assignment,
    newest_first: list[Candidate],
    looked_up: tuple[Candidate, ...],
    base: Choice,
    *,
    excluded: Collection[str],
    rules: _Rules,
    recovery: bool,
    prereleases: bool,
) -> Choice:
    """Rule 8: the assigned candidate, if it is signed as assigned and passes the rules."""
    signed = next((c for c in newest_first if c.path == assignment.target_path), None)
    # Up to date: the running release, signed as assigned, found among the current
    # releases or by rule 7's lookup of the running path (a superseded release that
    # lives in its hashed bin only is no candidate, and is still what runs).
    running = signed or next((c for c in looked_up if c.path == assignment.target_path), None)
    if (
        running is not None
        and running.sha256 == assignment.sha256 == rules.running_sha256
        and not recovery
    ):
        return base  # it runs the assigned release already: up to date, nothing refused
    reason, detail = _assignment_problem(
        assignment, signed, excluded, rules.installed, recovery=recovery, prereleases=prereleases
    )
    if signed is None or reason is not None:
        refusal = AssignmentRefusal(assignment, reason or "not_signed", detail, signed)
        return replace(base, assignment_refused=refusal)
    refused = _refusal(signed, rules.hardware_model, rules.floor, rules.installed, rules.known_bad)
    document = None
    if refused is None and signed.info.requires_authorization:
        document, refused = _authorized(signed, rules.authorizations)
    if refused is None:
        return replace(base, chosen=signed, authorization=document)
    if refused.event in _WAITS or refused.event in AUTHORIZATION_EVENTS.values():
        return replace(base, refused=(refused,))
    refusal = AssignmentRefusal(assignment, refused.event.value, refused.reason, signed)
    return replace(base, assignment_refused=refusal)


def _assignment_problem(
    assignment: Assignment,
    signed: Candidate | None,
    excluded: Collection[str],
    installed: SemVer | None,
    *,
    recovery: bool,
    prereleases: bool,
) -> tuple[str | None, str]:
    """Rule 8's own checks of the assigned candidate: (reason, detail), or (None, "")."""
    if signed is None:
        return "not_signed", (
            "no target is signed for this device at that path (never signed, or withdrawn)"
        )
    if signed.sha256 != assignment.sha256:
        return "other_sha256", (
            f"signed with SHA-256 {signed.sha256}, the assignment names {assignment.sha256}"
        )
    if signed.path in excluded:
        return EventType.INTEGRITY_FAILURE.value, "the running version, signed with other bytes"
    if signed.version.prerelease and not prereleases:
        return "prerelease", f"version {signed.info.version} is a pre-release"
    if not _worth_considering(signed, installed, recovery=recovery, prereleases=True):
        return "not_newer", (
            f"signed version {signed.info.version} is not newer than the installed {installed}"
        )
    return None, ""


def _other_bytes(
    candidates: list[Candidate],
    hardware_model: str,
    installed: SemVer | None,
    running_sha256: str | None,
) -> tuple[Refusal, ...]:
    """Rule 6: candidates for this model signing the running version with other bytes."""
    if installed is None or running_sha256 is None:
        return ()
    return tuple(
        Refusal(
            candidate,
            EventType.INTEGRITY_FAILURE,
            f"signed with SHA-256 {candidate.sha256}, but the running slot holds"
            f" {running_sha256}: the same version, other bytes",
        )
        for candidate in candidates
        if candidate.version == installed
        and hardware_model in candidate.info.hardware_models
        and candidate.sha256 != running_sha256
    )


def _looked_up(entry: RunningEntry | None, candidates: list[Candidate]) -> tuple[Candidate, ...]:
    """Rule 6 over the lookup too: the running path's entry, unless a candidate already has it."""
    if entry is None or entry.signed is None:
        return ()
    return () if any(c.path == entry.path for c in candidates) else (entry.signed,)


def _withdrawn(
    entry: RunningEntry | None, hardware_model: str, installed: SemVer | None
) -> str | None:
    """Rule 7: the running path, if the lookup found it signed no more as the running release."""
    if entry is None or installed is None:
        return None
    signed = entry.signed
    if (
        signed is not None
        and hardware_model in signed.info.hardware_models
        and signed.version == installed
    ):
        return None  # still signed (with the running bytes, or other ones: rule 6)
    return entry.path


def _accounts_for_running(
    candidate: Candidate, hardware_model: str, installed: SemVer, *, prereleases: bool
) -> bool:
    """Rule 7: ``candidate`` lists the running version, or is newer and one this device takes."""
    if hardware_model not in candidate.info.hardware_models:
        return False
    if candidate.version == installed:
        return True
    return candidate.version > installed and (prereleases or not candidate.version.prerelease)


def _worth_considering(
    candidate: Candidate, installed: SemVer | None, *, recovery: bool, prereleases: bool
) -> bool:
    if candidate.version.prerelease and not prereleases:
        return False
    if installed is None:
        return True
    return candidate.version >= installed if recovery else candidate.version > installed


def _refusal(
    candidate: Candidate,
    hardware_model: str,
    floor: Floor,
    installed: SemVer | None,
    known_bad: Collection[str],
) -> Refusal | None:
    info = candidate.info
    if hardware_model not in info.hardware_models:
        models = ", ".join(info.hardware_models)
        return Refusal(
            candidate,
            EventType.HARDWARE_MISMATCH,
            f"signed for {models}, not for this device's model {hardware_model}",
        )
    if info.security_version < floor.security_version:
        return Refusal(
            candidate,
            EventType.FIRMWARE_DOWNGRADE,
            f"security version {info.security_version} is below this device's floor"
            f" {floor.security_version}",
        )
    if info.min_installed_version is not None and (
        installed is None or installed < SemVer.parse(info.min_installed_version)
    ):
        have = "an unknown version" if installed is None else str(installed)
        return Refusal(
            candidate,
            EventType.PREREQUISITE_MISSING,
            f"needs version {info.min_installed_version} or later installed first; this device"
            f" runs {have}",
        )
    if candidate.sha256 in known_bad:
        return Refusal(
            candidate, EventType.KNOWN_BAD, "failed its health check on this device before"
        )
    return None


def _authorized(
    candidate: Candidate, context: AuthorizationContext
) -> tuple[SignedAuthorization | None, Refusal | None]:
    """Rule 5: the document that allows ``candidate``, or why it may not be installed."""
    document, verdict = context.decide(candidate.path, candidate.sha256)
    if document is not None:
        return document, None
    if verdict is None:
        return None, Refusal(
            candidate,
            EventType.AWAITING_AUTHORIZATION,
            "requires a technician's authorization for this device; none is held yet",
        )
    return None, Refusal(
        candidate,
        AUTHORIZATION_EVENTS[verdict.problem],
        f"the technician's authorization is refused: {verdict.detail}",
    )
