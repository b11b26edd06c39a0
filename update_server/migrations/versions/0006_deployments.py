"""Deployments: groups, waves, per-device status, maintenance windows (issue 11, R9).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Placeholder in the migration line, filled by the change that adds these tables.
"""

from __future__ import annotations

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
