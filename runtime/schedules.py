"""Schedule text -> an APScheduler trigger: cron (5 fields) or `every N s|m|h|d`, with options.

    "0 9 * * MON"                        every Monday at 09:00 in the policy's time zone
    "0 9 * * MON tz=Europe/Paris"        ... in Paris time
    "every 15m misfire=run_once"         every 15 minutes; after downtime, run once
Pure apart from APScheduler's trigger classes; a mistake is a BadRequest with examples.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel

from runtime.errors import BadRequest

EXAMPLES = '"0 9 * * MON", "*/30 * * * *", "every 15m", "0 9 * * MON tz=Europe/Paris"'
_EVERY = re.compile(r"^every\s+(\d+)\s*(s|sec|m|min|h|d)$", re.I)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours",
          "d": "days"}  # fmt: skip


class Schedule(BaseModel):
    expression: str  # the cron or `every` part, as written
    timezone: str
    misfire: Literal["skip", "run_once"] = "skip"

    def trigger(self) -> Any:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        every = _EVERY.match(self.expression)
        if every:
            amount, unit = int(every.group(1)), _UNITS[every.group(2).lower()]
            return IntervalTrigger(**{unit: amount}, timezone=ZoneInfo(self.timezone))
        return CronTrigger.from_crontab(self.expression, timezone=ZoneInfo(self.timezone))

    def text(self) -> str:
        return f"{self.expression} ({self.timezone})"

    def next_after(self, when: datetime) -> datetime | None:
        return self.trigger().get_next_fire_time(None, when)


def parse_schedule(text: str, default_timezone: str = "UTC") -> Schedule:
    words = text.split()
    options = dict(w.split("=", 1) for w in words if "=" in w)
    expression = " ".join(w for w in words if "=" not in w)
    unknown = set(options) - {"tz", "misfire"}
    if unknown:
        raise BadRequest(
            f"unknown schedule option(s): {', '.join(sorted(unknown))}",
            hint="options are tz=Area/City and misfire=skip|run_once",
        )
    timezone = options.get("tz", default_timezone)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(
            f"unknown time zone '{timezone}'", hint="use an IANA name such as Europe/Paris or UTC"
        ) from None
    misfire = options.get("misfire", "skip")
    if misfire not in ("skip", "run_once"):
        raise BadRequest(f"misfire={misfire} is not skip or run_once")
    schedule = Schedule(expression=expression, timezone=timezone, misfire=misfire)  # type: ignore[arg-type]
    every = _EVERY.match(expression)
    if every and int(every.group(1)) == 0:
        raise BadRequest("a routine cannot run every 0 units of time")
    try:
        schedule.trigger()
    except ValueError as error:
        raise BadRequest(
            f"'{expression}' is not a schedule: {error}",
            hint=f"a cron expression with 5 fields (minute hour day month weekday) or "
            f"'every N s|m|h|d', e.g. {EXAMPLES}",
        ) from None
    return schedule


def interval_of(schedule: Schedule) -> timedelta | None:
    every = _EVERY.match(schedule.expression)
    if not every:
        return None
    return timedelta(**{_UNITS[every.group(2).lower()]: int(every.group(1))})
