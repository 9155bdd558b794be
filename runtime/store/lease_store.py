"""Service-wide roles held by one instance at a time (the routine scheduler), as lease rows.

A lease is taken by renewing it (its holder) or by taking it over once it has expired, in one
guarded UPDATE; the first instance ever inserts the row, and the primary key lets only one
such insert win.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.store.models import LeaseRow

leases_table = LeaseRow.__table__


async def take(db: Database, name: str, holder: str, *, seconds: float) -> bool:
    """Hold `name` for `seconds` from now if it is ours or has expired; True if held."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    async with db.begin() as conn:
        held = (
            await conn.execute(
                update(leases_table)
                .where(leases_table.c.name == name)
                .where((leases_table.c.holder == holder) | (leases_table.c.expires_at < now))
                .values(holder=holder, expires_at=until)
            )
        ).rowcount
        if held:
            return True
        exists = (
            await conn.execute(select(leases_table.c.holder).where(leases_table.c.name == name))
        ).first()
        if exists is not None:
            return False
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert(leases_table).values(name=name, holder=holder, expires_at=until)
            )
        return True
    except IntegrityError:  # another instance inserted it first
        return False


async def release(db: Database, name: str, holder: str) -> None:
    """Let `name` lapse now, if `holder` still holds it, so the next instance need not wait."""
    async with db.begin() as conn:
        await conn.execute(
            update(leases_table)
            .where(leases_table.c.name == name, leases_table.c.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
