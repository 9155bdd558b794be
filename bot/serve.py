"""The service process: jobs in a supervised worker process, the Slack door and its delivery
of outbox messages in this one, and the worker process's own loop (worker + routine scheduler).

Assembly only: what runs a job is runtime's, what a Slack request means is bot.slack's. The
`acp serve` and `acp worker` commands (bot.cli) open the engine and call in here.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.engine import Engine


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(engine: Engine) -> int:
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


async def run_service(engine: Engine, *, workers: bool = True) -> int:
    """The service: front doors in this process, jobs in a supervised worker process.

    Keeping sandbox work out of this event loop keeps Slack's acknowledgements fast."""
    from runtime.kinds.code.repo import ensure_repo
    from runtime.supervisor import WorkerProcess

    for name, target in engine.policy.targets.repos.items():
        if target.sample:
            path = await ensure_repo(engine.settings, target)
            print(f"sample repo '{name}' at {path}")
    from bot.api.server import start_api
    from runtime.audit.checkpoints import Checkpointer, check_extends

    spec = engine.policy.audit.checkpoints
    # A database that no longer extends its signed checkpoints was rewritten: refuse it.
    checked = await check_extends(engine.settings, engine.db, spec)
    checkpointer = Checkpointer(engine.settings, engine.db, spec)
    engine.checkpointer = checkpointer  # type: ignore[attr-defined]
    # A reloaded policy's checkpoint cadence and witnesses apply from the next checkpoint on.
    engine.policies.listeners.append(
        lambda old, new: setattr(checkpointer, "spec", new.loaded.policy.audit.checkpoints)
    )
    stop = _stop_event()
    from runtime.policy_live import PolicyWatcher

    # The policy folder is watched; SIGHUP and `acp policy reload` reload it at once.
    watcher = PolicyWatcher(engine.policies)
    engine.policy_watcher = watcher  # type: ignore[attr-defined]
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, watcher.request, "sighup", f"signal SIGHUP to process {os.getpid()}"
    )
    _protect(engine)
    print(f"acp service: home {engine.settings.home}")
    print(f"  database : {engine.db.dialect} ({_safe_url(engine.db.url)})")
    if engine.schema_found is not None:
        from runtime.store import migrate

        was = engine.schema_found.current or engine.schema_found.describe()
        print(f"  schema   : {migrate.HEAD} (was {was})")
    print(f"  policy   : {engine.settings.policy_dir} (sha256 {engine.loaded.sha256[:16]}; "
          "watched: edits, SIGHUP and `acp policy reload` load it again)")  # fmt: skip
    print(f"  audit    : {checked} signed checkpoints extended; signing every "
          f"{spec.every_events} events or {spec.every_seconds:g}s into "
          f"{engine.settings.checkpoints_dir} (+{len(spec.witnesses)} witnesses)")  # fmt: skip
    worker = WorkerProcess([sys.executable, "-m", "bot.cli", "worker"]) if workers else None
    tasks = [asyncio.create_task(checkpointer.run(stop)), asyncio.create_task(watcher.run(stop))]
    closers: list = []
    if worker is not None:
        await worker.start(engine)
        print(f"  worker   : process {worker.pid}", flush=True)
        tasks.append(asyncio.create_task(worker.supervise(engine, stop)))
        closers.append(worker.stop)
    else:
        print("  worker   : none here (--no-worker): run `acp worker` beside it", flush=True)
    try:
        api = await start_api(engine)
        closers.append(api.close)
        print(f"  api      : {api.socket_path} (unix socket: callers are who the kernel says)")
        if api.url:
            print(f"             {api.url}/api/v1 (HTTP: API tokens only)")
        console = await _start_console(engine, closers)
        slack = await _start_slack(engine, stop, tasks, closers)
    except BaseException:
        stop.set()
        for close in reversed(closers):
            await close()
        raise
    print(f"  console  : {console}")
    print(f"  slack    : {slack}")
    # Everything loaded so far lives as long as the process. Left in the collector's view, a
    # full collection walks it all (~50 ms here) and stalls every in-flight ack; frozen, it
    # costs nothing (bench/slack_ack.py: burst ratio 2.9x -> 1.0x against a bare Bolt app).
    gc.collect()
    gc.freeze()
    # The loop shares the interpreter with the database's worker thread (aiosqlite): a request
    # waiting for the GIL waits up to the switch interval (5 ms by default) behind a query.
    sys.setswitchinterval(0.0005)
    print(
        "ready — in another terminal: acp submit --as alice "
        "'code demo: run `sed -i \"s/teh/the/\" README.md`'",
        flush=True,
    )
    try:
        await asyncio.gather(*tasks)
    finally:
        for close in reversed(closers):
            await close()
    print("acp service stopped")
    return 0


async def _start_console(engine: Engine, closers: list) -> str:
    """The web console, unless ACP_CONSOLE_LISTEN is empty; how people sign in to it."""
    from bot.console.server import start_console

    console = await start_console(engine)
    if console is None:
        return "off (ACP_CONSOLE_LISTEN is empty)"
    closers.append(console.close)
    return f"{console.url} (sign in: {console.sign_in})"


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
    import aiohttp

    from bot.slack.app import build_app, make_client
    from bot.slack.delivery import SlackDelivery
    from bot.slack.server import EVENTS_PATH, start_http, start_socket_mode

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))  # the SDK's deadline
    closers.append(session.close)
    client = make_client(token, os.environ.get("ACP_SLACK_API_URL"), session=session)
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


def _protect(engine: Engine) -> None:
    """ACP_HOME is reachable (to its socket) but not readable by others, and the database and
    artifacts only by the service: every other door goes through the API."""
    import contextlib
    import stat

    home = engine.settings.home
    with contextlib.suppress(OSError):
        if home.stat().st_uid == os.geteuid():
            os.chmod(home, 0o711)
    paths = [engine.settings.artifacts_dir, engine.settings.audit_key_file.parent]
    if engine.db.sqlite_path is not None:
        db = engine.db.sqlite_path
        paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    for path in paths:
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode
            os.chmod(path, 0o700 if stat.S_ISDIR(mode) else 0o600)


def _safe_url(url: str) -> str:
    from runtime.secrets import redact

    return redact(url)
