"""`acp submit | jobs | show | approve | reject | answer | rollback | schema`: a job's life.

Each command calls the engine and renders what it returned; no rule is decided here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

from bot.cli.parser import identity
from bot.cli.render import job_line, print_job, print_json, render_job, review_text

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.jobs import JobRecord

SETTLED_WAIT_S = 120.0


async def settle(engine: Engine, job: JobRecord, wait: bool) -> JobRecord:
    """Wait while a worker moves the job along, so the person sees where it landed."""
    busy = {"queued", "running", "approved"}
    if not wait or job.state.value not in busy:
        return job
    if await engine.live_workers() == 0:
        print(
            f"{job.job_id} is {job.state.value}; no worker is running — start one with `acp serve`",
            file=sys.stderr,
        )
        return job
    deadline = time.monotonic() + SETTLED_WAIT_S
    while job.state.value in busy and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        job = await engine.get(job.id)
    return job


async def cmd_submit(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import Origin

    actor = engine.actor("cli", identity(args))
    text = sys.stdin.read() if args.request == "-" else args.request
    job = await engine.submit(text, actor, Origin.cli)
    if not args.json:
        print(f"{job.job_id} {job.state.value}", file=sys.stderr)
    job = await settle(engine, job, not args.no_wait)
    return print_job(engine, job, args)


async def cmd_show(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id
    from runtime.kinds import registry

    job = await engine.get(parse_job_id(args.job))
    calls = [e for e in await engine.events(job.id) if e.kind in ("model.call", "model.fallback")]
    if args.json:
        print_json({**job.model_dump(mode="json"), "model_calls": [e.data for e in calls]})
        return 0
    print(render_job(engine, job, with_diff=False))
    kind = registry.kind_for(job.spec.job_type)
    for event in await engine.events(job.id):
        told = kind.describe(event.kind, event.data)  # the kind's own timeline (browser steps)
        if told is not None:
            print(f"  {told[0]:<12}: {told[1]}")
    for event in calls:
        d = event.data
        if event.kind == "model.fallback":
            print(f"  fallback    : {d['model']} failed ({d['error'][:80]}); next {d['next']}")
            continue
        print(
            f"  model call  : #{d['index']} {d['model']} {d['prompt_tokens']}+"
            f"{d['completion_tokens']} tokens, ${d['cost_usd']:.6f}, {d['latency_ms']:.0f} ms "
            f"(route {d['route_rule']})"
        )
    for text in review_text(engine, job):
        print()
        print(text)
    return 0


async def cmd_jobs(engine: Engine, args: argparse.Namespace) -> int:
    requester = None
    if args.mine:
        requester = engine.actor("cli", identity(args)).person
    states = args.state.split(",") if args.state else None
    jobs = await engine.jobs(requester=requester, states=states, limit=args.limit)
    if args.json:
        print_json([job.model_dump(mode="json") for job in jobs])
    elif not jobs:
        print("no jobs yet — submit one with: acp submit 'code demo: run `make test`'")
    else:
        for job in jobs:
            print(job_line(job))
    return 0


async def cmd_approve(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", identity(args))
    job = await engine.approve(parse_job_id(args.job), actor, action_hash=args.hash)
    print(f"{job.job_id} approved by {actor.person}", file=sys.stderr)
    return print_job(engine, await settle(engine, job, not args.no_wait), args)


async def cmd_reject(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", identity(args))
    job = await engine.reject(
        parse_job_id(args.job), actor, reason=args.reason or "", action_hash=args.hash
    )
    print(f"{job.job_id} rejected by {actor.person}", file=sys.stderr)
    return print_job(engine, job, args)


async def cmd_answer(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", identity(args))
    job = await engine.answer(parse_job_id(args.job), actor, " ".join(args.answer))
    job = await settle(engine, job, not args.no_wait)
    return print_job(engine, job, args)


async def cmd_rollback(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", identity(args))
    job = await engine.rollback(parse_job_id(args.job), actor)
    result = job.result
    if "revert_pull_request" in result:
        pr = result["revert_pull_request"]
        print(f"{job.job_id} rolled back: opened revert pull request #{pr['number']} {pr['url']}")
    elif "pull_request_closed" in result:
        print(
            f"{job.job_id} rolled back: closed pull request #{result['pull_request_closed']} "
            f"and deleted {result.get('branch_deleted', 'its branch')}"
        )
    else:
        where = f" on {result['reverted_on']}" if result.get("reverted_on") else ""
        print(
            f"{job.job_id} rolled back: revert commit {result.get('revert_commit', '')[:12]}{where}"
        )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from runtime.jobs import JobSpec

    print_json(JobSpec.model_json_schema())
    return 0
