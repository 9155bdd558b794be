"""Reading and writing routine rows: the only place that knows the routines table's shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select, update

from runtime.errors import BadRequest, UnknownJob
from runtime.schedules import Schedule
from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.store.models import RoutineRow

routines_table = RoutineRow.__table__


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
