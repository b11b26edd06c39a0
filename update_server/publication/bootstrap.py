"""Importing the first repository made offline with ``fwsign`` (``fwserver import``).

Nothing is taken on trust: the root chain is walked from ``1.root.json``
(each version signed by the threshold of the one before and of itself), the
final root must keep consistent snapshots and name the server's own online
keys, and targets and every delegated role reachable from it are verified
top-down with ``verify_update``, exactly as a later upload would be. Then
the server signs snapshot v1 and timestamp v1 and publishes everything
through the same journaled switch as a release (``timestamp.json`` last).

The offline directory holds no firmware images (``fwsign add`` records only
their length and hashes); targets already signed in it are listed in the
result, since devices cannot download them until their bytes are uploaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from repo_metadata.errors import InvalidMetadataError, UpdateRejectedError
from repo_metadata.validation import load_metadata
from repo_metadata.verify import verify_root_chain
from update_server.audit.actions import Action
from update_server.config import ServerConfig
from update_server.publication import switch
from update_server.publication.errors import RejectedError
from update_server.publication.lock import publication_lock
from update_server.publication.release import check_root_fits_server, verify_roles
from update_server.publication.repository import (
    ONLINE_ROLES,
    OnlineRepository,
    SignerSource,
    role_file,
)

MAX_ROOT_VERSIONS = 10_000


@dataclass(frozen=True)
class ImportResult:
    """What the import published."""

    root: int
    roles: dict[str, int]
    snapshot: int
    timestamp: int
    #: Signed targets whose bytes the server does not have.
    targets_without_files: tuple[str, ...]


def import_repository(
    config: ServerConfig,
    signers: SignerSource,
    source_repo_dir: Path,
    now: datetime,
    *,
    before_timestamp: Callable[[], object] | None = None,
) -> ImportResult:
    """Verify the offline repository at ``source_repo_dir`` and publish it.

    Refuses (``RejectedError``) a server that already publishes a
    repository, and anything that does not verify.
    """
    with publication_lock(config.data_dir):
        switch.recover(config.repository_dir, switch.journal_path(config.data_dir))
        repo = OnlineRepository(config.repository_dir, now=now, signers=signers)
        if repo.is_initialised():
            raise RejectedError(
                "already-initialised",
                "this server already publishes a repository; change it with a release upload",
            )
        online = {role: signers(role).public_key for role in (Snapshot.type, Timestamp.type)}
        source = source_repo_dir / "metadata"
        roots = _root_versions(source)
        root = _verify_root_chain(roots, now)
        check_root_fits_server(root.signed, online)
        repo.stage(Root.type, root, roots[-1])
        verify_roles(repo, _reachable_roles(source), now=now, online_keys=online)
        repo.do_snapshot()
        repo.refresh_timestamp()
        files = [(role_file(Root.type, n), data) for n, data in enumerate(roots[:-1], start=1)]
        change = switch.Change(
            links=(),
            files=[*files, *repo.pending_files()],
            timestamp=repo.pending_timestamp(),
            action=Action.PUBLISH,
            object="repository:import",
        )
        switch.apply(
            config.repository_dir,
            switch.journal_path(config.data_dir),
            change,
            before_timestamp=before_timestamp,
        )
    versions = repo.staged_versions()
    return ImportResult(
        root=versions[Root.type],
        roles={r: v for r, v in versions.items() if r not in (Root.type, *ONLINE_ROLES)},
        snapshot=versions[Snapshot.type],
        timestamp=versions[Timestamp.type],
        targets_without_files=_signed_targets(repo),
    )


def _root_versions(source: Path) -> list[bytes]:
    """``1.root.json``, ``2.root.json``, ... up to the first gap; ``root.json`` is the last."""
    roots = []
    for version in range(1, MAX_ROOT_VERSIONS):
        file = source / f"{version}.root.json"
        if not file.is_file():
            break
        roots.append(file.read_bytes())
    current = source / "root.json"
    if not roots or not current.is_file():
        raise RejectedError(
            "missing-root", f"{source} has no 1.root.json and root.json: not a fwsign repository"
        )
    if current.read_bytes() != roots[-1]:
        raise RejectedError(
            "root-chain",
            f"{source}/root.json is not {len(roots)}.root.json; every root version must be kept",
        )
    return roots


def _verify_root_chain(roots: list[bytes], now: datetime) -> Metadata[Root]:
    try:
        return verify_root_chain(roots, trusted=None, now=now)
    except UpdateRejectedError as exc:
        raise RejectedError(exc.rule, f"root: {exc}") from None


def _reachable_roles(source: Path) -> dict[str, bytes]:
    """Targets and every role delegated below it, read from ``source``."""
    found: dict[str, bytes] = {}
    queue = [Targets.type]
    while queue:
        role = queue.pop(0)
        if role in found:
            continue
        file = source / f"{quote(role, safe='')}.json"
        if not file.is_file():
            raise RejectedError(
                "missing-role", f"{role} is delegated but {file} is missing; copy it from fwsign"
            )
        found[role] = file.read_bytes()
        queue.extend(_delegated(role, found[role]))
    return found


def _delegated(role: str, data: bytes) -> list[str]:
    try:
        signed = load_metadata(data, expected_type=Targets.type).signed
    except InvalidMetadataError as exc:
        raise RejectedError(exc.rule, f"{role}: {exc}") from None
    delegations = signed.delegations if isinstance(signed, Targets) else None
    if delegations is None:
        return []
    names = list(delegations.roles or {})
    if delegations.succinct_roles is not None:
        names.extend(delegations.succinct_roles.get_roles())
    return names


def _signed_targets(repo: OnlineRepository) -> tuple[str, ...]:
    paths: list[str] = []
    for role in repo.staged_versions():
        signed = repo.current_targets(role)
        if signed is not None:
            paths.extend(signed.targets)
    return tuple(sorted(paths))
