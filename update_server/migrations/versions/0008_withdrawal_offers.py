"""Withdrawn releases: the successor offered to each device that runs one (issue 11, R56, R57).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

One new table (``update_server.deployments.models.WithdrawalOffer``); the
downgrade drops it (an older server offers no successor: its devices still
report running a release missing from the signed set).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "withdrawal_offers",
        sa.Column("device_id", sa.String(length=64), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("running_version", sa.String(length=64), nullable=False),
        sa.Column("target_path", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("withdrawal_offers")
