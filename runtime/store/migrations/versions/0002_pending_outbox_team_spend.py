"""Indexes for the two queries that grow with history: pending outbox items, team spend.

- Delivery polls `outbox WHERE door = ? AND delivered_at IS NULL ORDER BY id` every second.
  The index on `door` alone walks every message ever delivered through that door; a partial
  index over the undelivered ones stays as small as the backlog.
- A budget check sums `jobs.cost_usd WHERE team = ? AND created_at >= ?`; the index on `team`
  alone reads every job the team ever ran. (team, created_at) reads only today's.

Indexes only: no row changes. Downgrade restores 0.1.0's two indexes.

Revision ID: 0002_pending_outbox_team_spend
Revises: 0001_baseline
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_pending_outbox_team_spend"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

_UNDELIVERED = sa.text("delivered_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["door", "id"],
        sqlite_where=_UNDELIVERED,
        postgresql_where=_UNDELIVERED,
    )
    op.drop_index("ix_outbox_door", table_name="outbox")
    op.create_index("ix_jobs_team_created", "jobs", ["team", "created_at"])
    op.drop_index("ix_jobs_team", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_team", "jobs", ["team"])
    op.drop_index("ix_jobs_team_created", table_name="jobs")
    op.create_index("ix_outbox_door", "outbox", ["door"])
    op.drop_index("ix_outbox_pending", table_name="outbox")
