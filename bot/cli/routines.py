"""`acp routines add | list | pause | resume | delete | change | run-now | history`.

A routine is proposed, changed and deleted as a job, so the policy decides and gates it like any
other; the scheduling rules live in runtime.routines, reached through the service API.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

from bot.cli.jobs import settle, show_job
from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient


async def cmd_routines(client: ServiceClient, args: argparse.Namespace) -> int:
    """acp routines add|list|pause|resume|delete|run-now|history."""
    from runtime.jobs import JobRecord

    sub = args.routines_command
    if sub == "add":
        options = " ".join(
            [args.schedule] + ([f"tz={args.tz}"] if args.tz else [])
            + ([f"misfire={args.misfire}"] if args.misfire else [])
        )  # fmt: skip
        if '"' in options:
            from runtime.errors import BadRequest

            raise BadRequest("the schedule may not contain a double quote")
        job = await client.submit(f'schedule "{options}" {args.request}')
        job = await settle(client, job, not args.no_wait)
        return await show_job(client, job, args)
    if sub == "list":
        listed = await client.call("GET", "/routines", all="1" if args.all else None)
        if args.json:
            shown = ("schedule_text", "next_run_text")
            print_json([{k: v for k, v in r.items() if k not in shown} for r in listed])
            return 0
        if not listed:
            print('no routines — propose one: acp routines add --as alice "0 9 * * MON" '
                  "'sql payments-replica: top 10 slowest queries'")  # fmt: skip
            return 0
        for r in listed:
            print(f"{r['routine_id']:<5} {r['state']:<8} {r['owner']:<10} "
                  f"{r['schedule_text']:<32} next {r['next_run_text']:<25} "
                  f"last: {r['last_result']}")  # fmt: skip
            print(f"      {r['request'][:100]}  (misfire: {r['schedule']['misfire']}; "
                  f"from {r['source']})")  # fmt: skip
        return 0
    routine = args.routine
    if sub == "history":
        firings = await client.call("GET", f"/routines/{routine}/history", limit=str(args.limit))
        if args.json:
            print_json(firings)
            return 0
        for f in firings:
            job = f"J-{f['job_id']}" if f["job_id"] else "-"
            detail = f" — {f['detail']}" if f["detail"] else ""
            due = datetime.fromisoformat(f["due_at"])
            print(f"{due:%Y-%m-%d %H:%M:%S} UTC  {f['outcome']:<9} {job:<7}{detail}")
        if not firings:
            print(f"{routine.upper()} has not fired yet")
        return 0
    body = {"schedule": getattr(args, "schedule", None)}
    done = await client.call("POST", f"/routines/{routine}/{sub}", body)
    if sub == "run-now":
        if done["job"] is None:
            print(f"{routine.upper()} did not fire")
            return 1
        job = JobRecord.model_validate(done["job"])
        print(f"{routine.upper()} fired: {job.job_id} {job.state.value}")
        return 0
    if sub in ("delete", "change"):  # a job, decided and gated like the routine's creation
        job = await settle(client, JobRecord.model_validate(done["job"]), not args.no_wait)
        return await show_job(client, job, args)
    print(f"{done['routine']['routine_id']} {done['routine']['state']}")
    return 0
