"""The failsafe freeze: the server mode and the officers' votes to leave it (issue 11).

R24, R33, R34, R40, R59.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A new table only, ``freeze_state``: one row (made at the first freeze)
holding the mode, who froze and why, who lifted it, and the pending first
vote to lift it. No row is a server that was never frozen (normal). The
downgrade drops it: refused while the server is frozen, since an older
fwserver has no freeze and would silently lift it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "freeze_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("frozen_by", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("lifted_by", sa.String(length=130), nullable=True),
        sa.Column("vote_by", sa.String(length=64), nullable=True),
        sa.Column("vote_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    bind = op.get_bind()
    frozen = bind.execute(sa.text("SELECT count(*) FROM freeze_state WHERE mode = 'frozen'"))
    if frozen.scalar_one():
        raise RuntimeError(
            "the server is frozen: two security officers lift the freeze before a downgrade"
        )
    op.drop_table("freeze_state")
