"""Baseline: the schema as it was when migrations began (issue 9).

Revision ID: 0001
Revises: none
Create Date: 2026-12-01

The tables are written out here as a frozen ``MetaData`` (``BASELINE``), not
imported from the models: a migration describes one moment and must not
change when the models do. The same object lets ``fwserver db upgrade``
adopt a database made before migrations (M5): its schema must equal
``BASELINE`` exactly before it is stamped at this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

BASELINE = sa.MetaData()

sa.Table(
    "users",
    BASELINE,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("name", sa.String(length=64), nullable=False, unique=True),
    sa.Column("role", sa.String(length=32), nullable=False),
    sa.Column("password_hash", sa.String(length=255), nullable=False),
    sa.Column("must_change_password", sa.Boolean(), nullable=False),
    sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
    sa.Column("totp_enrolled", sa.Boolean(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_login_source", sa.String(length=64), nullable=True),
    sa.Column("failures_since_login", sa.Integer(), nullable=False),
)
sa.Table(
    "password_history",
    BASELINE,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer(),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("password_hash", sa.String(length=255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "login_throttle",
    BASELINE,
    sa.Column("name", sa.String(length=64), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
)
sa.Table(
    "login_source_throttle",
    BASELINE,
    sa.Column("source", sa.String(length=64), primary_key=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("failures", sa.Integer(), nullable=False),
)
sa.Table(
    "refusal_tallies",
    BASELINE,
    sa.Column("action", sa.String(length=64), primary_key=True),
    sa.Column("actor", sa.String(length=64), primary_key=True),
    sa.Column("source", sa.String(length=64), primary_key=True),
    sa.Column("route", sa.String(length=255), primary_key=True),
    sa.Column("reason", sa.String(length=64), primary_key=True),
    sa.Column("role", sa.String(length=32), nullable=False),
    sa.Column("status", sa.Integer(), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("later", sa.Integer(), nullable=False),
)
sa.Table(
    "used_totp",
    BASELINE,
    sa.Column(
        "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("step", sa.BigInteger(), primary_key=True),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "totp_last_step",
    BASELINE,
    sa.Column(
        "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("step", sa.BigInteger(), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    "sessions",
    BASELINE,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer(),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean(), nullable=False),
    sa.Column("login_step", sa.BigInteger(), nullable=False),
    sa.Column("source", sa.String(length=64), nullable=False),
)
sa.Table(
    "audit_log",
    BASELINE,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(length=64), nullable=False),
    sa.Column("role", sa.String(length=32), nullable=False),
    sa.Column("action", sa.String(length=64), nullable=False),
    sa.Column("object", sa.String(length=512), nullable=False),
    sa.Column("outcome", sa.String(length=16), nullable=False),
    sa.Column("source", sa.String(length=64), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(length=64), nullable=False),
    sa.Column("hash", sa.String(length=64), nullable=False, unique=True),
)
sa.Table(
    "audit_checkpoints",
    BASELINE,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("head_hash", sa.String(length=64), nullable=False),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("keyid", sa.String(length=64), nullable=False),
    sa.Column("signature", sa.Text(), nullable=False),
    sa.UniqueConstraint("seq"),
)
sa.Table(
    "release_uploads",
    BASELINE,
    sa.Column("id", sa.String(length=32), primary_key=True),
    sa.Column(
        "user_id",
        sa.Integer(),
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("roles", sa.JSON(), nullable=False),
    sa.Column("expected_targets", sa.JSON(), nullable=False),
    sa.Column("trusted_versions", sa.JSON(), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
)


def upgrade() -> None:
    BASELINE.create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    BASELINE.drop_all(op.get_bind(), checkfirst=False)
