"""The api_tokens rows: insert, load, mark used, revoke, list. The rules (hashing, scopes,
expiry) are runtime.tokens'; this module only moves rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.store.database import Database
from runtime.store.models import ApiTokenRow

tokens_table = ApiTokenRow.__table__
_TIMES = ("created_at", "expires_at", "revoked_at", "last_used_at")


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    for name in _TIMES:  # SQLite hands timestamps back without their zone; they are UTC
        if isinstance(row.get(name), datetime) and row[name].tzinfo is None:
            row[name] = row[name].replace(tzinfo=UTC)
    return row


async def insert_token(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(insert(tokens_table), [row])


async def load_token(db: Database, token_id: str) -> dict[str, Any] | None:
    async with db.engine.connect() as conn:
        found = (
            (await conn.execute(select(tokens_table).where(tokens_table.c.id == token_id)))
            .mappings()
            .first()
        )
    return _row(found) if found is not None else None


async def mark_used(db: Database, token_id: str, at: datetime, *, stale_before: datetime) -> bool:
    """Set last_used_at unless another call set it since `stale_before`: of a burst of
    concurrent calls one writes, and the time never moves back. Whether this call wrote."""
    last_used = tokens_table.c.last_used_at
    async with db.begin() as conn:
        result = await conn.execute(
            update(tokens_table)
            .where(
                tokens_table.c.id == token_id,
                or_(last_used.is_(None), last_used <= stale_before),
            )
            .values(last_used_at=at)
        )
    return result.rowcount == 1


async def revoke(conn: AsyncConnection, token_id: str, at: datetime) -> bool:
    """Revoke it unless it already is; whether this call did (of two at once, one does)."""
    result = await conn.execute(
        update(tokens_table)
        .where(tokens_table.c.id == token_id, tokens_table.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1


async def list_tokens(db: Database, person: str | None = None) -> list[dict[str, Any]]:
    query = select(tokens_table).order_by(tokens_table.c.created_at)
    if person is not None:
        query = query.where(tokens_table.c.person == person)
    async with db.engine.connect() as conn:
        return [_row(r) for r in (await conn.execute(query)).mappings().all()]
