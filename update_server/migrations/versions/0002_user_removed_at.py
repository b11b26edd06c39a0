"""A removed person is marked by ``users.removed_at``, no longer by their password hash.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Before this revision ``fwserver user remove`` left a tombstone: the person
disabled, with the marker ``!removed`` for a password hash. This revision
adds the nullable ``removed_at`` column and converts every tombstone:

- ``removed_at`` is the time of the removal as the audit log recorded it
  (the newest successful ``user.change`` entry for ``user:<name>`` whose
  detail is ``{"change": "remove", ...}``); the users table keeps no other
  time of it. A tombstone the audit log has no such entry for gets the time
  of this migration (the wall clock, UTC): it was removed at that time at
  the latest.
- the password hash becomes ``!``, which is no argon2 hash, so no password
  verifies against it (as ``!`` in shadow(5)), exactly as the marker was;
  the person stays disabled.

The audit log is only read, never written (it is hash-chained). Nothing is
imported from the application: the tables, marker and values are written
out here, as they were at this revision.

``downgrade`` writes the marker back for every removed person before the
column goes, so the older fwserver still sees them as removed (a removed
name must never come back).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

#: The password hash that marked a removed person up to revision 0001.
TOMBSTONE_MARKER = "!removed"
#: The password hash of a removed person from this revision on: nothing verifies it.
UNUSABLE_HASH = "!"

_users = sa.table(
    "users",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String(length=64)),
    sa.column("password_hash", sa.String(length=255)),
    sa.column("disabled", sa.Boolean()),
    sa.column("removed_at", sa.DateTime(timezone=True)),
)
_audit_log = sa.table(
    "audit_log",
    sa.column("seq", sa.BigInteger()),
    sa.column("time", sa.DateTime(timezone=True)),
    sa.column("action", sa.String(length=64)),
    sa.column("object", sa.String(length=512)),
    sa.column("outcome", sa.String(length=16)),
    sa.column("detail", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    now = datetime.now(UTC)
    tombstones = bind.execute(
        sa.select(_users.c.id, _users.c.name).where(_users.c.password_hash == TOMBSTONE_MARKER)
    ).all()
    for user_id, name in tombstones:
        bind.execute(
            sa.update(_users)
            .where(_users.c.id == user_id)
            .values(
                removed_at=_removal_time(bind, name) or now,
                password_hash=UNUSABLE_HASH,
                disabled=True,
            )
        )


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(
        sa.update(_users)
        .where(_users.c.removed_at.is_not(None))
        .values(password_hash=TOMBSTONE_MARKER, disabled=True)
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("removed_at")


def _removal_time(bind: sa.Connection, name: str) -> datetime | None:
    """When the audit log says ``name`` was removed, or None if it does not say."""
    entries = bind.execute(
        sa.select(_audit_log.c.time, _audit_log.c.detail)
        .where(
            _audit_log.c.action == "user.change",
            _audit_log.c.object == f"user:{name}",
            _audit_log.c.outcome == "success",
        )
        .order_by(_audit_log.c.seq.desc())
    )
    for time, detail in entries:
        if _is_removal(detail):
            at: datetime = time
            # SQLite gives naive datetimes back; every time stored is UTC.
            return at if at.tzinfo else at.replace(tzinfo=UTC)
    return None


def _is_removal(detail: str) -> bool:
    try:
        parsed = json.loads(detail)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("change") == "remove"
