"""Versions and expiries of the published roles, for people (R38).

``published_status`` answers ``GET /api/v1/repository`` and ``fwserver repo
status``: every role the published snapshot lists (a product line with
2,048 hashed bins lists 2,051), each with its version and expiry. Reading
and parsing every role file on each call costs ~300 ms at that size, and
``fwsign publish`` asks before each release; so the targets roles come from
a ``Listing`` kept per process:

- it holds while the snapshot's file is the same (version, inode, mtime,
  size): a call then reads root and timestamp only;
- a new snapshot (a publication, a renewal) makes a new listing that reads
  only the roles whose file changed: a consistent-snapshot file
  ``N.<role>.json`` is never rewritten (devices rely on that too), and a
  restored or re-imported repository has new files, new inodes.

A role file removed by hand under a listing still in use is not noticed
here (devices and ``fwsign verify`` notice); the trust decisions never use
this summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Snapshot, Timestamp

from update_server.publication.errors import BrokenRepositoryError
from update_server.publication.repository import OnlineRepository, role_file

#: A published role's version, then the inode, mtime and size of its file.
FileKey = tuple[int, int, int, int]
Summary = dict[str, Any]
_REPOSITORIES = 8  # one in production; tests make many


@dataclass(frozen=True)
class Listing:
    """Summaries of the snapshot and of every targets role it lists."""

    key: FileKey
    snapshot: Summary
    roles: dict[str, tuple[FileKey | None, Summary]]


_LISTINGS: dict[Path, Listing] = {}


def published_status(repo: OnlineRepository) -> dict[str, Any]:
    """``{roles: {name: {version, expires}}, snapshot, timestamp}`` (docs/api.md)."""
    repo.require_initialised()
    listing = _listing(repo)
    roles = {Root.type: _summary(repo, Root.type)}
    roles.update((role, dict(summary)) for role, (_key, summary) in listing.roles.items())
    return {
        "roles": roles,
        "snapshot": dict(listing.snapshot),
        "timestamp": _summary(repo, Timestamp.type),
    }


def _listing(repo: OnlineRepository) -> Listing:
    key = _file_key(repo, Snapshot.type)
    cached = _LISTINGS.get(repo.directory)
    if key is None:
        _LISTINGS.pop(repo.directory, None)
        raise BrokenRepositoryError(
            "inconsistent", "the snapshot that timestamp.json lists is missing"
        )
    if cached is not None and cached.key == key:
        return cached
    previous = {} if cached is None else cached.roles
    roles: dict[str, tuple[FileKey | None, Summary]] = {}
    for role in repo.published_roles():
        role_key = _file_key(repo, role)  # before the read: a change after it misses
        hit = previous.get(role)
        if role_key is None or hit is None or hit[0] != role_key:
            hit = (role_key, _summary(repo, role))
        roles[role] = hit
    listing = Listing(key, _summary(repo, Snapshot.type), roles)
    if len(_LISTINGS) >= _REPOSITORIES:
        _LISTINGS.clear()
    _LISTINGS[repo.directory] = listing
    return listing


def _file_key(repo: OnlineRepository, role: str) -> FileKey | None:
    version = repo.published_version(role)
    if version is None:
        return None
    try:
        info = (repo.directory / role_file(role, version)).stat()
    except FileNotFoundError:
        return None  # reading it reports the inconsistency
    return (version, info.st_ino, info.st_mtime_ns, info.st_size)


def _summary(repo: OnlineRepository, role: str) -> Summary:
    md: Metadata[Any] | None = repo.published(role)
    if md is None:
        raise BrokenRepositoryError("inconsistent", f"no published {role}")
    return {
        "version": md.signed.version,
        "expires": md.signed.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
