"""Reading and writing routine and firing rows: the only place that knows those tables' shape.

One firing per routine and due time, however many instances run: the firing row is unique per
(routine, due time), so of two instances inserting it one gets an IntegrityError and backs off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from runtime.errors import BadRequest, UnknownJob
from runtime.schedules import Schedule
from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.store.models import RoutineFiringRow, RoutineRow

routines_table = RoutineRow.__table__
firings_table = RoutineFiringRow.__table__


def format_routine_id(number: int) -> str:
    return f"R-{number}"


def parse_routine_id(text: str) -> int:
    value = text.strip().upper().removeprefix("R-").removeprefix("R")
    if not value.isdigit():
        raise BadRequest(f"'{text}' is not a routine id", hint="routine ids look like R-3")
    return int(value)


class Routine(BaseModel):
    id: int
    name: str | None
    owner: str
    schedule: Schedule
    request: str
    state: str
    source: str
    created_by_job: int | None
    reply_to: dict[str, Any] | None
    created_at: datetime

    @property
    def routine_id(self) -> str:
        return format_routine_id(self.id)

    def next_run(self, now: datetime | None = None) -> datetime | None:
        if self.state != "active":
            return None
        return self.schedule.next_after(now or utcnow())


class Firing(BaseModel):
    routine_id: int
    due_at: datetime
    fired_at: datetime
    outcome: str
    job_id: int | None
    detail: str
    instance: str


def aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def routine_from_row(row: Any) -> Routine:
    return Routine(
        id=row.id,
        name=row.name,
        owner=row.owner,
        schedule=Schedule.model_validate_json(row.schedule),
        request=row.request,
        state=row.state,
        source=row.source,
        created_by_job=row.created_by_job,
        reply_to=row.reply_to,
        created_at=aware(row.created_at),
    )


def firing_from_row(row: Any) -> Firing:
    return Firing(routine_id=row.routine_id, due_at=aware(row.due_at),
                  fired_at=aware(row.fired_at), outcome=row.outcome, job_id=row.job_id,
                  detail=row.detail, instance=row.instance)  # fmt: skip


# --- routines -----------------------------------------------------------------------------


async def list_routines(db: Database, *, include_deleted: bool = False) -> list[Routine]:
    query = select(routines_table).order_by(routines_table.c.id)
    if not include_deleted:
        query = query.where(routines_table.c.state != "deleted")
    async with db.engine.connect() as conn:
        return [routine_from_row(r) for r in (await conn.execute(query)).all()]


async def load_routine(db: Database, routine_id: int) -> Routine:
    async with db.engine.connect() as conn:
        query = select(routines_table).where(routines_table.c.id == routine_id)
        row = (await conn.execute(query)).first()
    if row is None:
        raise UnknownJob(f"there is no routine {format_routine_id(routine_id)}",
                         hint="list them with `acp routines list`")  # fmt: skip
    return routine_from_row(row)


async def create_for_job(
    db: Database,
    job_id: int,
    *,
    owner: str,
    schedule: Schedule,
    request: str,
    reply_to: dict[str, Any] | None,
) -> int:
    """The routine a job created; the same job again gets the same routine (a resumed publish)."""
    now = utcnow()
    async with db.begin() as conn:
        existing = (
            await conn.execute(
                select(routines_table.c.id).where(routines_table.c.created_by_job == job_id)
            )
        ).scalar()
        if existing:
            return int(existing)
        inserted = await conn.execute(
            insert(routines_table).values(
                owner=owner, schedule=schedule.model_dump_json(), timezone=schedule.timezone,
                request=request, misfire=schedule.misfire, state="active", source="job",
                created_by_job=job_id, reply_to=reply_to, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        return int(inserted.inserted_primary_key[0])


async def change(db: Database, routine_id: int, *, schedule: Schedule | None = None,
                 state: str | None = None) -> None:  # fmt: skip
    values: dict[str, Any] = {"updated_at": utcnow()}
    if state is not None:
        values["state"] = state
    if schedule is not None:
        values.update(
            schedule=schedule.model_dump_json(), timezone=schedule.timezone,
            misfire=schedule.misfire,
        )  # fmt: skip
    async with db.begin() as conn:
        await conn.execute(
            update(routines_table).where(routines_table.c.id == routine_id).values(**values)
        )


async def sync_declared(db: Database, declared: Mapping[str, dict[str, Any]]) -> None:
    """Make the policy's routines (`declared`: name to column values) the rows with source
    `policy`, in one transaction: new ones added, changed ones updated (and active again),
    ones no longer declared marked deleted."""
    now = utcnow()
    async with db.begin() as conn:
        query = select(routines_table).where(routines_table.c.source == "policy")
        rows = (await conn.execute(query)).all()
        seen = set()
        for row in rows:
            values = declared.get(row.name or "")
            if values is None:
                if row.state != "deleted":
                    await conn.execute(update(routines_table).where(routines_table.c.id == row.id)
                                       .values(state="deleted", updated_at=now))  # fmt: skip
                continue
            seen.add(row.name)
            if any(getattr(row, k) != v for k, v in values.items()):
                await conn.execute(update(routines_table).where(routines_table.c.id == row.id)
                                   .values(**values, state="active", updated_at=now))  # fmt: skip
        for name, values in declared.items():
            if name not in seen:
                await conn.execute(
                    insert(routines_table).values(
                        name=name, **values, state="active", source="policy", created_at=now,
                        updated_at=now,
                    )
                )  # fmt: skip


# --- firings ------------------------------------------------------------------------------


async def firings(db: Database, routine_id: int, limit: int = 50) -> list[Firing]:
    """A routine's firings (and the runs it missed), the latest due time first."""
    query = (
        select(firings_table)
        .where(firings_table.c.routine_id == routine_id)
        .order_by(firings_table.c.due_at.desc())
        .limit(limit)
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [firing_from_row(r) for r in rows]


async def start_firing(
    db: Database, routine_id: int, due_at: datetime, *, fired_at: datetime, instance: str,
    note: str,
) -> bool:  # fmt: skip
    """Claim the run due at `due_at` with a row saying `firing`; False if it has a row already
    (another instance, a retry): that run is fired once, by whoever inserted first."""
    try:
        async with db.begin() as conn:
            await conn.execute(
                insert(firings_table).values(
                    routine_id=routine_id, due_at=due_at, fired_at=fired_at, outcome="firing",
                    job_id=None, detail=note, instance=instance,
                )
            )  # fmt: skip
    except IntegrityError:
        return False  # this run was fired already
    return True


async def settle_firing(
    db: Database, routine_id: int, due_at: datetime, *, outcome: str, job_id: int | None,
    detail: str,
) -> None:  # fmt: skip
    """Record how the firing of the run due at `due_at` ended (and which job it made)."""
    async with db.begin() as conn:
        await conn.execute(
            update(firings_table)
            .where(firings_table.c.routine_id == routine_id, firings_table.c.due_at == due_at)
            .values(outcome=outcome, job_id=job_id, detail=detail)
        )


async def interrupted_firings(db: Database) -> list[Firing]:
    """Firings still at `firing`: their instance died between the row and the job."""
    async with db.engine.connect() as conn:
        query = select(firings_table).where(firings_table.c.outcome == "firing")
        rows = (await conn.execute(query)).all()
    return [firing_from_row(r) for r in rows]


async def add_missed(
    db: Database, routine_id: int, due_at: list[datetime], *, instance: str, detail: str
) -> int:
    """Record the runs due at `due_at` (UTC, sorted) as missed: together in one transaction, a
    due time already settled (by another instance) left as it is; if another instance raced
    us on some of them, one by one. Returns how many were new."""
    now = utcnow()
    async with db.begin() as conn:
        taken = {
            aware(at)
            for at in (
                await conn.execute(
                    select(firings_table.c.due_at).where(
                        firings_table.c.routine_id == routine_id,
                        firings_table.c.due_at >= due_at[0],
                        firings_table.c.due_at <= due_at[-1],
                    )
                )
            ).scalars()
        }
    rows = [
        {"routine_id": routine_id, "due_at": at, "fired_at": now, "outcome": "missed",
         "job_id": None, "instance": instance, "detail": detail}
        for at in due_at
        if at not in taken
    ]  # fmt: skip
    if not rows:
        return 0
    try:
        async with db.begin() as conn:
            await conn.execute(insert(firings_table), rows)
        return len(rows)
    except IntegrityError:  # another instance raced us on some of them: one by one
        added = 0
        for row in rows:
            with contextlib.suppress(IntegrityError):
                async with db.begin() as conn:
                    await conn.execute(insert(firings_table).values(**row))
                added += 1
        return added
