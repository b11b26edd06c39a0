"""Deployments: groups, waves, per-device status, maintenance windows (issue 11, R9).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

New tables only (``update_server.deployments.models``); the downgrade drops them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "device_groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=64), nullable=False, unique=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("criteria", sa.JSON(), nullable=True),
        sa.Column("window_days", sa.String(length=32), nullable=True),
        sa.Column("window_start", sa.String(length=5), nullable=True),
        sa.Column("window_minutes", sa.Integer(), nullable=True),
        sa.Column("window_timezone", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "device_group_members",
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("device_groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("device_id", sa.String(length=64), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("added_by", sa.String(length=64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_device_group_members_device_id", "device_group_members", ["device_id"])
    op.create_table(
        "fleet_settings",
        sa.Column("hardware_model", sa.String(length=64), primary_key=True),
        sa.Column("install", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("target_path", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("fleets", sa.JSON(), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("wave_sizes", sa.JSON(), nullable=False),
        sa.Column("success_percent", sa.Integer(), nullable=False),
        sa.Column("failure_percent", sa.Integer(), nullable=False),
        sa.Column("waves_started", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state_changed_by", sa.String(length=64), nullable=True),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=512), nullable=True),
    )
    op.create_index("ix_deployments_state", "deployments", ["state"])
    op.create_table(
        "deployment_devices",
        sa.Column(
            "deployment_id",
            sa.Integer(),
            sa.ForeignKey("deployments.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("device_id", sa.String(length=64), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=512), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_deployment_devices_device_id", "deployment_devices", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_deployment_devices_device_id", table_name="deployment_devices")
    op.drop_table("deployment_devices")
    op.drop_index("ix_deployments_state", table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("fleet_settings")
    op.drop_index("ix_device_group_members_device_id", table_name="device_group_members")
    op.drop_table("device_group_members")
    op.drop_table("device_groups")
