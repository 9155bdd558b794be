"""`acp routines add | list | pause | resume | delete | change | run-now | history`.

A routine is proposed, changed and deleted as a job, so the policy decides and gates it like any
other; the scheduling rules live in runtime.routines.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.cli.jobs import settle
from bot.cli.parser import identity
from bot.cli.render import print_job, print_json

if TYPE_CHECKING:
    from runtime.engine import Engine


async def cmd_routines(engine: Engine, args: argparse.Namespace) -> int:
    """acp routines add|list|pause|resume|delete|run-now|history."""
    from runtime import routines
    from runtime.jobs import Origin

    sub = args.routines_command
    if sub == "add":
        options = " ".join(
            [args.schedule] + ([f"tz={args.tz}"] if args.tz else [])
            + ([f"misfire={args.misfire}"] if args.misfire else [])
        )  # fmt: skip
        if '"' in options:
            from runtime.errors import BadRequest

            raise BadRequest("the schedule may not contain a double quote")
        actor = engine.actor("cli", identity(args))
        job = await engine.submit(f'schedule "{options}" {args.request}', actor, Origin.cli)
        job = await settle(engine, job, not args.no_wait)
        return print_job(engine, job, args)
    if sub == "list":
        listed = await routines.routines(engine, include_deleted=args.all)
        if args.json:
            print_json([
                {**r.model_dump(mode="json"), "routine_id": r.routine_id,
                 "next_run": r.next_run(), "last_result": await routines.last_result(engine, r)}
                for r in listed
            ])  # fmt: skip
            return 0
        if not listed:
            print('no routines — propose one: acp routines add --as alice "0 9 * * MON" '
                  "'sql payments-replica: top 10 slowest queries'")  # fmt: skip
            return 0
        for r in listed:
            nxt = r.next_run()
            when = f"{nxt:%Y-%m-%d %H:%M:%S %Z}" if nxt else "-"
            last = await routines.last_result(engine, r)
            print(f"{r.routine_id:<5} {r.state:<8} {r.owner:<10} {r.schedule.text():<32} "
                  f"next {when:<25} last: {last}")  # fmt: skip
            print(f"      {r.request[:100]}  (misfire: {r.schedule.misfire}; from {r.source})")
        return 0
    routine_id = routines.parse_routine_id(args.routine)
    if sub == "history":
        firings = await routines.history(engine, routine_id, limit=args.limit)
        if args.json:
            print_json([f.model_dump(mode="json") for f in firings])
            return 0
        for f in firings:
            job = f"J-{f.job_id}" if f.job_id else "-"
            detail = f" — {f.detail}" if f.detail else ""
            print(f"{f.due_at:%Y-%m-%d %H:%M:%S} UTC  {f.outcome:<9} {job:<7}{detail}")
        if not firings:
            print(f"R-{routine_id} has not fired yet")
        return 0
    actor = engine.actor("cli", identity(args))
    if sub == "run-now":
        job = await routines.run_now(engine, routine_id, actor)
        if job is None:
            print(f"R-{routine_id} did not fire")
            return 1
        print(f"R-{routine_id} fired: {job.job_id} {job.state.value}")
        return 0
    if sub in ("delete", "change"):  # a job, decided and gated like the routine's creation
        job = await routines.propose_change(
            engine, routine_id, actor, sub, getattr(args, "schedule", None)
        )
        job = await settle(engine, job, not args.no_wait)
        return print_job(engine, job, args)
    state = {"pause": "paused", "resume": "active"}[sub]
    routine = await routines.set_state(engine, routine_id, actor, state)
    print(f"{routine.routine_id} {routine.state}")
    return 0
