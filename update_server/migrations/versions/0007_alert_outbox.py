"""Alerts: the durable outbox of webhook deliveries (issue 11, R31).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Placeholder in the migration line, filled by the change that adds these tables.
"""

from __future__ import annotations

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
