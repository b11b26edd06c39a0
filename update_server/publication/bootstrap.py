"""Importing the first repository made offline with ``fwsign`` (``fwserver import``).

Nothing is taken on trust: the root chain is walked from ``1.root.json``
(each version signed by the threshold of the one before and of itself), the
final root must keep consistent snapshots and name the server's own online
keys, and targets and every delegated role reachable from it are verified
top-down with ``verify_update``, exactly as a later upload would be. Then
the server signs snapshot v1 and timestamp v1 and publishes everything
through the same journaled switch as a release (``timestamp.json`` last).

The offline directory holds no firmware images (``fwsign add`` records only
their length and hashes): the files of the signed targets come from
``targets_dir``, each checked against its signed length and hashes and
published by the same switch (``target_files``). A signed target without a
file refuses the import, unless ``allow_missing_files``: then it is listed
in the result, and devices cannot download it until its bytes are uploaded
(``PUT /api/v1/targets/<path>``, which ``fwsign publish`` uses).
"""

from __future__ import annotations

import shutil
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
from update_server.publication.errors import RejectedError, storage_refusals
from update_server.publication.lock import publication_lock
from update_server.publication.release import (
    check_root_fits_server,
    expected_targets,
    load_roles,
    verify_roles,
)
from update_server.publication.repository import (
    ONLINE_ROLES,
    OnlineRepository,
    SignerSource,
    role_file,
)
from update_server.publication.target_files import ImportFiles, stage_import_files

MAX_ROOT_VERSIONS = 10_000


@dataclass(frozen=True)
class ImportResult:
    """What the import published."""

    root: int
    roles: dict[str, int]
    snapshot: int
    timestamp: int
    #: Signed targets whose file was verified and published with the import.
    targets_stored: tuple[str, ...]
    #: Signed targets whose bytes the server does not have (``allow_missing_files``).
    targets_without_files: tuple[str, ...]


def import_repository(
    config: ServerConfig,
    signers: SignerSource,
    source_repo_dir: Path,
    now: datetime,
    *,
    before_timestamp: Callable[[], object] | None = None,
    targets_dir: Path | None = None,
    allow_missing_files: bool = False,
) -> ImportResult:
    """Verify the offline repository at ``source_repo_dir`` and publish it.

    Refuses (``RejectedError``) a server that already publishes a
    repository, anything that does not verify, a file in ``targets_dir``
    that is not the signed one, and (unless ``allow_missing_files``) a
    signed target without a file.
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
        verify_roles(repo, load_roles(_reachable_roles(source)), now=now, online_keys=online)
        signed = expected_targets(repo, max_target_bytes=config.max_upload_bytes)
        with storage_refusals("importing target files"):
            firmware = stage_import_files(config, signed, targets_dir)
        try:
            if firmware.missing and not allow_missing_files:
                raise RejectedError("target-missing", _missing_message(firmware, targets_dir))
            repo.do_snapshot()
            repo.refresh_timestamp()
            files = [(role_file(Root.type, n), data) for n, data in enumerate(roots[:-1], 1)]
            change = switch.Change(
                links=firmware.links,
                files=[*files, *repo.pending_files()],
                timestamp=repo.pending_timestamp(),
                action=Action.PUBLISH,
                object="repository:import",
                staging=firmware.staging,
            )
            switch.apply(
                config.repository_dir,
                switch.journal_path(config.data_dir),
                change,
                before_timestamp=before_timestamp,
            )
        finally:
            shutil.rmtree(firmware.staging, ignore_errors=True)
    versions = repo.staged_versions()
    return ImportResult(
        root=versions[Root.type],
        roles={r: v for r, v in versions.items() if r not in (Root.type, *ONLINE_ROLES)},
        snapshot=versions[Snapshot.type],
        timestamp=versions[Timestamp.type],
        targets_stored=tuple(sorted({t.path for t in signed} - set(firmware.missing))),
        targets_without_files=firmware.missing,
    )


def _missing_message(firmware: ImportFiles, targets_dir: Path | None) -> str:
    count, shown = len(firmware.missing), ", ".join(firmware.missing[:10])
    more = f" and {count - 10} more" if count > 10 else ""
    where = f"not found in {targets_dir}" if targets_dir else "no --targets-dir given"
    return (
        f"{count} signed target(s) have no file ({where}): {shown}{more}; give the"
        " directory holding the signed firmware files (--targets-dir, where fwsign add"
        " --targets-dir put them), or import without them (--allow-missing-files) and"
        " upload them later with fwsign publish; nothing was published"
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
