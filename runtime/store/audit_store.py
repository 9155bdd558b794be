"""The audit_events rows: the chain's head, the insert of new events, and the reads.

The hashing and the checks are the audit log's (runtime.audit); this module only moves rows.
Appends run in the caller's transaction, so events commit with the state change they record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.store.database import AUDIT_LOCK, Database
from runtime.store.models import AuditEventRow

events_table = AuditEventRow.__table__
# The stored fields in the order the chain hashes and checks them.
CHAIN_COLUMNS = ("seq", "ts", "job_id", "kind", "actor", "artifacts", "data", "prev_hash", "hash")
PAGE = 20_000


async def lock_chain(conn: AsyncConnection, db: Database) -> None:
    """On PostgreSQL, serialise appenders until the transaction ends, so two transactions never
    both extend the same head (on SQLite the write transaction, BEGIN IMMEDIATE, already does)."""
    if db.dialect == "postgresql":
        await conn.execute(text(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})"))


async def chain_head(conn: AsyncConnection) -> tuple[int, str] | None:
    """The last event's seq and hash; None while the log is empty."""
    query = select(events_table.c.seq, events_table.c.hash)
    head = (await conn.execute(query.order_by(events_table.c.seq.desc()).limit(1))).first()
    return (head[0], head[1]) if head else None


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(events_table), rows)


async def chain_rows(db: Database, batch: int = PAGE) -> AsyncIterator[Sequence[Any]]:
    """Every event as a tuple of CHAIN_COLUMNS, in seq order, a page (keyset) at a time."""
    columns = [events_table.c[name] for name in CHAIN_COLUMNS]
    last = 0
    async with db.engine.connect() as conn:
        while True:
            result = await conn.execute(
                select(*columns)
                .where(events_table.c.seq > last)
                .order_by(events_table.c.seq)
                .limit(batch)
            )
            rows = result.all()
            if not rows:
                return
            yield rows
            last = rows[-1][0]


def sqlite_chain_rows(path: Path, batch: int = PAGE) -> Iterator[list[Any]]:
    """The same rows from a SQLite file through a plain, read-only sqlite3 connection (no event
    loop, no Row objects): one SELECT is one read transaction, a consistent WAL snapshot that
    takes no write lock, so appenders keep going while it runs. Close the iterator when done
    early (contextlib.closing) so the connection goes with it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        cursor = conn.execute(f"SELECT {', '.join(CHAIN_COLUMNS)} FROM audit_events ORDER BY seq")
        while rows := cursor.fetchmany(batch):
            yield rows
    finally:
        conn.close()


async def event_rows(db: Database, job_id: int | None = None) -> list[dict[str, Any]]:
    """Every event (or one job's), in seq order, as column mappings."""
    query = select(events_table).order_by(events_table.c.seq)
    if job_id is not None:
        query = query.where(events_table.c.job_id == job_id)
    async with db.engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def search_rows(
    db: Database,
    *,
    job_id: int | None = None,
    actor: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """The newest events matching a search, newest first: a job's, a person's (the actor label
    starts with their name), a kind or kind prefix ("approval" finds approval.*), a time range
    (ISO timestamps, compared as the chain stores them)."""
    t = events_table
    query = select(t).order_by(t.c.seq.desc()).limit(limit)
    if job_id is not None:
        query = query.where(t.c.job_id == job_id)
    if actor:
        query = query.where(
            (t.c.actor == actor) | t.c.actor.startswith(actor + " ", autoescape=True)
        )
    if kind:
        query = query.where((t.c.kind == kind) | t.c.kind.startswith(kind + ".", autoescape=True))
    if since:
        query = query.where(t.c.ts >= since)
    if until:
        query = query.where(t.c.ts < until)
    async with db.engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def event_row(db: Database, seq: int) -> dict[str, Any] | None:
    async with db.engine.connect() as conn:
        query = select(events_table).where(events_table.c.seq == seq)
        row = (await conn.execute(query)).mappings().first()
    return dict(row) if row is not None else None


async def last_seq(db: Database) -> int:
    """The newest event's seq (0 while the log is empty)."""
    async with db.engine.connect() as conn:
        head = await chain_head(conn)
    return head[0] if head else 0


async def job_events_after(db: Database, after: int, limit: int = 500) -> list[tuple]:
    """Events about a job after `after`, oldest first: (seq, job_id, kind, actor, new state or
    None), for the API's stream of job changes."""
    import json

    t = events_table
    query = (
        select(t.c.seq, t.c.job_id, t.c.kind, t.c.actor, t.c.data)
        .where(t.c.seq > after, t.c.job_id.is_not(None))
        .order_by(t.c.seq)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out = []
    for seq, job_id, kind, actor, data in rows:
        state = json.loads(data).get("to") if '"to"' in data else None
        out.append((seq, job_id, kind, actor, state))
    return out


async def hashes_after(db: Database, after: int, limit: int = PAGE) -> list[str]:
    """The chain hashes of the events after `after`, in seq order (the Merkle tree's leaves)."""
    query = (
        select(events_table.c.hash)
        .where(events_table.c.seq > after)
        .order_by(events_table.c.seq)
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        return list((await conn.execute(query)).scalars().all())
