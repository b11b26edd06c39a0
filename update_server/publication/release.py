"""Whether an uploaded release may replace the server's trusted state (R13, R49).

A release is a set of offline-signed roles: root, targets and delegated
roles (product lines, hashed bins). Each role is parsed once
(``UploadedRole``: its metadata and the bytes that will be published, kept
as bytes) and checked with ``repo_metadata.verify.verify_metadata`` in an
order where every delegator comes before what it delegates (root, then
targets, then delegations top-down), against:

- the trusted version of the role: the one published now;
- its delegator: the trusted one, or the one just verified in this release;
- the path patterns every level above the delegator grants (a client's walk).

Then the whole-repository rules, ``repo_metadata.repository_check`` (the
very check ``fwsign`` runs before it writes), for a release that must stand
on its own: ``delegation-cycle``, ``delegated-twice`` (the delegations still
form a tree), ``delegation-broken`` (a published role left out of the
release still meets the threshold of its changed delegator: a key rotation
must re-sign what it affects), ``current-release-copy`` and
``current-release-missing`` (a product line with hashed bins lists copies of
its current releases, covering what its bins gain or its list drops) and
``delta-release`` (a delta target it adds rebuilds a release the repository
holds, from a signed base it names exactly; issue 13). A delta's bytes are
uploaded and checked against its signed hashes like any target's.

Beyond these, rules of the server itself:

``role-name``, ``online-role``
    role names are safe file names; snapshot and timestamp are the server's.
``consistent-snapshot``, ``online-keys``
    a new root keeps consistent snapshots and names the server's own online
    keys, threshold 1: otherwise the server could not sign, and every device
    would stop updating when timestamp expires (a freeze by misconfiguration).
``target-hash``, ``target-too-large``, ``target-conflict``
    every new or changed target lists a SHA-256 (the server stores and
    checks bytes by it), only hash algorithms it can check, hex digests of
    the right size (they become file names), a length within the upload
    limit, and one content per path.

Pure apart from reading the published files through ``OnlineRepository``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from securesystemslib.signer import Key
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from repo_metadata.errors import InvalidFieldError, InvalidMetadataError, UpdateRejectedError
from repo_metadata.paths import check_role_name, check_target_path
from repo_metadata.repository_check import Completeness, check_repository
from repo_metadata.validation import load_metadata, metadata_from_tree, parse_json_strict
from repo_metadata.verify import role_type, verify_metadata
from update_server.publication.errors import RejectedError
from update_server.publication.repository import OnlineRepository

#: Hash algorithms the server can check while streaming, and their hex size.
HASH_SIZES = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX = re.compile(r"^[0-9a-f]+\Z")


@dataclass(frozen=True)
class ExpectedTarget:
    """A target the release adds or changes: its bytes must be uploaded."""

    path: str
    length: int
    hashes: Mapping[str, str]

    @property
    def sha256(self) -> str:
        return self.hashes["sha256"]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "length": self.length,
            "sha256": self.sha256,
            "hashes": dict(self.hashes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExpectedTarget:
        return cls(path=data["path"], length=data["length"], hashes=dict(data["hashes"]))


@dataclass(frozen=True)
class UploadedRole:
    """One role of a release, parsed once: its metadata and the bytes to publish.

    ``data`` is what ``metadata`` was parsed from (or, in an upload body,
    the role's document serialized once before parsing): the bytes stored
    with the upload, parsed and verified again at publish, and published
    as they are.
    """

    metadata: Metadata[Any]
    data: bytes


@dataclass(frozen=True)
class CheckedRelease:
    """The verified roles (in publication order) and the targets they need."""

    roles: dict[str, int]
    targets: tuple[ExpectedTarget, ...]
    #: Published version of each role the release depends on (None: none yet).
    trusted_versions: dict[str, int | None] = field(default_factory=dict)
    #: The bytes of each verified role, in publication order: what to keep.
    data: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class _Step:
    role: str
    delegator: str | None
    ancestors: tuple[tuple[str, ...], ...] = ()


# --- the request body ---------------------------------------------------------


def parse_release(data: bytes, *, max_size: int) -> dict[str, dict[str, Any]]:
    """The role documents of ``{"metadata": {<role>: <metadata object>}}``.

    Strict parsing (duplicate keys, depth, size) covers the whole body, so
    no role can hide a second value of a field from the signature check.
    Role names are checked here (who may upload what is decided on them);
    ``uploaded_roles`` then loads each document.
    """
    try:
        tree = parse_json_strict(data, max_size=max_size)
    except InvalidMetadataError as exc:
        raise RejectedError(exc.rule, str(exc)) from None
    roles = tree.get("metadata")
    if set(tree) != {"metadata"} or not isinstance(roles, dict) or not roles:
        raise RejectedError(
            "malformed", 'the body must be {"metadata": {"<role name>": <signed metadata>}}'
        )
    out = {}
    for role, document in roles.items():
        check_uploadable_role(role)
        if not isinstance(document, dict):
            raise RejectedError("malformed", f"metadata of {role!r} must be a JSON object")
        out[role] = document
    return out


def uploaded_roles(documents: Mapping[str, dict[str, Any]]) -> dict[str, UploadedRole]:
    """Each role document of ``parse_release``, serialized once and loaded once.

    The bytes are compact JSON (the form the server publishes) of the
    document as uploaded; the metadata is loaded from the same parsed tree
    under the strict rules of ``repo_metadata.validation``. python-tuf
    consumes the documents.
    """
    return {role: _uploaded(role, document) for role, document in documents.items()}


def _uploaded(role: str, document: dict[str, Any]) -> UploadedRole:
    try:
        data = json.dumps(document, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except ValueError:
        raise RejectedError(
            "json-invalid", f"{role}: a number is out of range (not a finite JSON number)"
        ) from None
    try:
        metadata = metadata_from_tree(document, expected_type=role_type(role))
    except InvalidMetadataError as exc:
        raise RejectedError(exc.rule, f"{role}: {exc}") from None
    return UploadedRole(metadata, data)


def load_roles(stored: Mapping[str, bytes]) -> dict[str, UploadedRole]:
    """Roles kept as bytes (an open upload, a repository to import), each parsed once."""
    out = {}
    for role, data in stored.items():
        check_uploadable_role(role)
        try:
            metadata = load_metadata(data, expected_type=role_type(role))
        except InvalidMetadataError as exc:
            raise RejectedError(exc.rule, f"{role}: {exc}") from None
        out[role] = UploadedRole(metadata, data)
    return out


def check_uploadable_role(role: str) -> None:
    """Raise unless ``role`` is root, targets or a safe delegated role name."""
    if role in (Snapshot.type, Timestamp.type):
        raise RejectedError(
            "online-role", f"{role} is signed by the server; upload root, targets or delegations"
        )
    if role in (Root.type, Targets.type):
        return
    try:
        check_role_name(role)
    except InvalidFieldError as exc:
        raise RejectedError("role-name", str(exc)) from None


def role_kind(role: str) -> str:
    """``root``, ``targets`` or ``delegated``: what decides who may upload it."""
    return role if role in (Root.type, Targets.type) else "delegated"


# --- verification -------------------------------------------------------------


def check_release(
    repo: OnlineRepository,
    proposed: Mapping[str, UploadedRole],
    *,
    now: datetime,
    online_keys: Mapping[str, Key],
    max_target_bytes: int,
) -> CheckedRelease:
    """Verify ``proposed`` against ``repo``'s published state and stage it there.

    Raises ``RejectedError`` naming the rule that failed; on success the
    roles are staged in ``repo``, ready for snapshot and timestamp.
    """
    repo.require_initialised()
    baseline = verify_roles(repo, proposed, now=now, online_keys=online_keys)
    targets = expected_targets(repo, max_target_bytes=max_target_bytes)
    versions = repo.staged_versions()
    data = {role: proposed[role].data for role in versions}
    return CheckedRelease(versions, targets, baseline, data)


def verify_roles(
    repo: OnlineRepository,
    proposed: Mapping[str, UploadedRole],
    *,
    now: datetime,
    online_keys: Mapping[str, Key],
) -> dict[str, int | None]:
    """Verify and stage ``proposed`` top-down; return the versions it was checked against."""
    steps = _order(repo, proposed)
    depends = {Root.type, Targets.type} | {s.role for s in steps}
    depends |= {s.delegator for s in steps if s.delegator is not None}
    baseline = {role: repo.published_version(role) for role in sorted(depends)}
    for step in steps:
        uploaded = proposed[step.role]
        _verify(repo, step, uploaded.metadata, repo.published(step.role), now)
        if isinstance(uploaded.metadata.signed, Root):
            check_root_fits_server(uploaded.metadata.signed, online_keys)
        repo.stage(step.role, uploaded.metadata, uploaded.data)
    _check_repository(repo)
    return baseline


def _verify(
    repo: OnlineRepository,
    step: _Step,
    metadata: Metadata[Any],
    trusted: Metadata[Any] | None,
    now: datetime,
) -> None:
    if step.delegator is None:
        root = repo.current(Root.type)
        delegator: Root | Targets | None = None if root is None else root.signed
    else:
        delegator = repo.current_targets(step.delegator)
    if not isinstance(delegator, Root | Targets):
        raise RejectedError("not-delegated", f"{step.role}: its delegator has no metadata")
    try:
        verify_metadata(
            metadata,
            role=step.role,
            trusted=trusted,
            delegator=delegator,
            now=now,
            ancestor_patterns=step.ancestors,
        )
    except UpdateRejectedError as exc:
        raise RejectedError(exc.rule, f"{step.role}: {exc}") from None


def check_root_fits_server(root: Root, online_keys: Mapping[str, Key]) -> None:
    """Raise unless the server can keep signing for devices under ``root``."""
    if not root.consistent_snapshot:
        raise RejectedError(
            "consistent-snapshot",
            f"root v{root.version} must set consistent_snapshot: the server publishes"
            " versioned metadata and hash-prefixed targets only",
        )
    for role in (Snapshot.type, Timestamp.type):
        key = online_keys[role]
        entry = root.roles[role]
        if key.keyid not in entry.keyids or entry.threshold != 1:
            raise RejectedError(
                "online-keys",
                f"root v{root.version} must name the server's {role} key {key.keyid[:12]}"
                f" with threshold 1 (it names {sorted(k[:12] for k in entry.keyids)},"
                f" threshold {entry.threshold}); otherwise the server cannot sign {role}",
            )


# --- order: every delegator before what it delegates ----------------------------


def _order(repo: OnlineRepository, proposed: Mapping[str, UploadedRole]) -> list[_Step]:
    steps = [_Step(role, None) for role in (Root.type, Targets.type) if role in proposed]
    remaining = set(proposed) - {Root.type, Targets.type}
    if not remaining:
        return steps
    parsed = {
        role: signed
        for role, uploaded in proposed.items()
        if isinstance(signed := uploaded.metadata.signed, Targets)
    }
    queue: list[tuple[str, tuple[tuple[str, ...], ...]]] = [(Targets.type, ())]
    seen: set[str] = set()
    while queue and remaining:
        name, ancestors = queue.pop(0)
        signed = None if name in seen else parsed.get(name) or repo.current_targets(name)
        seen.add(name)
        if signed is None or signed.delegations is None:
            continue
        delegations = signed.delegations
        for child in (delegations.roles or {}).values():
            if child.name in remaining:
                steps.append(_Step(child.name, name, ancestors))
                remaining.discard(child.name)
            patterns = tuple(child.paths or ())
            queue.append((child.name, (*ancestors, patterns) if patterns else ancestors))
        succinct = delegations.succinct_roles
        for role in sorted(remaining):
            if succinct is not None and succinct.is_delegated_role(role):
                steps.append(_Step(role, name, ancestors))
                remaining.discard(role)
                queue.append((role, ancestors))
    if remaining:
        role = sorted(remaining)[0]
        raise RejectedError(
            "not-delegated",
            f"role {role!r} is not delegated by targets or any role below it;"
            " upload the delegating role with it, or check the name",
        )
    return steps


# --- the whole repository after the change ----------------------------------------


def _check_repository(repo: OnlineRepository) -> None:
    """``repo_metadata.repository_check``: the rules ``fwsign`` applies too.

    A release must stand on its own: a published role it leaves out that
    would lose its delegator's trust is refused (``delegation-broken``).
    """
    try:
        check_repository(
            {role: md for role in repo.staged_versions() if (md := repo.current(role)) is not None},
            before=repo.published,
            after=repo.current,
            completeness=Completeness.RELEASE,
        )
    except UpdateRejectedError as exc:
        raise RejectedError(exc.rule, str(exc)) from None


# --- targets whose bytes must come with the release -----------------------------


def expected_targets(
    repo: OnlineRepository, *, max_target_bytes: int
) -> tuple[ExpectedTarget, ...]:
    """Every target new or changed in a staged role, vs its published version."""
    expected: dict[str, ExpectedTarget] = {}
    for role in repo.staged_versions():
        new = repo.current_targets(role)
        if new is None:
            continue
        old = repo.published(role)
        old_targets = old.signed.targets if old is not None else {}
        for path, target in new.targets.items():
            previous = old_targets.get(path)
            if previous is not None and _same_bytes(previous, target):
                continue
            item = check_target(target, max_bytes=max_target_bytes)
            if expected.setdefault(path, item) != item:
                raise RejectedError(
                    "target-conflict", f"{path} is signed with two different contents"
                )
    return tuple(expected.values())


def _same_bytes(first: TargetFile, second: TargetFile) -> bool:
    return first.length == second.length and first.hashes == second.hashes


def check_target(target: TargetFile, *, max_bytes: int) -> ExpectedTarget:
    """An ``ExpectedTarget`` for ``target``, or raise (rules ``target-*``)."""
    path = target.path
    try:
        check_target_path(path)
    except InvalidFieldError as exc:
        raise RejectedError("target-path", str(exc)) from None
    if "sha256" not in target.hashes:
        raise RejectedError("target-hash", f"{path} must list a sha256 hash")
    for algorithm, digest in target.hashes.items():
        size = HASH_SIZES.get(algorithm)
        if size is None:
            raise RejectedError(
                "target-hash",
                f"{path}: hash {algorithm!r} is not one the server checks ({sorted(HASH_SIZES)})",
            )
        if not isinstance(digest, str) or len(digest) != size or not _LOWER_HEX.match(digest):
            raise RejectedError(
                "target-hash", f"{path}: {algorithm} must be {size} lowercase hex digits"
            )
    if target.length > max_bytes:
        raise RejectedError(
            "target-too-large",
            f"{path} is {target.length} bytes, above the server's upload limit of {max_bytes}",
        )
    return ExpectedTarget(path=path, length=target.length, hashes=dict(target.hashes))
