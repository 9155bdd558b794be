"""Reading and writing job rows as JobRecords; the only place that knows the jobs table's shape.

Every write names the state it expects, so two writers never both move the same job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.errors import InvalidTransition, UnknownJob
from runtime.jobs import JobRecord, JobState, format_job_id
from runtime.store.models import JobRow

jobs_table = JobRow.__table__


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def record_from_row(row: Any) -> JobRecord:
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    result = dict(data["result"] or {})
    phase = result.pop("phase", None)  # stored inside result since 0.1.0
    return JobRecord(
        id=data["id"],
        state=data["state"],
        spec=data["spec"],
        prompt=data["prompt"],
        tools_granted=data["tools_granted"] or [],
        decision=data["decision"] or {},
        policy_hash=data["policy_hash"],
        classifier=data["classifier"] or {},
        clarification=data["clarification"],
        pending_action=data["pending_action"],
        approvals=data["approvals"] or [],
        artifacts=data["artifacts"] or [],
        model=data["model"] or {},
        result=result,
        phase=phase,
        reply_to=data.get("reply_to"),
        created_at=_aware(data["created_at"]),
        updated_at=_aware(data["updated_at"]),
    )


def row_values(record: JobRecord) -> dict[str, Any]:
    dumped = record.model_dump(mode="json")
    return {
        "state": record.state.value,
        "job_type": record.spec.job_type.value if record.spec.job_type else "",
        "target": record.spec.target,
        "requester": record.spec.requester,
        "origin": record.spec.origin.value,
        "prompt": record.prompt,
        "spec": dumped["spec"],
        "decision": dumped["decision"],
        "classifier": dumped["classifier"],
        "policy_hash": record.policy_hash,
        "tools_granted": dumped["tools_granted"],
        "clarification": dumped["clarification"],
        "pending_action": record.pending_action.canonical() if record.pending_action else None,
        "approvals": dumped["approvals"],
        "artifacts": dumped["artifacts"],
        "model": dumped["model"],
        "result": {**dumped["result"], **({"phase": record.phase.value} if record.phase else {})},
        "reply_to": dumped["reply_to"],
        "cost_usd": record.model.cost_usd,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


class DuplicateRequest(Exception):
    """A job with this request key exists (a door's retry arrived at the same time)."""


async def insert_job(
    conn: AsyncConnection,
    record: JobRecord,
    request_key: str | None = None,
    team: str | None = None,
) -> JobRecord:
    values = {**row_values(record), "request_key": request_key, "team": team}
    try:
        result = await conn.execute(insert(jobs_table).values(**values).returning(jobs_table.c.id))
    except IntegrityError as error:
        if request_key is None:
            raise
        raise DuplicateRequest(request_key) from error
    return record.model_copy(update={"id": result.scalar_one()})


async def load_job(conn: AsyncConnection, job_id: int, *, for_update: bool = False) -> JobRecord:
    query = select(jobs_table).where(jobs_table.c.id == job_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        top = (await conn.execute(select(func.max(jobs_table.c.id)))).scalar()
        known = f"jobs run from J-1 to {format_job_id(top)}" if top else "there are no jobs yet"
        raise UnknownJob(f"no job {format_job_id(job_id)}", hint=f"{known}; `acp jobs` lists them")
    return record_from_row(row)


async def save_job(
    conn: AsyncConnection,
    record: JobRecord,
    *,
    expected_state: JobState,
    worker_id: str | None = None,
) -> JobRecord:
    """Write the whole record, only if the row is still in `expected_state`."""
    record = record.model_copy(update={"updated_at": utcnow()})
    values = row_values(record)
    values.pop("created_at")
    if worker_id is not None:
        values["worker_id"] = worker_id
    result = await conn.execute(
        update(jobs_table)
        .where(jobs_table.c.id == record.id, jobs_table.c.state == expected_state.value)
        .values(**values)
    )
    if result.rowcount != 1:
        raise InvalidTransition(
            f"{record.job_id} changed while this action was in flight; nothing was changed",
            hint=f"`acp show {record.job_id}` shows where it is now",
        )
    return record


async def list_jobs(
    conn: AsyncConnection,
    *,
    requester: str | None = None,
    states: list[str] | None = None,
    limit: int = 50,
) -> list[JobRecord]:
    query = select(jobs_table).order_by(jobs_table.c.id.desc()).limit(limit)
    if requester:
        query = query.where(jobs_table.c.requester == requester)
    if states:
        query = query.where(jobs_table.c.state.in_(states))
    return [record_from_row(row) for row in (await conn.execute(query)).all()]


class JobFilter(BaseModel):
    """What a job list may be narrowed by (the console's filters): every field optional."""

    model_config = ConfigDict(frozen=True)

    states: list[str] = Field(default_factory=list)
    job_types: list[str] = Field(default_factory=list)
    target: str | None = None
    requester: str | None = None
    origin: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # words of the request (a job id is looked up as an id)
    job_id: int | None = None
    before_id: int | None = None  # the next page: jobs older than this one


async def search_jobs(conn: AsyncConnection, where: JobFilter, limit: int = 50) -> list[JobRecord]:
    """The newest jobs matching `where`, newest first (by id, the primary key's index)."""
    c = jobs_table.c
    query = select(jobs_table).order_by(c.id.desc()).limit(limit)
    if where.job_id is not None:
        query = query.where(c.id == where.job_id)
    if where.states:
        query = query.where(c.state.in_(where.states))
    if where.job_types:
        query = query.where(c.job_type.in_(where.job_types))
    if where.target:
        query = query.where(c.target == where.target)
    if where.requester:
        query = query.where(c.requester == where.requester)
    if where.origin:
        query = query.where(c.origin == where.origin)
    if where.since:
        query = query.where(c.created_at >= where.since)
    if where.until:
        query = query.where(c.created_at < where.until)
    if where.before_id is not None:
        query = query.where(c.id < where.before_id)
    if where.text:
        escaped = where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(c.prompt.ilike(f"%{escaped}%", escape="\\"))
    return [record_from_row(row) for row in (await conn.execute(query)).all()]


async def worker_of(conn: AsyncConnection, job_id: int) -> str | None:
    query = select(jobs_table.c.worker_id).where(jobs_table.c.id == job_id)
    return (await conn.execute(query)).scalar()


async def job_for_request(conn: AsyncConnection, request_key: str) -> JobRecord | None:
    query = select(jobs_table).where(jobs_table.c.request_key == request_key)
    row = (await conn.execute(query)).first()
    return record_from_row(row) if row else None


async def reply_to_of(conn: AsyncConnection, job_id: int) -> dict[str, Any] | None:
    query = select(jobs_table.c.reply_to).where(jobs_table.c.id == job_id)
    return (await conn.execute(query)).scalar()


async def team_spend_since(
    conn: AsyncConnection, team: str | None, since: datetime, *, excluding: int
) -> float:
    """What a team's jobs created since `since` have spent on models (one job left out)."""
    query = select(func.coalesce(func.sum(jobs_table.c.cost_usd), 0.0)).where(
        jobs_table.c.team == team, jobs_table.c.created_at >= since, jobs_table.c.id != excluding
    )
    return float((await conn.execute(query)).scalar() or 0.0)


async def save_model_use(conn: AsyncConnection, job_id: int, model: dict[str, Any]) -> None:
    """Only the job's model usage: the hot path of an agent loop need not rewrite the rest."""
    await conn.execute(
        update(jobs_table)
        .where(jobs_table.c.id == job_id)
        .values(model=model, cost_usd=model.get("cost_usd", 0.0), updated_at=utcnow())
    )
