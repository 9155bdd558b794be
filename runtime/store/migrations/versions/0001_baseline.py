"""Baseline: the schema of release 0.1.0, adopting any database made before migrations.

Releases up to 0.1.0 made the schema with `create_all` and added new nullable columns and
indexes by hand at start. This revision brings any such database (or an empty one) to the
0.1.0 shape: missing tables are created, missing nullable columns and indexes added, the
audit log's append-only triggers (re)made. Rows are never touched, so the audit chain
verifies the same afterwards.

The tables below are frozen copies of 0.1.0's models, not runtime.store.models: later
revisions change the models, and this one must keep meaning what it meant.

One-way: there is no downgrade below the baseline (it would drop the audit log).

Revision ID: 0001_baseline
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

_meta = sa.MetaData()
_tz = sa.DateTime(timezone=True)

sa.Table(
    "jobs",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("job_type", sa.String(16), nullable=False),
    sa.Column("target", sa.String(200), nullable=True),
    sa.Column("requester", sa.String(200), nullable=False, index=True),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("decision", sa.JSON, nullable=False),
    sa.Column("classifier", sa.JSON, nullable=False),
    sa.Column("policy_hash", sa.String(64), nullable=False),
    sa.Column("tools_granted", sa.JSON, nullable=False),
    sa.Column("clarification", sa.JSON, nullable=True),
    sa.Column("pending_action", sa.JSON, nullable=True),
    sa.Column("approvals", sa.JSON, nullable=False),
    sa.Column("artifacts", sa.JSON, nullable=False),
    sa.Column("model", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("worker_id", sa.String(200), nullable=True),
    sa.Column("request_key", sa.String(200), nullable=True),
    sa.Column("reply_to", sa.JSON, nullable=True),
    sa.Column("team", sa.String(200), nullable=True, index=True),
    sa.Column("cost_usd", sa.Float, nullable=True),
    sa.Column("created_at", _tz, nullable=False),
    sa.Column("updated_at", _tz, nullable=False),
    sa.Index("ux_jobs_request_key", "request_key", unique=True),
)
sa.Table(
    "audit_events",
    _meta,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("job_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("artifacts", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_job_id", "job_id"),
)
sa.Table(
    "workers",
    _meta,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", _tz, nullable=False),
    sa.Column("heartbeat_at", _tz, nullable=False),
)
sa.Table(
    "outbox",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("door", sa.String(16), nullable=False, index=True),
    sa.Column("job_id", sa.Integer, nullable=False, index=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", _tz, nullable=False),
    sa.Column("delivered_at", _tz, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("not_before", _tz, nullable=True),
)
sa.Table(
    "door_threads",
    _meta,
    sa.Column("job_id", sa.Integer, primary_key=True),
    sa.Column("door", sa.String(16), primary_key=True),
    sa.Column("address", sa.JSON, nullable=False),
)
sa.Table(
    "routines",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=True, unique=True),
    sa.Column("owner", sa.String(200), nullable=False, index=True),
    sa.Column("schedule", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("misfire", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_by_job", sa.Integer, nullable=True),
    sa.Column("reply_to", sa.JSON, nullable=True),
    sa.Column("created_at", _tz, nullable=False),
    sa.Column("updated_at", _tz, nullable=False),
)
sa.Table(
    "routine_firings",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("routine_id", sa.Integer, nullable=False, index=True),
    sa.Column("due_at", _tz, nullable=False),
    sa.Column("fired_at", _tz, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("job_id", sa.Integer, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("instance", sa.String(200), nullable=False),
    sa.Index("ux_routine_firings_due", "routine_id", "due_at", unique=True),
)
sa.Table(
    "leases",
    _meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", _tz, nullable=False),
)

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
)

_POSTGRES_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION acp_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$",
    "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
    "CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION acp_audit_append_only()",
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
    "FOR EACH STATEMENT EXECUTE FUNCTION acp_audit_append_only()",
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    present = set(inspector.get_table_names())
    for table in _meta.sorted_tables:
        if table.name not in present:
            table.create(bind)
            continue
        # A table an older release made: add what it lacks, exactly as those releases did.
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise RuntimeError(
                    f"table {table.name} has no column {column.name}, which no release "
                    "made optional: this database was not made by agent-control-plane"
                )
            kind = column.type.compile(dialect=bind.dialect)
            op.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
        for index in table.indexes:
            index.create(bind, checkfirst=True)
    triggers = _SQLITE_TRIGGERS if bind.dialect.name == "sqlite" else _POSTGRES_TRIGGERS
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    raise RuntimeError("the baseline is one-way: going below it would drop the audit log")
