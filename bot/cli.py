"""The `acp` command: the terminal front door over runtime.engine.

Parses arguments, calls the engine, renders. No policy here. A user error is one clear line
on stderr and a non-zero exit, never a traceback. Heavy modules are imported only when used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.jobs import JobRecord

SETTLED_WAIT_S = 120.0


def _identity(args: argparse.Namespace) -> str:
    return args.as_user or os.environ.get("ACP_USER") or getpass.getuser()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# --- rendering ---------------------------------------------------------------


def render_job(engine: Engine, job: JobRecord, *, with_diff: bool = True) -> str:
    from runtime.jobs import TERMINAL_STATES

    spec = job.spec
    decision = job.decision
    lines = [
        f"{job.job_id}  {job.state.value}",
        f"  type/target : {spec.job_type.value} {spec.target or '(none)'}",
        f"  requester   : {spec.requester} via {spec.origin.value}",
        f"  prompt      : {job.prompt if len(job.prompt) < 300 else job.prompt[:300] + '…'}",
        f"  decision    : {decision.get('effect')} — " + "; ".join(decision.get("reasons", [])),
        f"  rules       : {', '.join(decision.get('rule_ids', [])) or '-'}",
        f"  policy hash : {job.policy_hash[:16]}",
        f"  tools       : {', '.join(job.tools_granted) or '-'}",
        f"  model       : {job.model.model} (rule {job.model.route_rule or '-'}), "
        f"{job.model.calls} calls, ${job.model.cost_usd:.4f}",
    ]
    if spec.approval_required_for and job.state not in TERMINAL_STATES:
        # What the job will stop at; once it has ended, its approvals below say what happened.
        lines.append(f"  approval for: {', '.join(spec.approval_required_for)}")
    if job.clarification and job.state.value == "needs_clarification":
        lines.append(f"  question    : {job.clarification.question}")
        if job.clarification.options:
            lines.append(f"  options     : {', '.join(job.clarification.options)}")
        lines.append(f"  answer with : acp answer {job.job_id} '<answer>'")
    for gate in job.approvals:
        status = gate.decision or "pending"
        who = f" by {gate.decided_by}" if gate.decided_by else ""
        when = f" at {gate.decided_at:%Y-%m-%d %H:%M:%S} UTC" if gate.decided_at else ""
        expires = (
            f", expires {gate.expires_at:%Y-%m-%d %H:%M} UTC"
            if gate.expires_at and not gate.decision
            else ""
        )
        lines.append(
            f"  approval    : {gate.action} {status}{who}{when} (rule {gate.rule_id}; "
            f"approvers: {', '.join(gate.approvers) or '-'}; change {gate.action_hash[:12]}"
            f"{expires})"
        )
    pending = job.pending_action or {}
    if job.state.value == "awaiting_approval" and pending.get("action") == "mutate":
        lines.append(f"  pending     : {pending['description']}")
        lines.append(f"  at step     : {pending['step']}")
        lines.append(
            f"  evidence    : screenshot {pending['screenshot_sha256'][:12]} (element outlined), "
            f"trace {pending['trace_sha256'][:12]}; save with "
            f"`acp artifact {job.job_id} <name> -o <file>`"
        )
    if job.state.value == "awaiting_approval":
        lines.append(f"  approve with: acp approve {job.job_id} --as <approver>")
    if job.result.get("reason"):
        lines.append(f"  result      : {job.result['reason']}")
    for ref in job.artifacts:
        lines.append(f"  artifact    : {ref.name} ({ref.size} bytes, sha256 {ref.sha256[:12]})")
    diff = next((a for a in reversed(job.artifacts) if a.name == "diff.patch"), None)
    documents = [a for a in _review_artifacts(job) if a is not None]
    if pending.get("documents"):
        for line in pending["documents"]:
            lines.append(f"  document    : {line}")
    if with_diff and documents:
        for ref in documents:
            lines.append("")
            lines.append(engine.artifacts.read(ref.sha256).decode(errors="replace").rstrip())
    elif with_diff and diff:
        stat = (job.pending_action or {}).get("stat") or {}
        if stat:
            lines.append(
                f"  diff        : {stat.get('files_changed', 0)} file(s), "
                f"+{stat.get('insertions', 0)} -{stat.get('deletions', 0)}"
            )
        lines.append("")
        lines.append(engine.artifacts.read(diff.sha256).decode(errors="replace").rstrip())
    return "\n".join(lines)


def _review_artifacts(job: JobRecord) -> list[Any]:
    """A doc job's review: its document diff and preview (the git patch of a binary is not)."""
    named = {a.name: a for a in job.artifacts}
    return [named.get("document-diff.txt"), named.get("preview.txt")]


def _job_line(job: JobRecord) -> str:
    spec = job.spec
    return (
        f"{job.job_id:<6} {job.state.value:<19} {spec.job_type.value:<7} "
        f"{(spec.target or '-'):<18} {spec.requester:<10} {job.created_at:%Y-%m-%d %H:%M}  "
        f"{spec.instruction[:50]}"
    )


# --- commands ----------------------------------------------------------------


async def _settle(engine: Engine, job: JobRecord, wait: bool) -> JobRecord:
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

    actor = engine.actor("cli", _identity(args))
    text = sys.stdin.read() if args.request == "-" else args.request
    job = await engine.submit(text, actor, Origin.cli)
    if not args.json:
        print(f"{job.job_id} {job.state.value}", file=sys.stderr)
    job = await _settle(engine, job, not args.no_wait)
    return _show(engine, job, args)


def _show(engine: Engine, job: JobRecord, args: argparse.Namespace) -> int:
    if args.json:
        _print_json(job.model_dump(mode="json"))
    else:
        print(render_job(engine, job))
    return 0


async def cmd_show(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    job = await engine.get(parse_job_id(args.job))
    calls = [e for e in await engine.events(job.id) if e.kind in ("model.call", "model.fallback")]
    if args.json:
        _print_json({**job.model_dump(mode="json"), "model_calls": [e.data for e in calls]})
        return 0
    print(render_job(engine, job, with_diff=False))
    for event in await engine.events(job.id):
        if event.kind == "browser.step":
            d = event.data
            mark = "ok" if d["ok"] else "--"
            detail = f" — {d['detail']}" if d.get("detail") else ""
            print(
                f"  step {d['index']:<7}: {mark} {d['action']} {d['target']} @ {d['url']}{detail}"
            )
        elif event.kind == "tool.refused" and event.data.get("tool") == "browser":
            print(f"  refused     : {event.data.get('url', '')} — {event.data['reason']}")
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
    names = ("result.txt", "diff.patch")
    if job.spec.job_type.value == "doc" and any(_review_artifacts(job)):
        names = ("document-diff.txt", "preview.txt")
    for name in names:
        found = next((a for a in reversed(job.artifacts) if a.name == name), None)
        if found:
            print()
            print(engine.artifacts.read(found.sha256).decode(errors="replace").rstrip())
    return 0


async def cmd_replay(engine: Engine, args: argparse.Namespace) -> int:
    from runtime import code_jobs
    from runtime.jobs import parse_job_id

    job = await engine.get(parse_job_id(args.job))
    report = await code_jobs.replay(engine, job, on_base=args.on_base)
    if args.json:
        _print_json(report.model_dump())
    elif report.identical:
        print(
            f"replay of {job.job_id}: identical ({report.model_responses} recorded model "
            f"responses, base {report.base_commit[:12]}, no model called)"
        )
    else:
        print(f"replay of {job.job_id}: differs (base {report.base_commit[:12]})")
        print(report.difference.rstrip())
    return 0 if report.identical else 1


async def cmd_export_test(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.browser_export import default_filename, export_test
    from runtime.errors import BadRequest
    from runtime.jobs import parse_job_id

    job = await engine.get(parse_job_id(args.job))
    site = engine.policy.targets.sites.get(job.spec.target or "")
    if site is None and job.spec.job_type.value == "browser":
        raise BadRequest(f"site '{job.spec.target}' of {job.job_id} is no longer in the policy")
    script = export_test(job, site)  # type: ignore[arg-type]
    if args.output == "-":
        sys.stdout.write(script)
        return 0
    path = args.output or default_filename(job)
    _write_new(path, script.encode(), force=args.force)
    print(f"wrote {path}: run it with `python {path}` or `pytest {path}`")
    return 0


async def cmd_artifact(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.errors import BadRequest
    from runtime.jobs import parse_job_id

    job = await engine.get(parse_job_id(args.job))
    named = [(a.name, a.sha256) for a in job.artifacts]
    if not any(name == args.name for name, _ in named):
        named += await _model_call_artifacts(engine, job)
    found = [digest for name, digest in named if name == args.name]
    if not found:
        names = ", ".join(dict.fromkeys(name for name, _ in named)) or "none"
        raise BadRequest(f"{job.job_id} has no artifact '{args.name}'", hint=f"it has: {names}")
    data = engine.artifacts.read(found[-1])
    if args.output == "-":
        sys.stdout.buffer.write(data)
        return 0
    path = args.output or args.name
    _write_new(path, data, force=args.force)
    hint = " (open with `playwright show-trace`)" if args.name.endswith(".zip") else ""
    print(f"wrote {path}: {len(data)} bytes, sha256 {found[-1][:12]}{hint}")
    return 0


async def _model_call_artifacts(engine: Engine, job: JobRecord) -> list[tuple[str, str]]:
    """What each model call sent and got back: on the chain by hash from its model.call event
    (not in the job's artifact list), under the names the model client stored them as."""
    out = []
    for event in await engine.events(job.id):
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
        actor = engine.actor("cli", _identity(args))
        job = await engine.submit(f'schedule "{options}" {args.request}', actor, Origin.cli)
        job = await _settle(engine, job, not args.no_wait)
        return _show(engine, job, args)
    if sub == "list":
        listed = await routines.routines(engine, include_deleted=args.all)
        if args.json:
            _print_json([
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
            _print_json([f.model_dump(mode="json") for f in firings])
            return 0
        for f in firings:
            job = f"J-{f.job_id}" if f.job_id else "-"
            detail = f" — {f.detail}" if f.detail else ""
            print(f"{f.due_at:%Y-%m-%d %H:%M:%S} UTC  {f.outcome:<9} {job:<7}{detail}")
        if not firings:
            print(f"R-{routine_id} has not fired yet")
        return 0
    actor = engine.actor("cli", _identity(args))
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
        job = await _settle(engine, job, not args.no_wait)
        return _show(engine, job, args)
    state = {"pause": "paused", "resume": "active"}[sub]
    routine = await routines.set_state(engine, routine_id, actor, state)
    print(f"{routine.routine_id} {routine.state}")
    return 0


async def cmd_jobs(engine: Engine, args: argparse.Namespace) -> int:
    requester = None
    if args.mine:
        requester = engine.actor("cli", _identity(args)).person
    states = args.state.split(",") if args.state else None
    jobs = await engine.jobs(requester=requester, states=states, limit=args.limit)
    if args.json:
        _print_json([job.model_dump(mode="json") for job in jobs])
    elif not jobs:
        print("no jobs yet — submit one with: acp submit 'code demo: run `make test`'")
    else:
        for job in jobs:
            print(_job_line(job))
    return 0


async def cmd_approve(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", _identity(args))
    job = await engine.approve(parse_job_id(args.job), actor, action_hash=args.hash)
    print(f"{job.job_id} approved by {actor.person}", file=sys.stderr)
    return _show(engine, await _settle(engine, job, not args.no_wait), args)


async def cmd_reject(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", _identity(args))
    job = await engine.reject(
        parse_job_id(args.job), actor, reason=args.reason or "", action_hash=args.hash
    )
    print(f"{job.job_id} rejected by {actor.person}", file=sys.stderr)
    return _show(engine, job, args)


async def cmd_answer(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", _identity(args))
    job = await engine.answer(parse_job_id(args.job), actor, " ".join(args.answer))
    job = await _settle(engine, job, not args.no_wait)
    return _show(engine, job, args)


async def cmd_rollback(engine: Engine, args: argparse.Namespace) -> int:
    from runtime.jobs import parse_job_id

    actor = engine.actor("cli", _identity(args))
    job = await engine.rollback(parse_job_id(args.job), actor)
    print(f"{job.job_id} rolled back: revert commit {job.result.get('revert_commit', '')[:12]}")
    return 0


async def cmd_audit_verify(engine: Engine, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    report = await engine.verify_audit()
    took = time.perf_counter() - started
    if args.json:
        _print_json({"ok": True, **report.model_dump(), "seconds": round(took, 3)})
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


async def cmd_policy_check(engine: Engine, args: argparse.Namespace) -> int:
    actor = engine.actor("cli", _identity(args))
    check = engine.check(args.request, actor)
    if args.json:
        _print_json(check.model_dump(mode="json"))
        return 0
    d = check.decision
    parsed = check.parsed
    print(
        f"as {check.person}: {parsed['job_type'] or '?'} {parsed['target'] or '?'} "
        f"(by {parsed['method']}, confidence {parsed['confidence']:.2f})"
    )
    print(f"  effect      : {d.effect}")
    for reason in d.reasons:
        print(f"  reason      : {reason}")
    print(f"  rules       : {', '.join(d.rule_ids) or '-'}")
    print(f"  tools       : {', '.join(d.tools_granted) or '-'}")
    for gate in d.approvals:
        print(
            f"  approval    : {gate.action} by {', '.join(gate.approvers) or 'nobody'} "
            f"(rule {gate.rule_id}{', four-eyes' if gate.four_eyes else ''})"
        )
    print(f"  model route : {d.model or '-'} (rule {d.model_rule or '-'}), risk {d.risk or '-'}")
    if d.question:
        print(f"  would ask   : {d.question} {d.options or ''}")
    if parsed.get("commands"):
        print(f"  steps       : {parsed['commands']}")
    print(f"  policy hash : {check.policy_hash[:16]}  (nothing was run or recorded)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from runtime.jobs import JobSpec

    _print_json(JobSpec.model_json_schema())
    return 0


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def cmd_worker(engine: Engine, args: argparse.Namespace) -> int:
    """A worker process: claims jobs and runs them until told to stop."""
    from runtime.routines import RoutineScheduler
    from runtime.worker import Worker

    stop = _stop_event()
    worker = Worker(engine)
    scheduler = RoutineScheduler(engine, instance=worker.id)
    print(f"worker {worker.id} started", flush=True)
    # Routines are scheduled here, out of the front door's event loop; of all instances on one
    # database, the one holding the scheduler lease runs the scheduler.
    await asyncio.gather(worker.run(stop), scheduler.run(stop))
    print(f"worker {worker.id} stopped", flush=True)
    return 0


async def cmd_serve(engine: Engine, args: argparse.Namespace) -> int:
    """The service: front doors in this process, jobs in a supervised worker process.

    Keeping sandbox work out of this event loop keeps Slack's acknowledgements fast."""
    from runtime import code_jobs
    from runtime.supervisor import WorkerProcess

    for name, target in engine.policy.targets.repos.items():
        if target.sample:
            _, path = await code_jobs.ensure_repo(engine, name)
            print(f"sample repo '{name}' at {path}")
    stop = _stop_event()
    print(f"acp service: home {engine.settings.home}")
    print(f"  database : {engine.db.dialect} ({_safe_url(engine.db.url)})")
    if engine.schema_found is not None:
        from runtime.store import migrate

        was = engine.schema_found.current or engine.schema_found.describe()
        print(f"  schema   : {migrate.HEAD} (was {was})")
    print(f"  policy   : {engine.settings.policy_dir} (sha256 {engine.loaded.sha256[:16]})")
    worker = WorkerProcess([sys.executable, "-m", "bot.cli", "worker"])
    await worker.start(engine)
    print(f"  worker   : process {worker.pid}", flush=True)
    tasks = [asyncio.create_task(worker.supervise(engine, stop))]
    closers: list = []
    try:
        slack = await _start_slack(engine, stop, tasks, closers)
    except BaseException:
        stop.set()
        await worker.stop()
        raise
    print(f"  slack    : {slack}")
    # Everything loaded so far lives as long as the process. Left in the collector's view, a
    # full collection walks it all (~50 ms here) and stalls every in-flight ack; frozen, it
    # costs nothing (bench/slack_ack.py: burst ratio 2.9x -> 1.0x against a bare Bolt app).
    gc.collect()
    gc.freeze()
    print(
        "ready — in another terminal: acp submit --as alice "
        "'code demo: run `sed -i \"s/teh/the/\" README.md`'",
        flush=True,
    )
    try:
        await asyncio.gather(*tasks)
    finally:
        for close in closers:
            await close()
        await worker.stop()
    print("acp service stopped")
    return 0


async def _start_slack(engine: Engine, stop: asyncio.Event, tasks: list, closers: list) -> str:
    """Start the Slack door when its tokens are set; say why not otherwise."""
    token = os.environ.get("SLACK_BOT_TOKEN")
    secret = os.environ.get("SLACK_SIGNING_SECRET")
    app_token = os.environ.get("SLACK_APP_TOKEN")
    if not token or not (secret or app_token):
        return (
            "not configured (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET, or SLACK_APP_TOKEN "
            "for Socket Mode; see README)"
        )
    from bot.slack.app import build_app, make_client
    from bot.slack.delivery import SlackDelivery
    from bot.slack.server import EVENTS_PATH, start_http, start_socket_mode

    client = make_client(token, os.environ.get("ACP_SLACK_API_URL"))
    app = build_app(engine, client=client, signing_secret=secret)
    tasks.append(asyncio.create_task(SlackDelivery(engine, client).run(stop)))
    if app_token:
        handler = await start_socket_mode(app, app_token)
        closers.append(handler.close_async)
        return "Socket Mode"
    host = os.environ.get("ACP_HOST", "127.0.0.1")
    port = int(os.environ.get("ACP_PORT", "3000"))
    runner = await start_http(app, host, port)
    closers.append(runner.cleanup)
    return f"HTTP on http://{host}:{port}{EVENTS_PATH}"


def _safe_url(url: str) -> str:
    from runtime.secrets import redact

    return redact(url)


# --- argument parsing ----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acp", description="Agent control plane: governed jobs from the terminal."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, identity: bool = False, read: bool = False):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if identity:
            cmd.add_argument(
                "--as",
                dest="as_user",
                metavar="USER",
                help="act as this person (default: the terminal user)",
            )
        if read:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        return cmd

    p = add("submit", "submit a request as a job", identity=True, read=True)
    p.add_argument("request", help="e.g. 'code demo: run `make test`' ('-' reads stdin)")
    p.add_argument("--no-wait", action="store_true", help="return as soon as the job is queued")
    p = add("jobs", "list jobs, newest first", identity=True, read=True)
    p.add_argument("--mine", action="store_true", help="only jobs I requested")
    p.add_argument("--state", help="comma-separated states, e.g. awaiting_approval")
    p.add_argument("--limit", type=int, default=50)
    p = add("show", "show a job: state, decision, approvals, artifacts, diff", read=True)
    p.add_argument("job", help="job id, e.g. J-1")
    p = add("approve", "approve the pending action of a job", identity=True, read=True)
    p.add_argument("job")
    p.add_argument("--hash", help="the change hash you reviewed (refused if it differs)")
    p.add_argument("--no-wait", action="store_true")
    p = add("reject", "reject the pending action of a job", identity=True, read=True)
    p.add_argument("job")
    p.add_argument("--reason", help="why (recorded)")
    p.add_argument("--hash", help="the change hash you reviewed")
    p = add("answer", "answer a job's clarifying question", identity=True, read=True)
    p.add_argument("job")
    p.add_argument("answer", nargs="+")
    p.add_argument("--no-wait", action="store_true")
    p = add("rollback", "revert a published change", identity=True)
    p.add_argument("job")
    audit = sub.add_parser("audit", help="verify or export the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    p = audit_sub.add_parser("verify", help="check the hash chain and artifacts")
    p.add_argument("--json", action="store_true")
    p = audit_sub.add_parser("export", help="write events as JSON lines")
    p.add_argument("--job", help="only this job's events")
    p.add_argument("--output", "-o", help="file to write (default stdout)")
    policy = sub.add_parser("policy", help="inspect the policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    p = policy_sub.add_parser("check", help="what would happen to a request (runs nothing)")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--json", action="store_true")
    p.add_argument("request")
    p = add("replay", "re-run a model job from its recorded responses; compare the diff", read=True)
    p.add_argument("job")
    p.add_argument("--on-base", help="replay on this branch's tip instead of the recorded base")
    p = add("export-test", "write a browser job's path as a Playwright test")
    p.add_argument("job")
    p.add_argument("--output", "-o", help="file to write (default test_j_N.py; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = add("artifact", "save one of a job's artifacts (trace.zip, a screenshot…)")
    p.add_argument("job")
    p.add_argument("name", help="artifact name as `acp show` lists it")
    p.add_argument("--output", "-o", help="file to write (default: the name; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    routines = sub.add_parser("routines", help="scheduled requests: every firing is a job")
    r_sub = routines.add_subparsers(dest="routines_command", required=True, metavar="SUBCOMMAND")
    p = r_sub.add_parser("add", help="propose a routine (a job; the policy may want approval)")
    p.add_argument("schedule", help="'0 9 * * MON' (cron, 5 fields) or 'every 15m'")
    p.add_argument("request", help="what each firing submits, e.g. 'sql payments-replica: …'")
    p.add_argument("--tz", help="IANA time zone (default: the policy's routines.timezone)")
    p.add_argument("--misfire", choices=["skip", "run_once"], help="after downtime (default skip)")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-wait", action="store_true")
    p = r_sub.add_parser("list", help="owner, schedule and time zone, next run, last result")
    p.add_argument("--all", action="store_true", help="include deleted routines")
    p.add_argument("--json", action="store_true")
    for name, text in (("pause", "stop firing (the owner or a routine approver)"),
                       ("resume", "fire again"),
                       ("run-now", "fire once now, through the same policy")):  # fmt: skip
        p = r_sub.add_parser(name, help=text)
        p.add_argument("routine", help="routine id, e.g. R-1")
        p.add_argument("--as", dest="as_user", metavar="USER")
    for name, text in (("delete", "remove the routine (a job; the policy may want approval)"),
                       ("change", "give it a new schedule (a job, like creating it)")):  # fmt: skip
        p = r_sub.add_parser(name, help=text)
        p.add_argument("routine", help="routine id, e.g. R-1")
        if name == "change":
            p.add_argument("schedule", help="the new schedule, e.g. '0 8 * * MON tz=UTC'")
        p.add_argument("--as", dest="as_user", metavar="USER")
        p.add_argument("--json", action="store_true")
        p.add_argument("--no-wait", action="store_true")
    p = r_sub.add_parser("history", help="each firing: due time, outcome, job")
    p.add_argument("routine")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    from bot import cli_db

    cli_db.add_parser(sub)
    add("schema", "print the job schema (JSON Schema)")
    add("serve", "run the service: upgrades the database, then worker (and Slack if configured)")
    add("worker", "run a worker only")
    return parser


_ASYNC: dict[str, Callable[[Engine, argparse.Namespace], Awaitable[int]]] = {
    "submit": cmd_submit,
    "jobs": cmd_jobs,
    "show": cmd_show,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "answer": cmd_answer,
    "rollback": cmd_rollback,
    "replay": cmd_replay,
    "export-test": cmd_export_test,
    "artifact": cmd_artifact,
    "serve": cmd_serve,
    "worker": cmd_worker,
}


async def _run(args: argparse.Namespace) -> int:
    from runtime.engine import Engine

    if args.command == "db":
        from bot import cli_db

        return await cli_db.run(args)
    if args.command == "serve":
        from bot import cli_db

        # The service brings the schema up to date at start, under the upgrade lock.
        engine = await Engine.open(upgrade=True, actor=f"serve:{cli_db.operator()[4:]}")
    else:
        engine = await Engine.open()
    try:
        if args.command == "audit":
            handler = cmd_audit_verify if args.audit_command == "verify" else cmd_audit_export
        elif args.command == "policy":
            handler = cmd_policy_check
        elif args.command == "routines":
            handler = cmd_routines
        else:
            handler = _ASYNC[args.command]
        return await handler(engine, args)
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for stream in (sys.stdout, sys.stderr):
        # A record may hold text a terminal cannot encode (an escaped lone surrogate is fine,
        # a raw one from argv is not): print it escaped rather than die mid-line.
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    from runtime.errors import AcpError

    try:
        if args.command == "schema":
            return cmd_schema(args)
        return asyncio.run(_run(args))
    except AcpError as error:
        print(f"acp: {error.render()}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The console script: main(), then skip interpreter teardown (about 50 ms) once done."""
    try:
        code = main()
    except BrokenPipeError:  # `acp show J-1 | head` closed the pipe: not an error
        code = 0
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
