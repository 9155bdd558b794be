"""The workers table and the queue's claim query: who is alive, and which job is taken next.

Whether a process is alive is the worker's question (runtime.worker); this module only reads
and writes the rows. The claim query runs in the caller's transaction, so the job it finds and
the state change that takes it commit together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.jobs import JobState
from runtime.store.database import Database
from runtime.store.job_store import _aware, jobs_table, utcnow
from runtime.store.models import WorkerRow

workers_table = WorkerRow.__table__
# A queued job starts its run; an approved one its publish or the action that was approved.
CLAIMABLE = (JobState.queued.value, JobState.approved.value)


@dataclass(frozen=True)
class WorkerEntry:
    """A registered worker as its row says: where it runs and when it last said it was alive."""

    id: str
    host: str
    pid: int
    heartbeat_at: datetime


async def dead_workers_on_host(
    conn: AsyncConnection, host: str, alive: Callable[[int], bool]
) -> list[str]:
    """Workers registered on `host` whose process `alive` says is gone (a crash, a SIGKILL)."""
    rows = await conn.execute(
        select(workers_table.c.id, workers_table.c.pid).where(workers_table.c.host == host)
    )
    return [row.id for row in rows if not alive(row.pid)]


async def register_worker(
    db: Database, worker_id: str, *, host: str, pid: int, alive: Callable[[int], bool]
) -> None:
    """Add this worker's row; in the same transaction, drop the rows of dead workers on its
    host, which would otherwise count as live until their heartbeat aged out."""
    now = utcnow()
    async with db.begin() as conn:
        dead = await dead_workers_on_host(conn, host, alive)
        if dead:
            await conn.execute(delete(workers_table).where(workers_table.c.id.in_(dead)))
        await conn.execute(
            insert(workers_table).values(
                id=worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now
            )
        )


async def beat(db: Database, worker_id: str) -> None:
    async with db.begin() as conn:
        await conn.execute(
            update(workers_table)
            .where(workers_table.c.id == worker_id)
            .values(heartbeat_at=utcnow())
        )


async def unregister(db: Database, worker_id: str) -> None:
    async with db.begin() as conn:
        await conn.execute(delete(workers_table).where(workers_table.c.id == worker_id))


async def worker_row(conn: AsyncConnection, worker_id: str) -> WorkerEntry | None:
    query = select(workers_table).where(workers_table.c.id == worker_id)
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return WorkerEntry(id=row.id, host=row.host, pid=row.pid, heartbeat_at=_aware(row.heartbeat_at))


async def is_registered(db: Database, worker_id: str) -> bool:
    """Whether a worker with this identity has registered (and not yet left)."""
    async with db.engine.connect() as conn:
        found = await conn.execute(select(WorkerRow.id).where(WorkerRow.id == worker_id))
        return found.first() is not None


async def heartbeats(db: Database) -> list[datetime]:
    """Every registered worker's last heartbeat (timezone-aware)."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(WorkerRow.heartbeat_at))).scalars().all()
    return [_aware(at) for at in rows]


async def next_claimable_job_id(conn: AsyncConnection) -> int | None:
    """The oldest queued or approved job, inside the caller's transaction. On PostgreSQL the
    row stays locked until that transaction ends and rows other workers hold are skipped, so
    two workers never take the same job; on SQLite the write transaction (BEGIN IMMEDIATE)
    serialises claimers."""
    query = (
        select(jobs_table.c.id)
        .where(jobs_table.c.state.in_(CLAIMABLE))
        .order_by(jobs_table.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return (await conn.execute(query)).scalar()
