"""Publishing an uploaded release: re-verify, sign, switch, audit (R13, R27).

Under the publication lock (one writer across workers), ``publish_release``
recovers any interrupted change, re-verifies the release against the
*current* published state (409 if that moved under it, 422 if the release
no longer holds on its own), checks that every expected target is staged,
signs a new snapshot and timestamp with the online keys and switches the
repository (``switch.apply``: ``timestamp.json`` last). Its audit entries
(``release.publish``, one ``key.use`` per online key) are committed just
before the commit point: if they cannot be written, nothing is published.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from securesystemslib.signer import Key, Signer
from sqlalchemy.orm import Session, sessionmaker
from tuf.api.metadata import Snapshot, Timestamp

from update_server import audit
from update_server.audit import Actor, audit_event
from update_server.audit.actions import Action
from update_server.config import ServerConfig
from update_server.db import after_commit_error, transaction
from update_server.freeze.state import refuse_if_frozen
from update_server.publication import switch
from update_server.publication.errors import (
    ExpiredError,
    RejectedError,
    StaleError,
    UnknownReleaseError,
    storage_refusals,
)
from update_server.publication.lock import publication_lock
from update_server.publication.models import ReleaseUpload, UploadState
from update_server.publication.release import (
    CheckedRelease,
    ExpectedTarget,
    check_release,
    load_roles,
)
from update_server.publication.repository import OnlineRepository, target_file
from update_server.publication.upload import staged_file
from update_server.users import aware

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "fwserver"
SYSTEM_ROLE = "system"


class ServicesLike(Protocol):
    """What publication needs of ``app.Services`` (config, database, online keys)."""

    config: ServerConfig
    sessions: sessionmaker[Session]

    def signer(self, role: str) -> Signer: ...


@dataclass(frozen=True)
class Published:
    """What a publication, renewal or import made visible."""

    roles: dict[str, int]
    snapshot: int
    timestamp: int

    def to_json(self) -> dict[str, Any]:
        return {"published": self.roles, "snapshot": self.snapshot, "timestamp": self.timestamp}


def online_keys(services: ServicesLike) -> dict[str, Key]:
    """Public keys of the server's snapshot and timestamp signers."""
    return {role: services.signer(role).public_key for role in (Snapshot.type, Timestamp.type)}


def staging_dir(config: ServerConfig, upload_id: str) -> Path:
    return config.staging_dir / upload_id


def system_actor() -> Actor:
    return Actor(SYSTEM_ACTOR, SYSTEM_ROLE, "")


# --- publish -------------------------------------------------------------------


def publish_release(
    services: ServicesLike, upload_id: str, *, user_id: int, actor: Actor, now: datetime
) -> Published:
    """Publish upload ``upload_id`` of user ``user_id``, or raise a ``PublicationError``."""
    config = services.config
    # A full or read-only disk: the switch is rolled back, the upload stays open.
    with storage_refusals(f"publishing release {upload_id}"), publication_lock(config.data_dir):
        recover(services, now=now)
        upload = _open_upload(services, upload_id, user_id, now)
        repo = OnlineRepository(config.repository_dir, now=now, signers=services.signer)
        checked = _recheck(services, repo, upload, now)
        links = _staged_links(config, upload_id, checked.targets)
        repo.do_snapshot(force=True)  # a root-only release gets a new snapshot too
        repo.refresh_timestamp()
        versions = repo.staged_versions()
        signed = {role: versions[role] for role in (Snapshot.type, Timestamp.type)}
        published = Published(checked.roles, signed[Snapshot.type], signed[Timestamp.type])
        change = switch.Change(
            links=links,
            files=repo.pending_files(),
            timestamp=repo.pending_timestamp(),
            action=Action.PUBLISH,
            object=f"release:{upload_id}",
            upload_id=upload_id,
            staging=staging_dir(config, upload_id),
        )
        switch_with_audit(
            services, change, actor=actor, now=now, signed=signed, detail=published.to_json()
        )
    return published


def open_upload(
    db: Session, upload_id: str, *, user_id: int, now: datetime, lifetime: timedelta
) -> ReleaseUpload:
    """Upload ``upload_id`` of user ``user_id`` if it may still change, or raise.

    Unknown or someone else's: ``UnknownReleaseError`` (the same for both,
    so ids cannot be probed). Past its lifetime: ``ExpiredError``, by the
    clock, even before a sweep marked it. Published or cancelled:
    ``StaleError``.
    """
    upload = db.get(ReleaseUpload, upload_id)
    if upload is None or upload.user_id != user_id:
        raise UnknownReleaseError("unknown-release", f"no release {upload_id} of yours")
    ends = expires_at(upload, lifetime)
    if upload.state == UploadState.EXPIRED or (upload.state == UploadState.OPEN and now >= ends):
        raise ExpiredError(
            "release-expired",
            f"release {upload_id} expired at {ends:%Y-%m-%dT%H:%M:%SZ} (an upload stays open"
            f" {_duration(lifetime)}, then its staged files are removed); start a new upload"
            " (POST /api/v1/releases, or run fwsign publish again) and publish it in time",
        )
    if upload.state != UploadState.OPEN:
        raise StaleError(
            "release-closed", f"release {upload_id} is {upload.state}; upload a new one"
        )
    return upload


def expires_at(upload: ReleaseUpload, lifetime: timedelta) -> datetime:
    return aware(upload.created_at) + lifetime


def _duration(lifetime: timedelta) -> str:
    minutes = int(lifetime.total_seconds()) // 60
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def _open_upload(
    services: ServicesLike, upload_id: str, user_id: int, now: datetime
) -> ReleaseUpload:
    with transaction(services.sessions) as db:
        return open_upload(
            db, upload_id, user_id=user_id, now=now, lifetime=services.config.upload_lifetime
        )


def _recheck(
    services: ServicesLike, repo: OnlineRepository, upload: ReleaseUpload, now: datetime
) -> CheckedRelease:
    # The bytes verified at upload, parsed once and verified again: what is
    # published is exactly what this check read.
    stored = {role: str(text).encode() for role, text in upload.roles.items()}
    try:
        return check_release(
            repo,
            load_roles(stored),
            now=now,
            online_keys=online_keys(services),
            max_target_bytes=services.config.max_upload_bytes,
        )
    except RejectedError as exc:
        fresh = OnlineRepository(repo.directory, now=now)
        moved = [
            role
            for role, version in upload.trusted_versions.items()
            if fresh.published_version(role) != version
        ]
        if moved:
            raise StaleError(
                "trusted-state-changed",
                f"the published {', '.join(sorted(moved))} changed since this release was"
                f" uploaded and it no longer verifies ({exc.message}); rebuild it on the"
                " current repository and upload it again",
            ) from None
        raise


def _staged_links(
    config: ServerConfig, upload_id: str, targets: tuple[ExpectedTarget, ...]
) -> list[tuple[Path, str]]:
    links: list[tuple[Path, str]] = []
    for target in targets:
        source = staged_file(staging_dir(config, upload_id), target)
        if not source.is_file() or source.stat().st_size != target.length:
            raise StaleError(
                "target-missing",
                f"{target.path} has not been uploaded yet: PUT its bytes to"
                f" /api/v1/releases/{upload_id}/targets/{target.path}",
            )
        links.extend(
            (source, target_file(target.path, digest)) for digest in set(target.hashes.values())
        )
    return links


def switch_with_audit(
    services: ServicesLike,
    change: switch.Change,
    *,
    actor: Actor,
    now: datetime,
    signed: Mapping[str, int],
    detail: Mapping[str, Any],
) -> None:
    """Apply ``change``; its audit entries commit just before ``timestamp.json``.

    ``signed`` maps each online role signed for the change to its new
    version (one ``key.use`` entry each). On failure the change is undone,
    the upload (if any) stays open, and the failure is recorded.
    """
    config = services.config
    db = services.sessions()
    unanchored: Exception | None = None
    try:
        if change.upload_id is not None:
            # F3 again, in the transaction that commits the publication: a freeze
            # entered while this release was being checked and signed stops it
            # here (the renewal, which has no upload, goes on while frozen).
            refuse_if_frozen(db)
            upload = db.get(ReleaseUpload, change.upload_id)
            if upload is not None:
                upload.state = UploadState.PUBLISHED
                upload.published_at = now
        audit.append(
            db,
            audit_event(
                Action(change.action),
                actor=actor,
                object=change.object,
                outcome="success",
                time=now,
                detail=detail,
            ),
        )
        for role, version in signed.items():
            keyid = services.signer(role).public_key.keyid
            audit.append(
                db,
                audit_event(
                    Action.KEY_USE,
                    actor=actor,
                    object=f"key:{role}",
                    outcome="success",
                    time=now,
                    detail={
                        "keyid": keyid,
                        "signed": f"{role} v{version}",
                        "purpose": change.action,
                    },
                ),
            )
        switch.apply(
            config.repository_dir,
            switch.journal_path(config.data_dir),
            change,
            before_timestamp=db.commit,
        )
        # R27/R28: switched and committed, but if its entries could not be
        # anchored the change is not answered as done (raised past the undo).
        unanchored = after_commit_error(db)
    except BaseException as exc:
        db.rollback()
        _record_failure(services, change, actor, now, reason=str(exc) or type(exc).__name__)
        raise
    finally:
        db.close()
    if unanchored is not None:
        raise unanchored


def _record_failure(
    services: ServicesLike, change: switch.Change, actor: Actor, now: datetime, *, reason: str
) -> None:
    """After a failed switch: the upload stays open, and the log says what failed."""
    try:
        with transaction(services.sessions) as db:
            if change.upload_id is not None:
                upload = db.get(ReleaseUpload, change.upload_id)
                if upload is not None and upload.state == UploadState.PUBLISHED:
                    upload.state = UploadState.OPEN
                    upload.published_at = None
            audit.append(
                db,
                audit_event(
                    Action(change.action),
                    actor=actor,
                    object=change.object,
                    outcome="failure",
                    time=now,
                    detail={"reason": reason[:500], "rolled_back": True},
                ),
            )
    except Exception:  # the failure being reported matters more than this one
        logger.exception("could not record the failure of %s", change.object)


# --- recovery --------------------------------------------------------------------


def recover(services: ServicesLike, *, now: datetime) -> switch.Recovered | None:
    """Finish or undo a change a dead process left; hold the lock when calling."""
    config = services.config
    found = switch.recover(config.repository_dir, switch.journal_path(config.data_dir))
    if found is None:
        return None
    with transaction(services.sessions) as db:
        upload = None if found.upload_id is None else db.get(ReleaseUpload, found.upload_id)
        if upload is not None:
            upload.state = UploadState.PUBLISHED if found.committed else UploadState.OPEN
            upload.published_at = now if found.committed else None
        outcome = "success" if found.committed else "failure"
        audit.append(
            db,
            audit_event(
                Action(found.action),
                actor=system_actor(),
                object=found.object,
                outcome=outcome,
                time=now,
                detail={"interrupted": True, "committed": found.committed},
            ),
        )
    return found


# --- cancel ------------------------------------------------------------------------


def cancel_release(services: ServicesLike, upload_id: str, *, user_id: int, now: datetime) -> None:
    """Close an open upload and remove its staged files."""
    config = services.config
    with publication_lock(config.data_dir):
        with transaction(services.sessions) as db:
            upload = open_upload(
                db, upload_id, user_id=user_id, now=now, lifetime=config.upload_lifetime
            )
            upload.state = UploadState.CANCELLED
        shutil.rmtree(staging_dir(config, upload_id), ignore_errors=True)
