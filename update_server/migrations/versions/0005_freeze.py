"""The failsafe freeze: the server mode and the officers' votes to leave it (issue 11).

R24, R33, R34, R40, R59.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Placeholder in the migration line, filled by the change that adds these tables.
"""

from __future__ import annotations

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
