"""The `acp` command: the terminal front door, a client of the service API.

Parses arguments (parser), sends the request to the service (client: the Unix socket under
ACP_HOME, or ACP_URL with ACP_TOKEN) and renders what came back (render). `acp serve` and
`acp worker` are the service (assembled in bot.serve); `acp db` and `acp env` are operators'
tools on its machine. No policy here. A user error is one clear line on stderr and a non-zero
exit, never a traceback. Heavy modules are imported only when used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.cli import artifacts, audit, db, env, jobs, policy, routines, sql, tokens
from bot.cli.parser import build_parser
from bot.cli.render import job_line, render_job

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient

__all__ = ["_job_line", "build_parser", "main", "render_job", "run"]

# The name bench/cli_startup.py renders a list with.
_job_line = job_line

# Commands that are requests to the service API (the service alone writes the database).
_HANDLERS: dict[str, Callable[[ServiceClient, argparse.Namespace], Awaitable[int]]] = {
    "submit": jobs.cmd_submit,
    "jobs": jobs.cmd_jobs,
    "show": jobs.cmd_show,
    "approve": jobs.cmd_approve,
    "reject": jobs.cmd_reject,
    "answer": jobs.cmd_answer,
    "cancel": jobs.cmd_cancel,
    "rollback": jobs.cmd_rollback,
    "replay": artifacts.cmd_replay,
    "export-test": artifacts.cmd_export_test,
    "artifact": artifacts.cmd_artifact,
    "policy": policy.cmd_policy,
    "routines": routines.cmd_routines,
    "token": tokens.cmd_token,
}


async def _run(args: argparse.Namespace) -> int:
    if args.command == "db":
        return await db.run(args)
    if args.command in ("serve", "worker", "env"):
        return await _in_service(args)
    from bot.cli.client import ServiceClient

    client = ServiceClient()
    if getattr(args, "as_user", None):
        client.as_user = args.as_user
    if args.command == "audit":
        return await audit.run(args, client)
    return await _HANDLERS[args.command](client, args)


async def _in_service(args: argparse.Namespace) -> int:
    """The service itself, its worker, and the operator's environment builds (files under
    ACP_HOME, no database rows): these open the engine."""
    from runtime.engine import Engine

    if args.command == "serve":
        # The service brings the schema up to date at start, under the upgrade lock.
        engine = await Engine.open(upgrade=True, actor=f"serve:{db.operator()[4:]}")
    else:
        engine = await Engine.open()
    try:
        if args.command == "serve":
            from bot.serve import run_service

            return await run_service(engine, workers=not args.no_worker)
        if args.command == "worker":
            from bot.serve import run_worker

            return await run_worker(engine)
        return await env.cmd_env(engine, args)
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
            return jobs.cmd_schema(args)
        if args.command == "sql":
            return sql.cmd_sql(args)
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
