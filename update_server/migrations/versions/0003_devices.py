"""The device registry: enrolment tokens, devices, request nonces, technicians' sites.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

New tables only (issue 10, R10, R62); nothing existing changes, so the
downgrade drops them (a downgraded server knows no devices).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "enrolment_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("hardware_model", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("pre_authorized", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by", sa.String(length=64), nullable=True),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("hardware_model", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.JSON(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column(
            "enrolment_token_id",
            sa.Integer(),
            sa.ForeignKey("enrolment_tokens.id"),
            nullable=True,
        ),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_changed_by", sa.String(length=64), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("running_version", sa.String(length=64), nullable=True),
        sa.Column("slot", sa.String(length=8), nullable=True),
        sa.Column("security_floor", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("last_result", sa.String(length=64), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_report_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metadata_expires", sa.JSON(), nullable=True),
        sa.Column("log_head_seq", sa.Integer(), nullable=True),
        sa.Column("log_head_hash", sa.String(length=64), nullable=True),
        sa.Column("log_anchored_from", sa.Integer(), nullable=True),
        sa.Column("log_alert", sa.String(length=512), nullable=True),
        sa.Column("log_alert_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_devices_site", "devices", ["site"])
    op.create_table(
        "device_nonces",
        sa.Column("device_id", sa.String(length=64), primary_key=True),
        sa.Column("nonce", sa.String(length=128), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_device_nonces_seen_at", "device_nonces", ["seen_at"])
    op.create_table(
        "technician_sites",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("site", sa.String(length=64), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("technician_sites")
    op.drop_index("ix_device_nonces_seen_at", table_name="device_nonces")
    op.drop_table("device_nonces")
    op.drop_index("ix_devices_site", table_name="devices")
    op.drop_table("devices")
    op.drop_table("enrolment_tokens")
