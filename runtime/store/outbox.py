"""The outbox: what front doors owe people about jobs, written in the state change's transaction.

The runtime only enqueues; a door's deliverer (e.g. bot/slack/delivery.py) reads its own rows
in order, sends them and marks them delivered, so a restart neither loses nor repeats a message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select, update
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


async def pending(db: Database, door: str, limit: int = 100) -> list[OutboxItem]:
    """Undelivered items for a door, oldest first, skipping those backing off after a failure."""
    now = utcnow()
    query = (
        select(_outbox)
        .where(_outbox.c.door == door, _outbox.c.delivered_at.is_(None))
        .where((_outbox.c.not_before.is_(None)) | (_outbox.c.not_before <= now))
        .order_by(_outbox.c.id)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [OutboxItem.model_validate(dict(row)) for row in rows]


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
