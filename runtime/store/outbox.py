"""The outbox: what front doors owe people about jobs, written in the state change's transaction.

The runtime only enqueues; a door's deliverer (e.g. bot/slack/delivery.py) reads its own rows
in order, sends them and marks them delivered, so a restart neither loses nor repeats a message.
A job's rows behind one that is backing off after a failure wait for it: a job's messages are
never sent out of order.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.store.models import DoorThreadRow, OutboxRow

_outbox = OutboxRow.__table__
_threads = DoorThreadRow.__table__

MAX_ATTEMPTS = 8


class OutboxItem(BaseModel):
    id: int
    door: str
    job_id: int
    kind: str
    data: dict[str, Any]
    attempts: int


async def enqueue(
    conn: AsyncConnection, door: str, job_id: int, kind: str, data: dict[str, Any]
) -> None:
    await conn.execute(
        insert(_outbox).values(
            door=door, job_id=job_id, kind=kind, data=data, created_at=utcnow(), attempts=0
        )
    )


def _deliverable(door: str) -> ColumnElement[bool]:
    """Undelivered rows of a door that are due: neither they nor an earlier undelivered row of
    the same job is backing off after a failure."""
    held = _outbox.alias("held")
    backing_off = exists().where(
        held.c.door == _outbox.c.door,
        held.c.job_id == _outbox.c.job_id,
        held.c.id <= _outbox.c.id,
        held.c.delivered_at.is_(None),
        held.c.not_before > utcnow(),
    )
    return and_(_outbox.c.door == door, _outbox.c.delivered_at.is_(None), ~backing_off)


async def pending(
    db: Database, door: str, limit: int = 100, *, job_id: int | None = None
) -> list[OutboxItem]:
    """Undelivered items for a door (or one job of it), oldest first, skipping those backing
    off after a failure and, per job, everything behind them."""
    query = select(_outbox).where(_deliverable(door)).order_by(_outbox.c.id).limit(limit)
    if job_id is not None:
        query = query.where(_outbox.c.job_id == job_id)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [OutboxItem.model_validate(dict(row)) for row in rows]


async def pending_jobs(db: Database, door: str, limit: int = 100) -> list[int]:
    """The jobs with items due for a door, the longest waiting first: a deliverer serves each
    job on its own, so one job's backlog never hides another's."""
    oldest = func.min(_outbox.c.id)
    query = (
        select(_outbox.c.job_id)
        .where(_deliverable(door))
        .group_by(_outbox.c.job_id)
        .order_by(oldest)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def mark_delivered(db: Database, item_id: int) -> None:
    async with db.begin() as conn:
        await conn.execute(
            update(_outbox)
            .where(_outbox.c.id == item_id, _outbox.c.delivered_at.is_(None))
            .values(delivered_at=utcnow(), last_error=None)
        )


async def mark_failed(db: Database, item: OutboxItem, error: str) -> bool:
    """Back off and retry later; after MAX_ATTEMPTS give up (recorded). True if given up."""
    attempts = item.attempts + 1
    give_up = attempts >= MAX_ATTEMPTS
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000]}
    if give_up:
        values["delivered_at"] = utcnow()
    else:
        values["not_before"] = utcnow() + timedelta(seconds=min(60, 2**attempts))
    async with db.begin() as conn:
        await conn.execute(update(_outbox).where(_outbox.c.id == item.id).values(**values))
    return give_up


async def thread_of(db: Database, job_id: int, door: str) -> dict[str, Any] | None:
    async with db.engine.connect() as conn:
        query = select(_threads.c.address).where(
            _threads.c.job_id == job_id, _threads.c.door == door
        )
        return (await conn.execute(query)).scalar()


async def remember_thread(db: Database, job_id: int, door: str, address: dict[str, Any]) -> None:
    """Record where the job's conversation lives; the first address wins."""
    dialect_insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(_threads)
        .values(job_id=job_id, door=door, address=address)
        .on_conflict_do_nothing(index_elements=["job_id", "door"])
    )
    async with db.begin() as conn:
        await conn.execute(statement)
