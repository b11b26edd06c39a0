"""Housekeeping of uploads: abandoned ones expire, staging nobody owns goes.

An upload that nobody publishes or cancels would keep its row open and its
firmware in staging for ever. ``sweep`` closes every upload open for longer
than ``ServerConfig.upload_lifetime``: its state becomes ``expired`` (the
row stays: the history is kept) with one ``release.expire`` audit entry
each, committed together before any file goes. Then it removes every
staging directory that belongs to no open upload, those of the uploads
just expired among them. It holds the publication lock, so no file is
removed while a publication links from staging, and a publication that
got the lock first has closed its upload before the sweep looks.

It runs on each tick of the renewal thread, at the start of each new
upload (only if the lock is free) and by ``fwserver repo sweep``. Between
two sweeps the clock alone refuses an overdue upload (``open_upload``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from update_server import audit
from update_server.audit import audit_event
from update_server.audit.actions import Action
from update_server.db import transaction
from update_server.models import User
from update_server.publication.lock import publication_lock
from update_server.publication.models import ReleaseUpload, UploadState
from update_server.publication.publish import ServicesLike, system_actor
from update_server.users import aware


@dataclass(frozen=True)
class Swept:
    """What one sweep did: uploads expired, staging directories removed."""

    expired: tuple[str, ...]
    removed: tuple[str, ...]


def sweep(services: ServicesLike, *, now: datetime, wait: float = 0.0) -> Swept:
    """Expire overdue uploads, then remove staging no open upload owns.

    Waits up to ``wait`` seconds for the publication lock (``BusyError``).
    """
    with publication_lock(services.config.data_dir, timeout=wait):
        expired = _expire_overdue(services, now)
        removed = _sweep_staging(services)
    return Swept(tuple(expired), tuple(removed))


def _expire_overdue(services: ServicesLike, now: datetime) -> list[str]:
    """Mark uploads open past their lifetime expired, each with its audit entry."""
    lifetime = services.config.upload_lifetime
    with transaction(services.sessions) as db:
        overdue = db.execute(
            select(ReleaseUpload, User.name)
            .join(User, User.id == ReleaseUpload.user_id)
            .where(
                ReleaseUpload.state == UploadState.OPEN,
                ReleaseUpload.created_at <= now - lifetime,
            )
            .order_by(ReleaseUpload.created_at, ReleaseUpload.id)
        ).all()
        for upload, uploader in overdue:
            upload.state = UploadState.EXPIRED
            opened = aware(upload.created_at)
            audit.append(
                db,
                audit_event(
                    Action.UPLOAD_EXPIRE,
                    actor=system_actor(),
                    object=f"release:{upload.id}",
                    outcome="success",
                    time=now,
                    detail={
                        "uploader": uploader,
                        "opened": opened.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "lifetime_seconds": int(lifetime.total_seconds()),
                    },
                ),
            )
        return [upload.id for upload, _uploader in overdue]


def _sweep_staging(services: ServicesLike) -> list[str]:
    """Remove staging directories of uploads no longer open; hold the lock when calling.

    Besides those of uploads just expired, a target upload racing a
    publication, a cancellation or an expiry of its release can re-create
    its staging directory after that removed it; nothing else may leave
    one behind.
    """
    staging = services.config.staging_dir
    names = [entry.name for entry in staging.iterdir()] if staging.is_dir() else []
    if not names:
        return []
    with transaction(services.sessions) as db:
        still_open = set(
            db.scalars(
                select(ReleaseUpload.id).where(
                    ReleaseUpload.id.in_(names), ReleaseUpload.state == UploadState.OPEN
                )
            )
        )
    removed = sorted(set(names) - still_open)
    for name in removed:
        target = staging / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
    return removed
