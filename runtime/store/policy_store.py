"""The policy_loads rows: record a policy put in force, read the one in force, list the history.
Which policy is valid and when to load it is runtime.policy_live's; this module only moves rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.store.models import PolicyLoadRow

loads_table = PolicyLoadRow.__table__


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    at = row.get("loaded_at")
    if isinstance(at, datetime) and at.tzinfo is None:  # SQLite drops the zone; it is UTC
        row["loaded_at"] = at.replace(tzinfo=UTC)
    return row


async def record_load(conn: AsyncConnection, row: dict[str, Any]) -> int:
    result = await conn.execute(insert(loads_table).values(**row).returning(loads_table.c.id))
    return int(result.scalar_one())


async def in_force(conn: AsyncConnection) -> dict[str, Any] | None:
    """The newest load: the policy every process of the service acts under."""
    query = select(loads_table).order_by(loads_table.c.id.desc()).limit(1)
    found = (await conn.execute(query)).mappings().first()
    return _row(found) if found is not None else None


async def in_force_hash(conn: AsyncConnection) -> str | None:
    query = select(loads_table.c.policy_hash).order_by(loads_table.c.id.desc()).limit(1)
    return (await conn.execute(query)).scalar()


async def history(conn: AsyncConnection, limit: int = 50) -> list[dict[str, Any]]:
    query = select(loads_table).order_by(loads_table.c.id.desc()).limit(limit)
    return [_row(m) for m in (await conn.execute(query)).mappings()]


async def first_loaded(conn: AsyncConnection, policy_hash: str) -> dict[str, Any] | None:
    query = (
        select(loads_table)
        .where(loads_table.c.policy_hash == policy_hash)
        .order_by(loads_table.c.id)
        .limit(1)
    )
    found = (await conn.execute(query)).mappings().first()
    return _row(found) if found is not None else None
