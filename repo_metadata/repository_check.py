"""The whole-repository rules: the one check ``fwsign`` and the server both run.

``verify`` decides whether one role may replace its trusted version. Some
rules are about the repository as a whole once a change lands, and they live
here, once, so that the offline tool and the server can never disagree on
what a valid repository is (issue 9: one rule, one home). Both describe the
change the same way: the roles it changes, as python-tuf ``Metadata``, and
two lookups, each role as trusted before the change and as it will be after.
The rules, in this order (ids as in ``validation``, ``frontier`` and
``verify``):

``delegation-cycle``, ``delegated-twice``, ``succinct-too-large``
    when the change touches delegations, the named roles reachable from
    ``targets`` still form a tree (``validation.check_delegation_graph``):
    a walk of it ends and meets each role once.
``delegation-broken``
    a role the change leaves out still meets the threshold of a delegator
    whose delegations the change rewrites (a key rotation must re-sign what
    it affects, or devices would stop trusting it).
``current-release-copy``, ``current-release-missing``
    a product line with hashed bins that the change touches (itself or one
    of its bins) lists copies of its current releases, and every release its
    bins gain or its list drops is listed or superseded (``frontier``):
    devices read only that list.
``delta-release``
    each delta target the change adds or changes (issue 13) rebuilds a
    release that a device's walk of the repository finds once the change
    lands, starts from another one, and names that base's signed length and
    SHA-256 (``repo_metadata.delta.check_delta_target``, DI1-DI7): a device
    picks a delta by those fields, and only the full release is installed.
    A delta the change keeps is not checked again (a release withdrawn by
    ``fwsign revoke-release`` takes its deltas with it); ``fwsign verify``
    (``Completeness.WHOLE``) checks every one.

What differs between the two callers is a matter of policy, and the policy
is a required keyword (``completeness``): a release the server publishes
must stand on its own (``Completeness.RELEASE``: a left-out role that lost
its delegator's trust is refused), while ``fwsign`` commits drafts that
people sign one after another (``Completeness.DRAFT``: such a role is
returned in ``RepositoryCheck.to_resign``, to be re-signed and published in
the same release as its delegator). ``fwsign verify`` checks a whole
repository as the change that makes it from nothing (``Completeness.WHOLE``:
every role is in ``changed``, nothing is trusted before), and there each
product line must list exactly the current releases of all its bins
(``frontier.check_complete``, the full check, which reads every bin).

Pure: metadata in, a ``RepositoryCheck`` or an ``UpdateRejectedError``
naming the failed rule out. The lookups may read files lazily; only the roles
a rule needs are asked for (a release added to one bin reads that bin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tuf.api.metadata import Metadata, Root, SuccinctRoles, TargetFile, Targets

from repo_metadata.delta import check_delta_target, is_delta
from repo_metadata.errors import InvalidFieldError, InvalidMetadataError, UpdateRejectedError
from repo_metadata.frontier import check_complete, check_copies, check_line_change
from repo_metadata.validation import check_delegation_graph
from repo_metadata.verify import check_signatures

#: A role's metadata by name, or None if the repository has no such role.
RoleLookup = Callable[[str], Metadata[Any] | None]

#: The rule ids this check can raise, in the order it applies them.
RULES = (
    "succinct-too-large",
    "delegation-cycle",
    "delegated-twice",
    "delegation-broken",
    "current-release-copy",
    "current-release-missing",
    "delta-release",
)


class Completeness(Enum):
    """Whether the change must stand on its own (see the module docstring)."""

    RELEASE = "release"
    DRAFT = "draft"
    #: The whole repository at once (``fwsign verify``): refused as a release,
    #: and each line's list must be exactly its bins' current releases.
    WHOLE = "whole"


@dataclass(frozen=True)
class RepositoryCheck:
    """What the check looked at, and the roles a draft leaves to re-sign."""

    tree_checked: bool
    lines_checked: tuple[str, ...]
    #: Roles left out of the change that met their delegator's threshold
    #: before it and no longer do, as ``(role, reason)`` (a draft not yet
    #: signed is not listed; always empty for a release, which refuses them).
    to_resign: tuple[tuple[str, str], ...] = ()


def check_repository(
    changed: Mapping[str, Metadata[Any]],
    *,
    before: RoleLookup,
    after: RoleLookup,
    completeness: Completeness,
) -> RepositoryCheck:
    """Apply the whole-repository rules to a change; raise ``UpdateRejectedError``.

    ``changed`` holds every role the change writes (root, targets, delegated
    roles) as it will be; ``before(role)`` is the trusted version of a
    changed role (None: new); ``after(role)`` is any role as it will be once
    the change lands (None: absent). Each role in ``changed`` has passed
    ``verify`` already; this adds what only the whole repository can tell.
    """
    if not isinstance(completeness, Completeness):
        raise TypeError("completeness must be a Completeness (security policy, no default)")
    tree = _touches_delegations(changed)
    if tree:
        _check_tree(after)
    to_resign = _check_left_out(changed, before=before, after=after, completeness=completeness)
    lines = _check_lines(
        changed, before=before, after=after, whole=completeness is Completeness.WHOLE
    )
    _check_deltas(changed, before=before, after=after)
    return RepositoryCheck(tree, lines, to_resign)


def _targets_of(md: Metadata[Any] | None) -> Targets | None:
    signed = None if md is None else md.signed
    return signed if isinstance(signed, Targets) else None


def _touches_delegations(changed: Mapping[str, Metadata[Any]]) -> bool:
    return any(
        (signed := _targets_of(md)) is not None and signed.delegations is not None
        for md in changed.values()
    )


# --- delegation-cycle, delegated-twice -------------------------------------------


def named_roles(after: RoleLookup) -> Iterator[tuple[str, Targets]]:
    """Every targets role reachable from ``targets`` through named delegations.

    Breadth first, each role once (a cycle does not loop); hashed bins are
    not walked (a line may have thousands).
    """
    queue, seen = [Targets.type], set()
    while queue:
        name = queue.pop(0)
        signed = None if name in seen else _targets_of(after(name))
        seen.add(name)
        if signed is None:
            continue
        yield name, signed
        if signed.delegations is not None and signed.delegations.roles:
            queue.extend(signed.delegations.roles)


def _check_tree(after: RoleLookup) -> None:
    try:
        check_delegation_graph(dict(named_roles(after)))
    except InvalidMetadataError as exc:
        raise UpdateRejectedError(exc.rule, _message(exc)) from None


def _message(exc: InvalidMetadataError) -> str:
    """The message without its ``[rule: ...]`` suffix (the new error adds it again)."""
    return str(exc).removesuffix(f" [rule: {exc.rule}]")


# --- delegation-broken ------------------------------------------------------------


def _check_left_out(
    changed: Mapping[str, Metadata[Any]],
    *,
    before: RoleLookup,
    after: RoleLookup,
    completeness: Completeness,
) -> tuple[tuple[str, str], ...]:
    to_resign: list[tuple[str, str]] = []
    for role, new in changed.items():
        children = _children(new.signed)
        old = before(role) if children else None
        if old is not None and _same_delegations(old.signed, new.signed):
            continue
        for child in children:
            left_out = None if child in changed else after(child)
            if left_out is None:
                continue
            reason = _distrusted(left_out, child, new)
            if reason is None:
                continue
            if completeness is not Completeness.DRAFT:
                raise UpdateRejectedError(
                    "delegation-broken",
                    f"{child} v{left_out.signed.version} (published, not in this release) would"
                    f" no longer be trusted under the new {role}: {reason}; re-sign it and"
                    " upload it in the same release",
                )
            if old is not None and _distrusted(left_out, child, old) is not None:
                continue  # a draft not yet signed: this change took no trust from it
            to_resign.append((child, reason))
    return tuple(to_resign)


def _distrusted(md: Metadata[Any], role: str, delegator: Metadata[Any]) -> str | None:
    try:
        check_signatures(md, role=role, trusted=None, delegator=delegator.signed)
    except UpdateRejectedError as exc:
        return str(exc)
    return None


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


# --- current-release-copy, current-release-missing ----------------------------------


def _bins(signed: Targets | None) -> SuccinctRoles | None:
    if signed is None or signed.delegations is None:
        return None
    return signed.delegations.succinct_roles


def _changed_lines(changed: Mapping[str, Metadata[Any]], after: RoleLookup) -> list[str]:
    """Lines with bins the change touches: changed itself, or through a changed bin."""
    lines = {role for role, md in changed.items() if _bins(_targets_of(md)) is not None}
    rest = set(changed) - lines - {Root.type, Targets.type}
    if rest:
        for name, signed in named_roles(after):
            bins = _bins(signed)
            if bins is not None and any(bins.is_delegated_role(role) for role in rest):
                lines.add(name)
    return sorted(lines)


def _check_lines(
    changed: Mapping[str, Metadata[Any]], *, before: RoleLookup, after: RoleLookup, whole: bool
) -> tuple[str, ...]:
    lines = _changed_lines(changed, after)
    for line in lines:
        signed = _targets_of(after(line))
        bins = _bins(signed)
        if signed is None or bins is None:  # pragma: no cover - _changed_lines found bins
            continue
        if whole:
            _check_whole_line(line, signed, bins, after)
            continue
        previous = _targets_of(before(line)) if line in changed else signed
        check_line_change(
            line,
            bins,
            current=signed.targets,
            listed_before=list(previous.targets) if previous is not None else [],
            changed_bins=[
                held
                for role, md in changed.items()
                if bins.is_delegated_role(role) and (held := _targets_of(md)) is not None
            ],
            load_bin=lambda name: _targets_of(after(name)),
        )
    return tuple(lines)


def _check_whole_line(line: str, signed: Targets, bins: SuccinctRoles, after: RoleLookup) -> None:
    """The full check of one line: its list is exactly its bins' current releases."""
    held = {name: _targets_of(after(name)) for name in bins.get_roles()}

    def archived(path: str) -> TargetFile | None:
        bin_ = held.get(bins.get_role_for_target(path))
        return None if bin_ is None else bin_.targets.get(path)

    check_copies(line, signed.targets, archived)
    check_complete(
        line,
        signed.targets,
        [t for b in held.values() if b is not None for t in b.targets.values()],
    )


# --- delta-release ------------------------------------------------------------------


def _check_deltas(
    changed: Mapping[str, Metadata[Any]], *, before: RoleLookup, after: RoleLookup
) -> None:
    for role, md in changed.items():
        signed = _targets_of(md)
        old = _targets_of(before(role))
        for path, target in (signed.targets if signed is not None else {}).items():
            if is_delta(target) and (old is None or old.targets.get(path) != target):
                _check_delta(target, after)


def _check_delta(delta: TargetFile, after: RoleLookup) -> None:
    fields = delta.custom["delta"]
    image, base = (
        find_target(after, fields.get(name) if isinstance(fields, dict) else None)
        for name in ("image", "base")
    )
    if image is None or base is None:
        raise UpdateRejectedError(
            "delta-release",
            f"delta {delta.path}: its {'image' if image is None else 'base'} is not a target a"
            " device finds in this repository; add that release first, or leave the delta out",
        )
    try:
        check_delta_target(delta, image, base)
    except InvalidFieldError as exc:
        raise UpdateRejectedError("delta-release", f"delta {exc}") from None


def find_target(after: RoleLookup, path: object) -> TargetFile | None:
    """The target at ``path`` as a device's walk from ``targets`` finds it, or None.

    Preorder and depth first, a role's own targets before its delegations,
    a terminating delegation ending the walk after its role (TUF 5.6.7);
    each role once.
    """
    if not isinstance(path, str):
        return None
    stack, seen = [Targets.type], set()
    while stack:
        name = stack.pop()
        signed = None if name in seen else _targets_of(after(name))
        seen.add(name)
        if signed is None:
            continue
        if path in signed.targets:
            return signed.targets[path]
        children, terminating = _delegated_for(signed, path)
        if terminating:
            stack.clear()
        stack.extend(reversed(children))
    return None


def _delegated_for(signed: Targets, path: str) -> tuple[list[str], bool]:
    """The roles ``signed`` delegates ``path`` to, in order, and whether the last ends the walk."""
    delegations = signed.delegations
    if delegations is None:
        return [], False
    if delegations.succinct_roles is not None:
        return [delegations.succinct_roles.get_role_for_target(path)], False
    children = []
    for role in (delegations.roles or {}).values():
        if role.is_delegated_path(path):
            children.append(role.name)
            if role.terminating:
                return children, True
    return children, False
