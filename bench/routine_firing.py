"""How late a routine's job is recorded after its due time, against a direct submit of the same
request in the same run; and how long a second instance takes to take over the scheduler.

A routine `every 1s` on SQLite fires through APScheduler (SQLAlchemy job store, the lease, the
firing row, engine.submit with the owner as requester). Lateness is the job's created_at minus
the due time; the baseline is engine.submit of the same request timed on its own. Takeover:
two schedulers share the database; the leader stops without releasing its lease (a crash),
and the time until the other fires is measured (lease 6 s).

    .venv/bin/python bench/routine_firing.py [--firings 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime import routines  # noqa: E402
from runtime.jobs import Origin  # noqa: E402
from runtime.routines import RoutineScheduler  # noqa: E402
from tests.kinds.routine.test_routines import approved_routine, open_engine, write_policy  # noqa: E402

REQUEST = "code demo: run `echo ok`"


async def lateness(firings: int) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp())
    engine = await open_engine(tmp, f"sqlite+aiosqlite:///{tmp}/acp.db", write_policy(tmp / "p"))
    try:
        routine = await approved_routine(engine, "every 1s", request=REQUEST)
        direct = []
        for _ in range(firings):
            started = time.perf_counter()
            await engine.submit(REQUEST, engine.actor("cli", "alice"), Origin.cli)
            direct.append((time.perf_counter() - started) * 1000)
        scheduler = RoutineScheduler(engine, tick_s=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        for _ in range(firings * 25):  # up to about 5 s per firing
            if len(await routines.history(engine, routine.id, limit=1000)) > firings:
                break
            await asyncio.sleep(0.2)
        stop.set()
        await task
        late = []
        for firing in (await routines.history(engine, routine.id, limit=1000))[:firings]:
            if firing.job_id is None:
                continue
            job = await engine.get(firing.job_id)
            late.append((job.created_at - firing.due_at).total_seconds() * 1000)
        return late, direct
    finally:
        await engine.close()


async def takeover() -> float:
    tmp = Path(tempfile.mkdtemp())
    engine = await open_engine(tmp, f"sqlite+aiosqlite:///{tmp}/acp.db", write_policy(tmp / "p"))
    try:
        routine = await approved_routine(engine, "every 1s", request=REQUEST)
        first = RoutineScheduler(engine, tick_s=0.2, instance="first")
        second = RoutineScheduler(engine, tick_s=0.2, instance="second")
        await first.tick()
        await second.tick()
        assert first.leader and not second.leader
        await asyncio.sleep(1.5)
        first._stop_scheduler()  # a crash: the lease is not released
        crashed = time.monotonic()
        stop = asyncio.Event()
        task = asyncio.create_task(second.run(stop))
        while True:
            done = await routines.history(engine, routine.id, limit=50)
            if any(f.instance == "second" and f.outcome == "submitted" for f in done):
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - crashed
        stop.set()
        with contextlib.suppress(Exception):
            await task
        return took
    finally:
        await engine.close()


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--firings", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"routine `every 1s` on SQLite, {args.firings} firings x {args.rounds} rounds")
    print(f"{'round':>5} {'firing late (ms)':>18} {'direct submit (ms)':>20} {'ratio':>7}")
    lates, directs = [], []
    for n in range(1, args.rounds + 1):
        late, direct = await lateness(args.firings)
        lates.append(statistics.median(late))
        directs.append(statistics.median(direct))
        print(f"{n:>5} {lates[-1]:>12.1f} (p90 {_p(late, 0.9):>5.1f}) {directs[-1]:>13.1f}"
              f" (p90 {_p(direct, 0.9):>5.1f}) {lates[-1] / directs[-1]:>7.2f}")  # fmt: skip
    print(f"median: a firing's job is recorded {statistics.median(lates):.1f} ms after its due "
          f"time; a direct submit takes {statistics.median(directs):.1f} ms "
          f"(ratio {statistics.median(lates) / statistics.median(directs):.2f})")  # fmt: skip
    takes = [await takeover() for _ in range(args.rounds)]
    print(f"takeover after the leader crashed (lease 6 s): median {statistics.median(takes):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in takes)})")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
