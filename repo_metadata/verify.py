"""Whether a proposed new version of a role may replace the trusted one.

This is the one decision the server makes on every upload and the signer
makes before it writes. It is pure: bytes and trusted objects in, a verified
``Metadata`` out, or an ``UpdateRejectedError`` whose ``rule`` says exactly
which rule failed. The rules, in order:

``malformed`` and the strict rules of ``validation``
    the bytes parse as the expected role type under our strict rules
    (duplicate keys, booleans for integers, unsafe paths, bad firmware fields).
``not-delegated``
    the delegator actually delegates this role name.
``version``
    the version is strictly greater than the trusted one (TUF rollback
    attack); a new root is exactly one greater (TUF spec 5.3.4).
``expired``
    the proposed role is not already expired (TUF freeze attack).
``path-outside-delegation``
    every target lies inside the paths the delegator (and every delegator
    above it) grants this role; for hashed bins, the target hashes to this
    very bin (TUF: a compromised product-line key cannot sign another line's
    firmware).
``delegation-scope``
    top-level targets grants each product line a ``<prefix>/*`` only, and a
    role that delegates further grants nothing outside its own paths.
``key-reuse``
    root uses no key for two top-level roles (R47: one key, one use).
``signature-threshold``
    the threshold of valid signatures by the keys the delegator names is
    met; a new root is signed by the threshold of the old and of the new root
    (TUF arbitrary-software and key-compromise attacks, R9 four eyes).

Security policy is a required keyword argument (sigstore's habit):
``ancestor_patterns``, the path patterns of every delegation above the
delegator, has no default, so a caller that forgets it fails at once instead
of getting a weaker path check; ``()`` says that no delegation lies above.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from fnmatch import fnmatch
from typing import Any

from tuf.api.metadata import (
    DelegatedRole,
    Metadata,
    Role,
    Root,
    Snapshot,
    SuccinctRoles,
    Targets,
    Timestamp,
)

from repo_metadata.errors import InvalidMetadataError, UpdateRejectedError
from repo_metadata.validation import (
    check_delegation_scope,
    check_product_line_patterns,
    load_metadata,
)

_TYPE_OF_ROLE = {
    Root.type: Root.type,
    Snapshot.type: Snapshot.type,
    Timestamp.type: Timestamp.type,
}


def role_type(role: str) -> str:
    """The metadata ``_type`` a role of this name carries."""
    return _TYPE_OF_ROLE.get(role, Targets.type)


def delegated_role_of(delegator: Root | Targets, role: str) -> Role | None:
    """The role entry ``delegator`` holds for ``role``, or None."""
    try:
        return delegator.get_delegated_role(role)
    except ValueError:
        return None


def path_granted(
    path: str,
    *,
    role: str,
    delegator: Root | Targets,
    ancestor_patterns: Sequence[Sequence[str]],
) -> bool:
    """Whether ``delegator`` (and each level above it) grants ``path`` to ``role``.

    ``ancestor_patterns`` holds, for each delegation above ``delegator``, the
    path patterns granted at that level; a target must match one pattern of
    every level, exactly as a client's delegation walk would require. It is
    required (security policy has no default): ``()`` states that no
    delegation lies above ``delegator``.
    """
    if isinstance(delegator, Targets):
        # A named delegation grants by path pattern; a hashed bin (for which
        # tuf returns a plain Role) grants exactly the paths that hash to it.
        entry = delegated_role_of(delegator, role)
        if isinstance(entry, DelegatedRole):
            if not entry.is_delegated_path(path):
                return False
        elif not _in_succinct(delegator, role, path):
            return False
    return all(any(fnmatch(path, pattern) for pattern in level) for level in ancestor_patterns)


def _in_succinct(delegator: Targets, role: str, path: str) -> bool:
    delegations = delegator.delegations
    succinct = delegations.succinct_roles if delegations else None
    return isinstance(succinct, SuccinctRoles) and succinct.get_role_for_target(path) == role


def check_proposed(
    proposed: Metadata[Any],
    *,
    role: str,
    trusted_version: int | None,
    delegator: Root | Targets,
    now: datetime,
    ancestor_patterns: Sequence[Sequence[str]],
) -> None:
    """Every rule of ``verify_update`` except signatures, on parsed metadata.

    The signer runs this on a draft before anyone has signed it; the server
    never calls it alone. Of the trusted role, the content rules need only
    its version (None: no trusted version yet).
    """
    signed = proposed.signed
    if delegated_role_of(delegator, role) is None:
        raise UpdateRejectedError("not-delegated", f"role {role!r} is not delegated by its parent")
    _check_version(signed.version, role=role, trusted_version=trusted_version)
    if signed.is_expired(now):
        raise UpdateRejectedError(
            "expired", f"{role} v{signed.version} expired on {signed.expires:%Y-%m-%d %H:%M} UTC"
        )
    if isinstance(signed, Targets):
        _check_targets(signed, role=role, delegator=delegator, ancestors=ancestor_patterns)
    if isinstance(signed, Root):
        _check_one_key_one_use(signed)


def _check_version(new: int, *, role: str, trusted_version: int | None) -> None:
    if trusted_version is None:
        return
    old = trusted_version
    if role == Root.type and new != old + 1:
        raise UpdateRejectedError(
            "version", f"root v{new} must follow the trusted root v{old} exactly (v{old + 1})"
        )
    if new <= old:
        raise UpdateRejectedError(
            "version", f"{role} v{new} is not newer than the trusted v{old} (rollback refused)"
        )


def _check_targets(
    signed: Targets,
    *,
    role: str,
    delegator: Root | Targets,
    ancestors: Sequence[Sequence[str]],
) -> None:
    for path in signed.targets:
        if not path_granted(path, role=role, delegator=delegator, ancestor_patterns=ancestors):
            raise UpdateRejectedError(
                "path-outside-delegation",
                f"target {path!r} lies outside the paths delegated to {role!r}",
            )
    if isinstance(delegator, Root):
        _check_product_lines(signed)
        return
    entry = delegated_role_of(delegator, role)
    own = entry.paths if isinstance(entry, DelegatedRole) and entry.paths else None
    roles = signed.delegations.roles if signed.delegations else None
    if own is None or not roles:
        return
    for child in roles.values():
        try:
            check_delegation_scope(own, child)
        except InvalidMetadataError as exc:
            raise UpdateRejectedError(exc.rule, str(exc)) from None


def _check_product_lines(targets: Targets) -> None:
    """Top-level targets hands out product lines by ``<prefix>/*`` only."""
    delegations = targets.delegations
    if delegations is None:
        return
    if delegations.roles is None:
        raise UpdateRejectedError(
            "delegation-scope", "top-level targets must delegate product lines by path prefix"
        )
    for child in delegations.roles.values():
        try:
            check_product_line_patterns(child.paths or [])
        except InvalidMetadataError as exc:
            raise UpdateRejectedError(exc.rule, f"{child.name}: {exc}") from None


def _check_one_key_one_use(root: Root) -> None:
    seen: dict[str, str] = {}
    for name, entry in root.roles.items():
        for keyid in entry.keyids:
            if keyid in seen:
                raise UpdateRejectedError(
                    "key-reuse",
                    f"key {keyid[:12]} is used for both {seen[keyid]} and {name};"
                    " every role needs its own key (R47)",
                )
            seen[keyid] = name


def check_signatures(
    proposed: Metadata[Any],
    *,
    role: str,
    trusted: Metadata[Any] | None,
    delegator: Root | Targets,
) -> None:
    """Raise unless the signature threshold is met by the delegator's keys.

    A new root must meet both the trusted root's threshold and its own.
    """
    payload = proposed.signed_bytes
    if role == Root.type:
        previous = trusted.signed if trusted is not None else None
        try:
            result = proposed.signed.get_root_verification_result(
                previous, payload, proposed.signatures
            )
        except ValueError as exc:
            raise UpdateRejectedError("version", str(exc)) from None
        parts = [("the trusted root", result.first), ("the new root itself", result.second)]
    else:
        parts = [
            (
                "its delegator",
                delegator.get_verification_result(role, payload, proposed.signatures),
            )
        ]
    for who, part in parts:
        if not part.verified:
            raise UpdateRejectedError(
                "signature-threshold",
                f"{role} v{proposed.signed.version} has {len(part.signed)} valid signature(s)"
                f" of the {part.threshold} required by {who}; collect"
                f" {part.missing} more with 'fwsign sign'",
            )


def verify_update(
    proposed: bytes,
    *,
    role: str,
    trusted: Metadata[Any] | None,
    delegator: Root | Targets,
    now: datetime,
    ancestor_patterns: Sequence[Sequence[str]],
) -> Metadata[Any]:
    """Decide whether ``proposed`` may replace ``trusted`` as role ``role``.

    ``delegator`` is the trusted metadata that delegates ``role`` (the trusted
    root for top-level roles, and for root itself); ``trusted`` is the current
    trusted version of the role, or None if there is none yet. Returns the
    verified metadata; raises ``UpdateRejectedError`` naming the failed rule.
    """
    try:
        metadata = load_metadata(proposed, expected_type=role_type(role))
    except InvalidMetadataError as exc:
        raise UpdateRejectedError(exc.rule, str(exc)) from None
    verify_metadata(
        metadata,
        role=role,
        trusted=trusted,
        delegator=delegator,
        now=now,
        ancestor_patterns=ancestor_patterns,
    )
    return metadata


def verify_metadata(
    metadata: Metadata[Any],
    *,
    role: str,
    trusted: Metadata[Any] | None,
    delegator: Root | Targets,
    now: datetime,
    ancestor_patterns: Sequence[Sequence[str]],
) -> None:
    """``verify_update`` for metadata ``load_metadata`` has loaded already (parsed once).

    ``metadata`` must come from ``load_metadata`` or ``metadata_from_tree``
    with the role's type: the strict rules are theirs. Raises
    ``UpdateRejectedError`` naming the failed rule.
    """
    if metadata.signed.type != role_type(role):
        raise UpdateRejectedError(
            "unexpected-type", f"expected {role_type(role)} metadata, got {metadata.signed.type}"
        )
    if role == Root.type:
        delegator = metadata.signed if trusted is None else trusted.signed
    check_proposed(
        metadata,
        role=role,
        trusted_version=None if trusted is None else trusted.signed.version,
        delegator=delegator,
        now=now,
        ancestor_patterns=ancestor_patterns,
    )
    check_signatures(metadata, role=role, trusted=trusted, delegator=delegator)


def verify_root_chain(
    roots: Sequence[bytes], *, trusted: Metadata[Root] | None, now: datetime
) -> Metadata[Root]:
    """Walk root versions in order from ``trusted`` (TUF spec 5.3).

    Each step must be the next version and be signed by the threshold of
    the previous root and of itself; only the final root must be unexpired
    (an old root may have expired long ago: that is how rotation works).
    """
    current = trusted
    for data in roots:
        try:
            proposed = load_metadata(data, expected_type=Root.type)
        except InvalidMetadataError as exc:
            raise UpdateRejectedError(exc.rule, str(exc)) from None
        _check_version(
            proposed.signed.version,
            role=Root.type,
            trusted_version=None if current is None else current.signed.version,
        )
        delegator = current.signed if current is not None else proposed.signed
        check_signatures(proposed, role=Root.type, trusted=current, delegator=delegator)
        _check_one_key_one_use(proposed.signed)
        current = proposed
    if current is None:
        raise UpdateRejectedError("malformed", "no root metadata to verify")
    if current.signed.is_expired(now):
        raise UpdateRejectedError(
            "expired",
            f"root v{current.signed.version} expired on {current.signed.expires:%Y-%m-%d}",
        )
    return current
