"""Reading a repository: ``status`` and ``verify``.

``status`` tells a release engineer, role by role, what still blocks
publication: missing signatures, expiry (a warning under 30 days), and
roles rewound behind the version this repository signed and keeps. ``verify`` checks the whole
repository as a device would: the root chain from the first (or a pinned)
root, then targets, then every delegation down to each hashed bin, each step
by ``repo_metadata.verify``; with a targets directory, each firmware file's
length and hashes too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.exceptions import LengthOrHashMismatchError
from tuf.api.metadata import Metadata, Root, Targets, VerificationResult

from repo_metadata.errors import InvalidMetadataError, RepositoryError, UpdateRejectedError
from repo_metadata.paths import local_target_file
from repo_metadata.repository_check import Completeness, check_repository
from repo_metadata.validation import load_metadata
from repo_metadata.verify import verify_root_chain, verify_update
from signer import layout
from signer.errors import SignerError
from signer.repository import OfflineRepository

EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class RoleStatus:
    """One role as ``fwsign status`` shows it."""

    role: str
    version: int
    expires: datetime
    signed: int
    threshold: int
    keys: int
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.problems


def status(repo: OfflineRepository) -> list[RoleStatus]:
    """Every role's version, expiry, signatures and blockers."""
    return [_role_status(repo, role) for role in repo.role_names()]


def _role_status(repo: OfflineRepository, role: str) -> RoleStatus:
    signed = repo.open(role).signed
    problems, warnings = [], []
    parts = repo.signature_status(role)
    for who, part in parts:
        if part.missing:
            waiting = ", ".join(sorted(k[:12] for k in part.unsigned)) or "no key listed"
            problems.append(
                f"{missing_signatures(role, who, part)}; keys not yet signed: {waiting}"
            )
    kept = repo.rewound_from(role)
    if kept is not None:
        problems.append(
            f"rewound: this repository signed v{kept} and keeps it"
            f" ({layout.versioned_role_file(repo.path, role, kept).name}); restore it before"
            " signing or publishing (TUF rollback)"
        )
    left = signed.expires - repo.now
    if left <= timedelta(0):
        problems.append(f"expired on {signed.expires:%Y-%m-%d}; edit and re-sign it")
    elif left < EXPIRY_WARNING:
        warnings.append(f"expires in {left.days} day(s), on {signed.expires:%Y-%m-%d}")
    worst = max((part for _who, part in parts), key=lambda part: part.missing)
    return RoleStatus(
        role=role,
        version=signed.version,
        expires=signed.expires,
        signed=len(worst.signed),
        threshold=worst.threshold,
        keys=len(worst.signed) + len(worst.unsigned),
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def missing_signatures(role: str, who: str, part: VerificationResult) -> str:
    """``needs 1 more signature(s) (threshold 2 of its delegation in targets)``.

    ``who`` is the part's name as ``OfflineRepository.signature_status``
    gives it: the delegating role whose entry sets the threshold, or for
    root itself "root", "previous root" or "new root".
    """
    if role == Root.type:
        source = "root" if who == Root.type else f"the {who}"
    else:
        source = f"its delegation in {who}"
    return f"needs {part.missing} more signature(s) (threshold {part.threshold} of {source})"


@dataclass
class VerifyReport:
    """What ``verify`` checked and what failed, role by role."""

    checked: list[str] = field(default_factory=list)
    targets: int = 0
    files: int = 0
    #: Target paths with no file under the targets directory (not checked).
    not_found: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_repository(
    path: Path,
    *,
    now: datetime,
    pinned_root: Path | None = None,
    targets_dir: Path | None = None,
) -> VerifyReport:
    """Check ``path`` from the root chain down, as a device would."""
    report = VerifyReport()
    try:
        root = _verify_roots(path, pinned_root, now)
    except (RepositoryError, SignerError) as exc:
        report.failures.append(f"root: {exc}")
        return report
    report.checked.append("root")
    roles: dict[str, Metadata[Any]] = {Root.type: root}
    for role, metadata in _walk_targets(path, root.signed, now, report):
        report.checked.append(role)
        roles[role] = metadata
        if _has_bins(metadata.signed):  # a line's own targets are copies of bin entries
            continue
        report.targets += len(metadata.signed.targets)
        if targets_dir is not None:
            _verify_files(metadata.signed, targets_dir, report)
    _verify_whole(roles, report)
    if targets_dir is not None and report.targets and len(report.not_found) == report.targets:
        # Never "OK" having checked no file: the directory is wrong, or the layout.
        report.failures.append(
            f"--targets-dir {targets_dir}: none of the {report.targets} signed target(s) has a"
            f" file there (looked for {targets_dir}/<target path>, then"
            f" {targets_dir}/<its file name>, e.g. {report.not_found[0]})"
        )
    return report


#: What to do about a whole-repository rule ``fwsign verify`` reports, by rule id.
_FIXES = {
    "delegation-cycle": (
        "remove one of these delegations (edit the delegating role and sign it again)"
    ),
    "delegated-twice": "keep one delegation of the role and remove the other, then sign again",
    "succinct-too-large": "delegate the product line again with fewer bins (--bin-bits)",
    "current-release-copy": (
        "the product line's list was edited outside fwsign: restore it as fwsign signed it"
        " (its kept N.<role>.json); change releases only with 'fwsign add' and"
        " 'fwsign revoke-release', which keep the list and its bins in step"
    ),
    "current-release-missing": (
        "the product line's list was edited outside fwsign: restore it as fwsign signed it"
        " (its kept N.<role>.json); change releases only with 'fwsign add' and"
        " 'fwsign revoke-release', which keep the list and its bins in step"
    ),
    "delegation-broken": "sign the role again with the keys its delegator now lists",
    "delta-release": (
        "make deltas only with 'fwsign add --delta-from', from the signed build of an"
        " earlier release; withdraw a release with 'fwsign revoke-release', which takes its"
        " deltas with it"
    ),
}


def _verify_whole(roles: dict[str, Metadata[Any]], report: VerifyReport) -> None:
    """The whole-repository rules, by the check the server runs (``repository_check``).

    The repository is checked as the change that makes it from nothing:
    every verified role is in it, and each product line's list must be
    exactly the current releases of its bins (``Completeness.WHOLE``).
    """
    try:
        check_repository(roles, before=_nothing, after=roles.get, completeness=Completeness.WHOLE)
    except (UpdateRejectedError, InvalidMetadataError) as exc:
        message = str(exc).removesuffix(f" [rule: {exc.rule}]")
        fix = _FIXES.get(exc.rule)
        report.failures.append(
            f"repository: {message}{f'; {fix}' if fix else ''} [rule: {exc.rule}]"
        )


def _nothing(_role: str) -> Metadata[Any] | None:
    """Nothing is trusted before: ``verify`` checks the whole repository at once."""
    return None


def _has_bins(signed: Targets) -> bool:
    return signed.delegations is not None and signed.delegations.succinct_roles is not None


def _verify_roots(path: Path, pinned_root: Path | None, now: datetime) -> Metadata[Root]:
    trusted: Metadata[Root] | None = None
    first = 1
    if pinned_root is not None:
        trusted = _load_root(pinned_root.read_bytes())
        first = trusted.signed.version + 1
    chain = []
    version = first
    while (file := layout.root_version_file(path, version)).is_file():
        chain.append(file.read_bytes())
        version += 1
    if trusted is None and not chain:
        raise SignerError(f"no {layout.root_version_file(path, 1).name} in {path}")
    return verify_root_chain(chain, trusted=trusted, now=now)


def _load_root(data: bytes) -> Metadata[Root]:
    # A pinned root is trusted as given, like a device's provisioned root.
    metadata = load_metadata(data, expected_type=Root.type)
    if not isinstance(metadata.signed, Root):
        raise SignerError("the pinned root is not root metadata")
    return metadata


def _walk_targets(
    path: Path, root: Root, now: datetime, report: VerifyReport
) -> Iterator[tuple[str, Metadata[Any]]]:
    """Yield each verified targets role, walking delegations breadth first."""
    queue: list[tuple[str, Root | Targets, tuple[tuple[str, ...], ...]]] = [("targets", root, ())]
    seen: set[str] = set()
    while queue:
        role, delegator, ancestors = queue.pop(0)
        if role in seen:
            report.failures.append(f"{role}: delegated more than once")
            continue
        seen.add(role)
        file = layout.role_file(path, role)
        if not file.is_file():
            report.failures.append(f"{role}: delegated but {file.name} is missing")
            continue
        try:
            metadata = verify_update(
                file.read_bytes(),
                role=role,
                trusted=None,
                delegator=delegator,
                now=now,
                ancestor_patterns=ancestors,
            )
        except RepositoryError as exc:
            report.failures.append(f"{role}: {exc}")
            continue
        yield role, metadata
        queue.extend(_children(metadata.signed, ancestors))


def _children(
    signed: Targets, ancestors: tuple[tuple[str, ...], ...]
) -> Iterator[tuple[str, Targets, tuple[tuple[str, ...], ...]]]:
    delegations = signed.delegations
    if delegations is None:
        return
    if delegations.succinct_roles is not None:
        for name in delegations.succinct_roles.get_roles():
            yield name, signed, ancestors
    for child in (delegations.roles or {}).values():
        yield child.name, signed, (*ancestors, tuple(child.paths or ()))


def _verify_files(signed: Targets, targets_dir: Path, report: VerifyReport) -> None:
    for target_path, target in signed.targets.items():
        file = local_target_file(targets_dir, target_path)
        if file is None:
            report.not_found.append(target_path)
            continue
        with file.open("rb") as handle:
            try:
                target.verify_length_and_hashes(handle)
            except LengthOrHashMismatchError as exc:
                report.failures.append(
                    f"{target_path}: file does not match its signed target: {exc}"
                )
                continue
        report.files += 1
