"""The firmware releases the published metadata signs now, and the versions it ever signed.

What ``withdrawn`` (WD1-WD4) decides from, for the poll's offer to leave a
withdrawn release (``poll`` P6) and the inventory's flag. Read from the
server's own published files. Rules:

- SR1 Now: the firmware targets of every targets role the published
  snapshot lists, at the version it lists.
- SR2 Once: the same over every earlier version of those roles. The
  repository keeps each published version of a role as its own file, never
  rewritten (consistent snapshots), so a release ``fwsign revoke-release``
  withdrew is still in the versions before. A version above the one listed
  (a publication that did not complete) is not read; nor is a role the
  snapshot no longer lists.
- SR3 A target whose firmware fields do not read is no release (an SBOM).
- SR4 Read once per published ``timestamp.json`` in each server process,
  keyed on its exact bytes (as ``rollout.SignedTargets`` ST1): the poll asks
  at each check-in, and then reads that one small file only, parsing
  nothing. A publication or a withdrawal writes a new timestamp (a new
  snapshot version), so the next request reads anew; the files a timestamp
  names are never rewritten (consistent snapshots). An earlier version's
  file is read once per process, as published files never change. Nothing
  is read before a repository is published: no release, none ever signed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp
from tuf.api.serialization import DeserializationError

from repo_metadata.frontier import firmware_info
from repo_metadata.semver import SemVer
from update_server.authorizations.issuing import Release
from update_server.publication.repository import OnlineRepository, role_file


@dataclass(frozen=True)
class SignedReleases:
    """SR1, SR2 for one published snapshot version."""

    now: tuple[Release, ...]
    #: (hardware model, version) of every release signed by a published version (SR2).
    once: frozenset[tuple[str, SemVer]]

    def once_signed(self, hardware_model: str) -> frozenset[SemVer]:
        return frozenset(version for model, version in self.once if model == hardware_model)


NONE = SignedReleases((), frozenset())

_lock = threading.Lock()
#: SR4: per repository directory, the timestamp's bytes read and what it signs.
_current: dict[Path, tuple[bytes, SignedReleases]] = {}
#: SR4: an earlier version's file, read once.
_earlier: dict[Path, frozenset[tuple[str, SemVer]]] = {}


def read(repository: OnlineRepository) -> SignedReleases:
    """SR1-SR4 for the published state of ``repository``."""
    timestamp = repository.published_bytes(Timestamp.type) if repository.is_initialised() else None
    if timestamp is None:
        return NONE
    with _lock:
        cached = _current.get(repository.directory)
        if cached is not None and cached[0] == timestamp:
            return cached[1]
        if repository.published_version(Snapshot.type) is None:
            return NONE
        found = _read(repository)
        _current[repository.directory] = (timestamp, found)
        return found


def _read(repository: OnlineRepository) -> SignedReleases:
    now: list[Release] = []
    once: set[tuple[str, SemVer]] = set()
    for role in repository.published_roles():
        published = repository.published(role)
        if published is None:
            continue
        signed: Targets = published.signed
        releases = list(_releases(signed))
        now.extend(releases)
        once.update(_models(releases))
        for earlier in range(1, signed.version):
            once.update(_earlier_version(repository.directory / role_file(role, earlier)))
    return SignedReleases(tuple(now), frozenset(once))


def _earlier_version(file: Path) -> frozenset[tuple[str, SemVer]]:
    if file not in _earlier:
        try:
            signed = Metadata[Targets].from_bytes(file.read_bytes()).signed
        except (
            OSError,
            DeserializationError,
        ):  # never written: none
            signed = None
        found = () if not isinstance(signed, Targets) else _models(_releases(signed))
        _earlier[file] = frozenset(found)
    return _earlier[file]


def _releases(signed: Targets) -> Iterable[Release]:
    for path, target in signed.targets.items():
        info = firmware_info(target)
        if info is not None:
            yield Release(path, target.hashes["sha256"], info)


def _models(releases: Iterable[Release]) -> tuple[tuple[str, SemVer], ...]:
    return tuple(
        (model, release.info.semver)
        for release in releases
        for model in release.info.hardware_models
    )
