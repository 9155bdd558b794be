"""Recorded jobs read back for a policy simulation: only the columns the policy decided on, as
light tuples, streamed in batches; the only place that knows which of the jobs table's columns
a simulation reads.

One query (jobs created since a time, in id order; the spec's instruction, commands and
schedule picked out by the database) and no JobRecord validation per row. The JSON columns are
decoded here, each distinct text once: jobs decided alike share their decision (and classifier,
and commands) object, so treat those as read-only.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.store.models import JobRow

jobs_table = JobRow.__table__
BATCH = 5000
_SHARED_MAX = 50_000  # distinct decision/classifier texts kept decoded at once


class RecordedJob(NamedTuple):
    """What a job was decided on, and what was decided: enough to decide it again."""

    id: int
    requester: str
    job_type: str
    target: str | None
    origin: str
    instruction: str
    commands: list[str]
    schedule: str | None
    classifier: dict[str, Any]
    decision: dict[str, Any]
    channel: str | None = None  # the Slack channel it was asked in (or a routine reports to)


def _query(since: datetime | None):
    c = jobs_table.c
    query = select(
        c.id,
        c.requester,
        c.job_type,
        c.target,
        c.origin,
        c.spec["instruction"].as_string(),
        cast(c.spec["commands"], Text),
        c.spec["schedule"].as_string(),
        cast(c.classifier, Text),
        cast(c.decision, Text),
        c.reply_to["door"].as_string(),
        c.reply_to["channel"].as_string(),
    ).order_by(c.id)
    if since is not None:
        query = query.where(c.created_at >= since)
    return query


_MISSING = object()


class _SharedJson:
    """json.loads, each distinct text decoded once (at most _SHARED_MAX kept at a time):
    `known(text, _MISSING)` is the decoded value of a text seen before, `decode(text)` the rest."""

    def __init__(self, default: Any) -> None:
        self.default = default
        self.seen: dict[str, Any] = {}
        self.known = self.seen.get

    def decode(self, text: str | None) -> Any:
        if text is None:  # the query casts to text: a str from either driver, or NULL
            return self.default
        if len(self.seen) >= _SHARED_MAX:
            self.seen.clear()
        decoded = json.loads(text)
        self.seen[text] = found = self.default if decoded is None else decoded
        return found


async def recorded_jobs(
    conn: AsyncConnection, since: datetime | None = None, *, batch: int = BATCH
) -> AsyncIterator[list[RecordedJob]]:
    """Jobs created at or after `since` (every job: None), oldest first, `batch` at a time."""
    commands_of, classifier_of, decision_of = _SharedJson([]), _SharedJson({}), _SharedJson({})
    known_commands, known_classifier, known_decision = (
        commands_of.known, classifier_of.known, decision_of.known
    )  # fmt: skip
    new, missing = tuple.__new__, _MISSING
    result = await conn.stream(_query(since).execution_options(yield_per=batch))
    async for part in result.partitions(batch):
        out = []
        for (id_, requester, job_type, target, origin, text, commands, schedule, cl, dec,
             door, channel) in part:  # fmt: skip
            # The hot loop of a simulation over 100,000 jobs: plain lookups, no calls on a hit.
            if (steps := known_commands(commands, missing)) is missing:
                steps = commands_of.decode(commands)
            if (classifier := known_classifier(cl, missing)) is missing:
                classifier = classifier_of.decode(cl)
            if (decision := known_decision(dec, missing)) is missing:
                decision = decision_of.decode(dec)
            out.append(new(RecordedJob, (id_, requester, job_type, target, origin, text or "",
                                         steps, schedule, classifier, decision,
                                         channel if door == "slack" else None)))  # fmt: skip
        yield out


async def all_recorded_jobs(
    conn: AsyncConnection, since: datetime | None = None
) -> list[RecordedJob]:
    """Every recorded job created since `since`, in one list (a simulation decides them all)."""
    rows: list[RecordedJob] = []
    with _no_cycle_collection():
        async for part in recorded_jobs(conn, since):
            rows.extend(part)
    return rows


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cycle collector paused while 100,000 rows are made: they are long-lived and hold no
    cycles, and its passes over a growing heap took a third of the read. Reference counting
    still frees everything; the collector runs again (if it was running) when the read ends."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
