"""The tables of publication: one row per release upload session.

An upload session holds the verified roles (as the bytes that will be
published) and the targets whose bytes must be uploaded before publishing.
Firmware bytes are never in the database: they are staged on disk under
``<staging>/<id>/<sha256>``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from update_server.db import Base


class UploadState(StrEnum):
    OPEN = "open"
    PUBLISHED = "published"
    CANCELLED = "cancelled"
    #: Left open past ``ServerConfig.upload_lifetime``; staging removed, row kept.
    EXPIRED = "expired"


class ReleaseUpload(Base):
    """A release being uploaded: verified roles in, waiting for its targets."""

    __tablename__ = "release_uploads"

    #: Random (``secrets.token_hex``): an id cannot be guessed or enumerated.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), default=UploadState.OPEN)
    #: {role: metadata text}, in publication order (root, targets, delegations).
    roles: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: [ExpectedTarget.to_json()]: new or changed targets whose bytes must come.
    expected_targets: Mapped[list[Any]] = mapped_column(JSON)
    #: {role: published version when verified, or None}: tells 409 from 422.
    trusted_versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
