"""Firmware files of signed targets: brought by an import, or later for a published target.

Two ways in, one rule. ``fwserver import --targets-dir DIR`` brings the files
of the repository it imports (``stage_import_files``), published by the same
switch as the metadata; ``PUT /api/v1/targets/<path>`` brings the file of a
target the repository already publishes but has no bytes for (an import
with ``--allow-missing-files``): ``published_target``, ``receive_published``
then ``link_published``. Either way the bytes go through ``upload.receive``
(reading stops past the signed length, every signed hash is checked, the
file is written whole or not at all) before a device can see them.

F1 Only a target the published metadata lists is received (else 404); only
its signed length and hashes are accepted (else 422, nothing kept).
F2 A target whose files are all present is not received again (409); a
file already in the repository is never replaced.
F3 A received file appears under each of its consistent-snapshot names
(``targets/<dir>/<digest>.<name>``) as a hard link made under the
publication lock, so it is whole when it appears and a publication running
at the same time never sees half of it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fwcommon.files import fsync_dir
from repo_metadata.paths import local_target_file
from update_server.config import ServerConfig
from update_server.publication.errors import (
    PublicationError,
    RejectedError,
    StaleError,
    storage_refusals,
)
from update_server.publication.lock import publication_lock
from update_server.publication.release import ExpectedTarget, check_target
from update_server.publication.repository import OnlineRepository, target_file
from update_server.publication.upload import Readable, receive, staged_file


class UnknownTargetError(PublicationError):
    """The published metadata lists no such target (HTTP 404)."""


@dataclass(frozen=True)
class ImportFiles:
    """The target files an import brings: links for the switch, and what has no file."""

    links: list[tuple[Path, str]]
    staging: Path
    missing: tuple[str, ...]


def consistent_names(target: ExpectedTarget) -> list[str]:
    """Each name ``target``'s bytes are published under, relative to the repository."""
    return sorted({target_file(target.path, digest) for digest in target.hashes.values()})


def missing_names(repository_dir: Path, target: ExpectedTarget) -> list[str]:
    return [name for name in consistent_names(target) if not (repository_dir / name).is_file()]


# --- fwserver import --targets-dir ----------------------------------------------


def stage_import_files(
    config: ServerConfig, targets: Iterable[ExpectedTarget], targets_dir: Path | None
) -> ImportFiles:
    """Verify and stage the file of every target found in ``targets_dir``.

    A file that is not the signed bytes refuses the import (``RejectedError``
    naming the file); the staging directory is the switch's to remove.
    """
    staging = config.staging_dir / f"import-{secrets.token_hex(8)}"
    links: list[tuple[Path, str]] = []
    missing: list[str] = []
    try:
        for target in targets:
            found = None if targets_dir is None else local_target_file(targets_dir, target.path)
            if found is None:
                missing.append(target.path)
                continue
            _stage_one(found, target, staging, limit=config.max_upload_bytes)
            staged = staged_file(staging, target)
            links.extend((staged, name) for name in consistent_names(target))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ImportFiles(links, staging, tuple(sorted(missing)))


def _stage_one(source: Path, target: ExpectedTarget, staging: Path, *, limit: int) -> None:
    try:
        with source.open("rb") as stream:
            receive(stream, target, directory=staging, limit=limit)
    except PublicationError as exc:
        raise RejectedError(
            exc.rule,
            f"{source} is not the file signed as {target.path}: {exc.message}",
        ) from None


# --- PUT /api/v1/targets/<path> ----------------------------------------------------


def published_target(config: ServerConfig, path: str, *, now: datetime) -> ExpectedTarget:
    """The target ``path`` as the published metadata signs it, or ``UnknownTargetError`` (F1)."""
    repo = OnlineRepository(config.repository_dir, now=now)
    repo.require_initialised()
    listed = repo.published_target(path)
    if listed is not None:
        return check_target(listed, max_bytes=config.max_upload_bytes)
    raise UnknownTargetError(
        "unknown-target",
        f"{path[:300]!r} is not a target of the published repository: publish the release"
        " that signs it (fwsign publish)",
    )


def check_missing(config: ServerConfig, target: ExpectedTarget) -> None:
    """F2: ``StaleError`` if every file of ``target`` is published already."""
    if not missing_names(config.repository_dir, target):
        raise StaleError(
            "target-present",
            f"the server already has the file of {target.path}; nothing to upload",
        )


def receive_published(
    config: ServerConfig, stream: Readable, target: ExpectedTarget, *, declared: int | None
) -> Path:
    """Stream the bytes of ``target`` aside, checked (F1); the staged file.

    Each request stages in a directory of its own: two uploads of one
    target at the same time never share a file.
    """
    directory = config.incoming_dir / secrets.token_hex(8)
    limit = config.max_upload_bytes
    try:
        receive(stream, target, directory=directory, limit=limit, declared=declared)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return staged_file(directory, target)


def link_published(
    config: ServerConfig, target: ExpectedTarget, staged: Path, *, now: datetime
) -> list[str]:
    """F3: publish ``staged`` under each missing name of ``target``; the names linked.

    Under the publication lock the target must still be published with the
    same bytes (a release may have replaced it meanwhile: ``StaleError``).
    """
    try:
        with storage_refusals(f"storing {target.path}"), publication_lock(config.data_dir):
            if published_target(config, target.path, now=now) != target:
                raise StaleError(
                    "target-changed",
                    f"{target.path} was signed anew while its file was uploaded; upload the"
                    " file the published metadata now signs",
                )
            return _link(
                config.repository_dir, staged, missing_names(config.repository_dir, target)
            )
    finally:
        shutil.rmtree(staged.parent, ignore_errors=True)


def _link(repository_dir: Path, staged: Path, names: list[str]) -> list[str]:
    linked: list[str] = []
    for name in names:
        destination = repository_dir / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # F2: never over a file that is there
            os.link(staged, destination)
            linked.append(name)
        fsync_dir(destination.parent)
    return linked
