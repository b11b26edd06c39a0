"""Technicians' authorizations: each one issued, its signed document and its outcome.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

A new table only (issue 10, R9, R58); the downgrade drops it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "authorizations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("nonce", sa.String(length=64), nullable=False, unique=True),
        sa.Column("device_id", sa.String(length=64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("target_path", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("technician", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grace_seconds", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_authorizations_device_id", "authorizations", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_authorizations_device_id", table_name="authorizations")
    op.drop_table("authorizations")
