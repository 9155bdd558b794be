"""`acp submit | jobs | show | approve | reject | answer | cancel | rollback | schema`: a job's
life, through the service API (bot.cli.client). Each command sends the request and renders
what came back; no rule is decided here, and who is acting is the service's to establish.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

from bot.cli.render import job_line, print_job, print_json, render_job, review_text

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient
    from runtime.jobs import JobRecord

SETTLED_WAIT_S = 120.0


async def settle(client: ServiceClient, job: JobRecord, wait: bool) -> JobRecord:
    """Wait while a worker moves the job along, so the person sees where it landed."""
    busy = {"queued", "running", "approved"}
    if not wait or job.state.value not in busy:
        return job
    if await client.live_workers() == 0:
        print(
            f"{job.job_id} is {job.state.value}; no worker is running — start one with `acp serve`",
            file=sys.stderr,
        )
        return job
    deadline = time.monotonic() + SETTLED_WAIT_S
    while job.state.value in busy and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        job = await client.get(job.id)
    return job


async def show_job(client: ServiceClient, job: JobRecord, args: argparse.Namespace) -> int:
    if not args.json:
        await client.prefetch(job)
    return print_job(client, job, args)


async def cmd_submit(client: ServiceClient, args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.request == "-" else args.request
    job = await client.submit(text)
    if not args.json:
        print(f"{job.job_id} {job.state.value}", file=sys.stderr)
    job = await settle(client, job, not args.no_wait)
    return await show_job(client, job, args)


async def cmd_show(client: ServiceClient, args: argparse.Namespace) -> int:
    from runtime.kinds import registry

    job = await client.get(args.job)
    events = await client.events(job.id)
    calls = [e for e in events if e.kind in ("model.call", "model.fallback")]
    if args.json:
        print_json({**job.model_dump(mode="json"), "model_calls": [e.data for e in calls]})
        return 0
    await client.prefetch(job)
    print(render_job(client, job, with_diff=False))
    kind = registry.kind_for(job.spec.job_type)
    for event in events:
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
    for text in review_text(client, job):
        print()
        print(text)
    return 0


async def cmd_jobs(client: ServiceClient, args: argparse.Namespace) -> int:
    jobs = await client.jobs(mine=args.mine, states=args.state, limit=args.limit)
    if args.json:
        print_json([job.model_dump(mode="json") for job in jobs])
    elif not jobs:
        print("no jobs yet — submit one with: acp submit 'code demo: run `make test`'")
    else:
        for job in jobs:
            print(job_line(job))
    return 0


async def cmd_approve(client: ServiceClient, args: argparse.Namespace) -> int:
    job, who = await client.act(args.job, "approve", hash=args.hash)
    print(f"{job.job_id} approved by {who}", file=sys.stderr)
    return await show_job(client, await settle(client, job, not args.no_wait), args)


async def cmd_reject(client: ServiceClient, args: argparse.Namespace) -> int:
    job, who = await client.act(args.job, "reject", reason=args.reason or "", hash=args.hash)
    print(f"{job.job_id} rejected by {who}", file=sys.stderr)
    return await show_job(client, job, args)


async def cmd_answer(client: ServiceClient, args: argparse.Namespace) -> int:
    job, _ = await client.act(args.job, "answer", answer=" ".join(args.answer))
    job = await settle(client, job, not args.no_wait)
    return await show_job(client, job, args)


async def cmd_cancel(client: ServiceClient, args: argparse.Namespace) -> int:
    job, who = await client.act(args.job, "cancel", reason=args.reason or "")
    print(f"{job.job_id} cancelled by {who}", file=sys.stderr)
    return await show_job(client, job, args)


async def cmd_rollback(client: ServiceClient, args: argparse.Namespace) -> int:
    job, _ = await client.act(args.job, "rollback")
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
