"""`acp artifact | export-test | replay`: what a job left on the record, read back.

Save an artifact, write a browser job's path as a Playwright test, re-run a model job from its
recorded responses. Files are written whole or not at all, and never over one unasked.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient
    from runtime.jobs import JobRecord


async def cmd_replay(client: ServiceClient, args: argparse.Namespace) -> int:
    job = await client.get(args.job)
    report = await client.call("POST", f"/jobs/{job.job_id}/replay", {"on_base": args.on_base})
    if args.json:
        print_json(report)
    elif report["identical"]:
        base = f", base {report['base_commit'][:12]}" if report.get("base_commit") else ""
        print(
            f"replay of {job.job_id}: identical ({report['model_responses']} recorded model "
            f"responses{base}, no model called)"
        )
    else:
        base = f" (base {report['base_commit'][:12]})" if report.get("base_commit") else ""
        print(f"replay of {job.job_id}: differs{base}")
        print(report["difference"].rstrip())
    return 0 if report["identical"] else 1


async def cmd_export_test(client: ServiceClient, args: argparse.Namespace) -> int:
    job = await client.get(args.job)
    made = await client.call("GET", f"/jobs/{job.job_id}/playwright-test")
    script, filename = made["script"], made["filename"]
    if args.output == "-":
        sys.stdout.write(script)
        return 0
    path = args.output or filename
    _write_new(path, script.encode(), force=args.force)
    print(f"wrote {path}: run it with `python {path}` or `pytest {path}`")
    return 0


async def cmd_artifact(client: ServiceClient, args: argparse.Namespace) -> int:
    from runtime.errors import BadRequest

    job = await client.get(args.job)
    named = [(a.name, a.sha256) for a in job.artifacts]
    if not any(name == args.name for name, _ in named):
        named += await _model_call_artifacts(client, job)
    found = [digest for name, digest in named if name == args.name]
    if not found:
        names = ", ".join(dict.fromkeys(name for name, _ in named)) or "none"
        raise BadRequest(f"{job.job_id} has no artifact '{args.name}'", hint=f"it has: {names}")
    data = await client.artifact(found[-1])
    if args.output == "-":
        sys.stdout.buffer.write(data)
        return 0
    path = args.output or args.name
    _write_new(path, data, force=args.force)
    hint = " (open with `playwright show-trace`)" if args.name.endswith(".zip") else ""
    print(f"wrote {path}: {len(data)} bytes, sha256 {found[-1][:12]}{hint}")
    return 0


async def _model_call_artifacts(client: ServiceClient, job: JobRecord) -> list[tuple[str, str]]:
    """What each model call sent and got back: on the chain by hash from its model.call event
    (not in the job's artifact list), under the names the model client stored them as."""
    out = []
    for event in await client.events(job.id):
        if event.kind == "model.call" and "index" in event.data:
            index = event.data["index"]
            out.append((f"model-request-{index}.json", event.data["request_sha256"]))
            out.append((f"model-response-{index}.json", event.data["response_sha256"]))
    return out


def _write_new(path: str, data: bytes, *, force: bool) -> None:
    """Write a file without clobbering one unless asked; never leave half a file behind."""
    from pathlib import Path

    from runtime.errors import BadRequest

    target = Path(path)
    if target.exists() and not force:
        raise BadRequest(f"{path} exists", hint="choose another path with -o, or pass --force")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
