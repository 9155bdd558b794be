"""SQLAlchemy 2 typed tables: jobs, the audit log, workers, the outbox to front doors.

The audit table is append-only: the database refuses UPDATE and DELETE on it (triggers made
by the baseline migration). Every change here needs its migration in migrations/versions/;
tests/runtime/test_db_migrations.py fails while the two disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    job_type: Mapped[str] = mapped_column(String(16))
    target: Mapped[str | None] = mapped_column(String(200))
    requester: Mapped[str] = mapped_column(String(200), index=True)
    origin: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    classifier: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    policy_hash: Mapped[str] = mapped_column(String(64))
    tools_granted: Mapped[list[Any]] = mapped_column(JSON, default=list)
    clarification: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pending_action: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    approvals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    artifacts: Mapped[list[Any]] = mapped_column(JSON, default=list)
    model: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # A front door's idempotency key (e.g. a Slack trigger id): one request, one job.
    request_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Where the door that submitted the job wants to hear about it (channel, user, ...).
    reply_to: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Denormalised for budgets: a team's spend today is one indexed SUM.
    team: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ux_jobs_request_key", "request_key", unique=True),
        Index("ix_jobs_team_created", "team", "created_at"),
    )


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[str] = mapped_column(String(40))
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    data: Mapped[str] = mapped_column(Text)
    artifacts: Mapped[str] = mapped_column(Text, default="")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_events_job_id", "job_id"),)


class WorkerRow(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    """A message a front door owes someone about a job; written with the state change."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    door: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # What delivery polls: only the undelivered, however long the history.
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "door",
            "id",
            sqlite_where=text("delivered_at IS NULL"),
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )


class DoorThreadRow(Base):
    """Where a job's conversation lives in a front door (e.g. a Slack channel and card ts)."""

    __tablename__ = "door_threads"

    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    door: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[dict[str, Any]] = mapped_column(JSON)


class RoutineRow(Base):
    """A scheduled request (R-n): every firing submits it as an ordinary job."""

    __tablename__ = "routines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    schedule: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    request: Mapped[str] = mapped_column(Text)
    misfire: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)  # active, paused, deleted
    source: Mapped[str] = mapped_column(String(16))  # job (proposed and approved) or policy
    created_by_job: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reply_to: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RoutineFiringRow(Base):
    """One firing of a routine, or one it missed: what was due, what happened, which job."""

    __tablename__ = "routine_firings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    routine_id: Mapped[int] = mapped_column(Integer, index=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(32))  # submitted, denied, missed, skipped
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    instance: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ux_routine_firings_due", "routine_id", "due_at", unique=True),)


class LeaseRow(Base):
    """Who holds a service-wide role (the scheduler) until when; renewed while alive."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiTokenRow(Base):
    """A personal API token: its person and scopes; the secret itself is never stored, only
    its SHA-256 (the secrets are 256 random bits, so a fast hash is the right one)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    person: Mapped[str] = mapped_column(String(128), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PolicyLoadRow(Base):
    """One policy put in force: its hash (the artifact holding its files has the same sha256),
    when, from where (startup, the folder, SIGHUP, a reload request, a policy job) and by whom.
    The newest row is the policy in force for every process of the service."""

    __tablename__ = "policy_loads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_hash: Mapped[str] = mapped_column(String(64), index=True)
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)
    files: Mapped[list[str]] = mapped_column(JSON)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
