"""Policy loads: every policy the service put in force, by hash, when, from where and by whom.

Revision ID: 0004_policy_loads
Revises: 0003_api_tokens
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_policy_loads"
down_revision = "0003_api_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_loads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("policy_hash", sa.String(64), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_policy_loads_policy_hash", "policy_loads", ["policy_hash"])


def downgrade() -> None:
    op.drop_index("ix_policy_loads_policy_hash", table_name="policy_loads")
    op.drop_table("policy_loads")
