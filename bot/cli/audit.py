"""`acp audit verify | export`: check the hash chain and its artifacts, or write the events out.

Reads the log only; verifying is the engine's, this module reports what it found.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from bot.cli.render import print_json

if TYPE_CHECKING:
    from runtime.engine import Engine


async def cmd_audit_verify(engine: Engine, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    report = await engine.verify_audit()
    took = time.perf_counter() - started
    if args.json:
        print_json({"ok": True, **report.model_dump(), "seconds": round(took, 3)})
    else:
        print(
            f"chain intact: {report.events} events, {report.artifacts_checked} artifact "
            f"references checked, head {report.head[:16]} ({took:.2f}s)"
        )
    return 0


async def cmd_audit_export(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    job_id = parse_job_id(args.job) if args.job else None
    events = await engine.events(job_id)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115, ASYNC230
    try:
        for event in events:
            out.write(json.dumps(event.model_dump(mode="json"), ensure_ascii=False) + "\n")
    finally:
        if args.output:
            out.close()
            print(f"wrote {len(events)} events to {args.output}", file=sys.stderr)
    return 0
