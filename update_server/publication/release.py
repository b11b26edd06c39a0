"""Whether an uploaded release may replace the server's trusted state (R13, R49).

A release is a set of offline-signed roles: root, targets and delegated
roles (product lines, hashed bins). Each is checked with
``repo_metadata.verify.verify_update`` in an order where every delegator
comes before what it delegates (root, then targets, then delegations
top-down), against:

- the trusted version of the role: the one published now;
- its delegator: the trusted one, or the one just verified in this release;
- the path patterns every level above the delegator grants (a client's walk).

Beyond ``verify_update``, rules of the server itself:

``role-name``, ``online-role``
    role names are safe file names; snapshot and timestamp are the server's.
``consistent-snapshot``, ``online-keys``
    a new root keeps consistent snapshots and names the server's own online
    keys, threshold 1: otherwise the server could not sign, and every device
    would stop updating when timestamp expires (a freeze by misconfiguration).
``delegation-cycle``, ``delegated-twice``
    the delegations still form a tree (``check_delegation_graph``).
``delegation-broken``
    a published role left out of the release still meets the threshold of
    its changed delegator (a key rotation must re-sign what it affects).
``current-release-copy``, ``current-release-missing``
    a product line with hashed bins lists copies of its current releases,
    and every release its bins gain (or its list drops) is listed or
    superseded (``repo_metadata.frontier``): devices read only that list.
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
from tuf.api.metadata import (
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)

from repo_metadata.errors import InvalidFieldError, InvalidMetadataError, UpdateRejectedError
from repo_metadata.frontier import check_line_change
from repo_metadata.paths import check_role_name, check_target_path
from repo_metadata.validation import check_delegation_graph, load_metadata, parse_json_strict
from repo_metadata.verify import check_signatures, verify_update
from update_server.publication.errors import RejectedError
from update_server.publication.repository import SERIALIZER, OnlineRepository

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
class CheckedRelease:
    """The verified roles (in publication order) and the targets they need."""

    roles: dict[str, int]
    targets: tuple[ExpectedTarget, ...]
    #: Published version of each role the release depends on (None: none yet).
    trusted_versions: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _Step:
    role: str
    delegator: str | None
    ancestors: tuple[tuple[str, ...], ...] = ()


# --- the request body ---------------------------------------------------------


def parse_release(data: bytes, *, max_size: int) -> dict[str, bytes]:
    """The roles of ``{"metadata": {<role>: <metadata object>}}``, as JSON bytes.

    Strict parsing (duplicate keys, depth, size) covers the whole body, so
    no role can hide a second value of a field from the signature check.
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
        out[role] = json.dumps(document).encode()
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
    proposed: Mapping[str, bytes],
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
    return CheckedRelease(repo.staged_versions(), targets, baseline)


def verify_roles(
    repo: OnlineRepository,
    proposed: Mapping[str, bytes],
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
        md = _verify(repo, step, proposed[step.role], repo.published(step.role), now)
        if isinstance(md.signed, Root):
            check_root_fits_server(md.signed, online_keys)
        repo.stage(step.role, md, md.to_bytes(SERIALIZER))
    _check_tree(repo)
    _check_left_out(repo)
    _check_current_releases(repo, steps)
    return baseline


def _verify(
    repo: OnlineRepository,
    step: _Step,
    data: bytes,
    trusted: Metadata[Any] | None,
    now: datetime,
) -> Metadata[Any]:
    if step.delegator is None:
        root = repo.current(Root.type)
        delegator: Root | Targets | None = None if root is None else root.signed
    else:
        delegator = repo.current_targets(step.delegator)
    if not isinstance(delegator, Root | Targets):
        raise RejectedError("not-delegated", f"{step.role}: its delegator has no metadata")
    try:
        return verify_update(
            data,
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


def _order(repo: OnlineRepository, proposed: Mapping[str, bytes]) -> list[_Step]:
    steps = [_Step(role, None) for role in (Root.type, Targets.type) if role in proposed]
    remaining = set(proposed) - {Root.type, Targets.type}
    if not remaining:
        return steps
    parsed = {role: _parse_targets(role, proposed[role]) for role in remaining}
    if Targets.type in proposed:
        parsed[Targets.type] = _parse_targets(Targets.type, proposed[Targets.type])
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


def _parse_targets(role: str, data: bytes) -> Targets:
    try:
        signed = load_metadata(data, expected_type=Targets.type).signed
    except InvalidMetadataError as exc:
        raise RejectedError(exc.rule, f"{role}: {exc}") from None
    if not isinstance(signed, Targets):  # pragma: no cover - load_metadata checked _type
        raise RejectedError("unexpected-type", f"{role}: not targets metadata")
    return signed


# --- the whole tree after the change --------------------------------------------


def _check_tree(repo: OnlineRepository) -> None:
    staged = repo.staged_versions()
    changed = [repo.current_targets(role) for role in staged]
    if not any(signed is not None and signed.delegations for signed in changed):
        return
    try:
        check_delegation_graph(dict(repo.walk_named_roles()))
    except InvalidMetadataError as exc:
        raise RejectedError(exc.rule, str(exc)) from None


def _check_left_out(repo: OnlineRepository) -> None:
    """Published roles not in the release must still verify under new delegators."""
    staged = repo.staged_versions()
    for role in staged:
        new = repo.current(role)
        old = repo.published(role)
        if new is None or (old is not None and _same_delegations(old.signed, new.signed)):
            continue
        for child in _children(new.signed):
            if child in staged:
                continue
            published = repo.published(child)
            if published is None:
                continue
            try:
                check_signatures(published, role=child, trusted=None, delegator=new.signed)
            except UpdateRejectedError as exc:
                raise RejectedError(
                    "delegation-broken",
                    f"{child} v{published.signed.version} (published, not in this release) would"
                    f" no longer be trusted under the new {role}: {exc}; re-sign it and upload"
                    " it in the same release",
                ) from None


def _check_current_releases(repo: OnlineRepository, steps: list[_Step]) -> None:
    """A changed line with bins lists copies of its current releases, covering its bins.

    Devices read only that list (``repo_metadata.frontier``): a release it
    neither lists nor supersedes would never reach them.
    """
    staged = repo.staged_versions()
    lines = {s.delegator for s in steps if s.delegator is not None and _bins_of(repo, s.delegator)}
    lines |= {role for role in staged if _bins_of(repo, role) is not None}
    for line in sorted(lines):
        bins = _bins_of(repo, line)
        signed = repo.current_targets(line)
        if bins is None or signed is None:  # pragma: no cover - lines above have bins
            continue
        published = repo.published(line)
        try:
            check_line_change(
                line,
                bins,
                current=signed.targets,
                listed_before=list(published.signed.targets) if published is not None else [],
                changed_bins=[
                    held
                    for role in staged
                    if bins.is_delegated_role(role) and (held := repo.current_targets(role))
                ],
                load_bin=repo.current_targets,
            )
        except UpdateRejectedError as exc:
            raise RejectedError(exc.rule, str(exc)) from None


def _bins_of(repo: OnlineRepository, role: str) -> SuccinctRoles | None:
    signed = repo.current_targets(role)
    if signed is None or signed.delegations is None:
        return None
    return signed.delegations.succinct_roles


def _same_delegations(old: Any, new: Any) -> bool:
    if isinstance(old, Root) and isinstance(new, Root):
        return bool(old.roles[Targets.type] == new.roles[Targets.type] and old.keys == new.keys)
    if isinstance(old, Targets) and isinstance(new, Targets):
        return bool(old.delegations == new.delegations)
    return False


def _children(signed: Any) -> list[str]:
    if isinstance(signed, Root):
        return [Targets.type]
    if not isinstance(signed, Targets) or signed.delegations is None:
        return []
    delegations = signed.delegations
    names = list(delegations.roles or {})
    if delegations.succinct_roles is not None:
        names.extend(delegations.succinct_roles.get_roles())
    return names


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
