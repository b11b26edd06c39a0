"""Finding the signed releases for one hardware model.

Discovery rule: a device of model ``M`` looks for firmware at target paths
under ``M/`` (``fwsign add`` names a release ``<model>/<name>-<version>.bin``
after the first model it lists). It walks the delegations from the
top-level targets role down every role that may sign a path under ``M/``.

A product line with hashed bins signs, in its own role, copies of its
current releases: those no other release supersedes for any device
(``repo_metadata.frontier``; the signer and the server both enforce it).
So the walk stops at such a line and reads its list: a check costs the
snapshot and one small role, whatever the number of releases (the issue's
100,000 releases: under 100 KiB). ``archive=True`` walks every bin as well,
for the rare cases where a device needs a superseded release: one that
failed its health check here hides what it superseded, and a signed
recovery may reinstall the running version.

The walk goes through ngclient: each role is loaded by ngclient's own
loader (``Updater._load_targets``: python-tuf has no public call that loads
one delegated role; a probe path through ``get_targetinfo`` would also pull
a bin), so it is downloaded, verified against the snapshot and its
delegator, and cached exactly as for an install. The role's bytes are then
read back from the metadata cache and accepted only if they are what
ngclient trusts in this session: the version the trusted snapshot lists,
signed by the threshold of the delegator's keys, and not expired at the
device's trusted time (``at``, which may be the time floor when the clock
is behind it). A stale cached file fails these checks and is skipped; a
forged one raises.

A delta target (``repo_metadata.delta``, issue 13) is never an install
candidate: it only carries a release's bytes, and the release is chosen and
verified on its own full image. ``install_targets`` leaves deltas out of
what a role offers; a delta's custom has no firmware fields, so
``FirmwareInfo`` refuses it as well (DI1).

The chosen target is confirmed with ``get_targetinfo`` on its real path
before anything is downloaded (``update.py``), so ngclient's walk, with its
terminating delegations and ordering, has the last word.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from tuf.api.exceptions import ExpiredMetadataError, RepositoryError
from tuf.api.metadata import (
    Metadata,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient import Updater

from client.walk import walk_to_target
from repo_metadata.delta import is_delta

PROBE = ".fwclient-probe"
#: Upper bound on roles walked (2**14 bins plus named roles).
MAX_ROLES = 20_000


@dataclass(frozen=True)
class SignedRole:
    """A targets role as ngclient trusts it now: its exact bytes and contents."""

    name: str
    data: bytes
    signed: Targets


def cache_file(cache: Path, role: str) -> Path:
    """Where ngclient keeps ``role`` (names percent-encoded, as in TUF)."""
    return cache / f"{quote(role, safe='')}.json"


def read_top_level(cache: Path, role: str) -> Metadata[Any]:
    """A top-level role from the cache, right after ``Updater.refresh()``."""
    data = cache_file(cache, role).read_bytes()
    return Metadata.from_bytes(data)


def check_fresh(cache: Path, at: datetime) -> dict[str, datetime]:
    """Raise if a top-level role has expired at ``at``; return every expiry."""
    expiries = {}
    for role in (Root.type, Timestamp.type, Snapshot.type, Targets.type):
        signed = read_top_level(cache, role).signed
        _check_expiry(role, signed, at)
        expiries[role] = signed.expires
    return expiries


def _check_expiry(role: str, signed: Signed, at: datetime) -> None:
    # ngclient checked against the system clock; this repeats the check at the
    # device's trusted time, which is later when the clock is behind its floor.
    if signed.is_expired(at):
        raise ExpiredMetadataError(
            f"{role} expired at {signed.expires:%Y-%m-%d %H:%M}Z,"
            f" before the trusted time {at:%Y-%m-%d %H:%M}Z"
        )


class _Child(NamedTuple):
    name: str
    parent: str
    delegator: Targets


def walk(
    updater: Updater, cache: Path, *, prefix: str, at: datetime, archive: bool = False
) -> Iterator[SignedRole]:
    """Every role, top-down, that may sign a target under ``prefix``.

    Without ``archive``, the hashed bins of a product line are left out:
    the line's own role lists its current releases.
    """
    snapshot = read_top_level(cache, Snapshot.type).signed
    root = read_top_level(cache, Root.type).signed
    top = _accept(cache, Targets.type, root, snapshot, at)
    if top is None:
        raise RepositoryError("targets.json in the cache is not the one the snapshot lists")
    yield top
    stack = list(reversed(list(_children(top, prefix, archive=archive))))
    seen = {Targets.type}
    while stack and len(seen) < MAX_ROLES:
        child = stack.pop()
        if child.name in seen:
            continue
        seen.add(child.name)
        _load_with_ngclient(updater, child)
        role = _accept(cache, child.name, child.delegator, snapshot, at)
        if role is not None:
            yield role
            stack.extend(reversed(list(_children(role, prefix, archive=archive))))


def install_targets(role: SignedRole, prefix: str) -> Iterator[tuple[str, TargetFile]]:
    """The targets ``role`` signs under ``prefix`` that may be installed: no delta (issue 13)."""
    for path, target in role.signed.targets.items():
        if path.startswith(prefix) and not is_delta(target):
            yield path, target


def _load_with_ngclient(updater: Updater, child: _Child) -> None:
    # ngclient's loader (download, verify, cache); see the module docstring.
    updater._load_targets(child.name, child.parent)


def _children(role: SignedRole, prefix: str, *, archive: bool) -> Iterator[_Child]:
    delegations = role.signed.delegations
    if delegations is None:
        return
    sample = prefix + PROBE  # a path under the prefix, to match path patterns against
    for child in (delegations.roles or {}).values():
        if child.paths is None or child.is_delegated_path(sample):
            yield _Child(child.name, role.name, role.signed)
    if delegations.succinct_roles is not None and archive:
        for name in delegations.succinct_roles.get_roles():
            yield _Child(name, role.name, role.signed)


def _accept(
    cache: Path,
    name: str,
    delegator: Root | Targets,
    snapshot: Snapshot,
    at: datetime,
) -> SignedRole | None:
    """The cached ``name`` if it is the version ngclient trusts now, else ``None``."""
    listed = snapshot.meta.get(f"{name}.json")
    file = cache_file(cache, name)
    if listed is None or not file.is_file():
        return None
    data = file.read_bytes()
    md = Metadata[Targets].from_bytes(data)
    if not isinstance(md.signed, Targets) or md.signed.version != listed.version:
        return None
    delegator.verify_delegate(name, md.signed_bytes, md.signatures)
    _check_expiry(name, md.signed, at)
    return SignedRole(name, data, md.signed)


def signing_roles(cache: Path, path: str, *, at: datetime) -> tuple[list[SignedRole], TargetFile]:
    """The roles ngclient's walk visits for ``path``, the last one signing it.

    Call right after ``Updater.get_targetinfo(path)`` found the target: the
    walk (pre-order, depth first, a terminating delegation ends it; TUF
    5.6.7) is repeated over the roles it has just verified and cached, so the
    result is the exact evidence a later offline check needs.
    """
    snapshot = read_top_level(cache, Snapshot.type).signed
    accepted: dict[str, SignedRole] = {}

    def load(name: str, delegator: Root | Targets) -> Targets:
        role = _accept(cache, name, delegator, snapshot, at)
        if role is None:
            raise RepositoryError(f"{name} is not cached as the snapshot lists it")
        accepted[name] = role
        return role.signed

    found = walk_to_target(path, read_top_level(cache, Root.type).signed, load)
    if found is not None:
        names, target = found
        return [accepted[name] for name in names], target
    raise RepositoryError(f"no trusted role signs {path}")
