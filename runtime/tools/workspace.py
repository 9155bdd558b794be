"""The tools over a job's worktree: read, list and write files, and run a sandboxed command.

Files are confined to the worktree (runtime.tools.fs); file I/O runs in a thread, never on the
event loop, so a slow disk cannot stall the worker and the agent's deadline can still fire.
A command runs under bubblewrap with no network (runtime.sandbox.bwrap); its output is an
artifact, its secrets redacted.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from runtime.sandbox.bwrap import CommandResult, run_sandboxed
from runtime.sandbox.egress import Connection, Refusal
from runtime.sandbox.egress_route import open_route
from runtime.sandbox.plan import ENV_MOUNT, REPO_MOUNT
from runtime.sandbox.scope import HostScope
from runtime.secrets import redact
from runtime.tools import fs
from runtime.tools.base import tool

if TYPE_CHECKING:
    from runtime.toolbox import ToolUse


@tool("fs.read", grant="fs.read", model_name="read_file")
async def read_file(use: ToolUse, path: str) -> str:
    """Read a text file of the repository.

    Args:
        path: relative path
    """
    grant = fs.FsGrant(root=use.workspace.path, writable=False)
    content = await asyncio.to_thread(fs.read_file, grant, path)
    await use.record({"path": path, "bytes": len(content)})
    return content


@tool("fs.list", grant="fs.read", model_name="list_dir", text="\n".join)
async def list_dir(use: ToolUse, path: str = ".") -> list[str]:
    """List a directory (folders end with /).

    Args:
        path: relative path
    """
    grant = fs.FsGrant(root=use.workspace.path, writable=False)
    entries = await asyncio.to_thread(fs.list_dir, grant, path or ".")
    await use.record({"path": path, "entries": len(entries)})
    return entries


@tool("fs.write", grant="fs.write", model_name="write_file", text=lambda _: "written")
async def write_file(use: ToolUse, path: str, content: str) -> None:
    """Create or replace a text file.

    Args:
        path: relative path
        content: the whole new content
    """
    grant = fs.FsGrant(root=use.workspace.path, writable=True)
    await asyncio.to_thread(fs.write_file, grant, path, content)
    await use.record({"path": path, "bytes": len(content)})


def _exit_text(result: CommandResult) -> str:
    return f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"


@tool("shell", grant="shell", model_name="run", text=_exit_text)
async def shell(use: ToolUse, command: str) -> CommandResult:
    """Run a shell command in the repository at /repo (sandboxed; the network only as the
    job's grant allows, through a proxy; the target's toolchain, if it has one, at /env).

    Args:
        command: a bash command line
    """
    limits = use.limits
    index = use.count("shell")
    plan = use.sandbox
    options: dict[str, Any] = {
        "ro_paths": [use.workspace.git_common_dir],
        "timeout_s": limits.command_timeout_s,
        "output_cap": limits.output_cap_bytes,
    }
    connections: list[Connection] = []
    refused: list[Refusal] = []
    if plan is None:
        result = await run_sandboxed(command, use.workspace.path, **options)
    else:
        options["workdir_at"] = REPO_MOUNT
        options["env"] = {"PATH": plan.path}
        if plan.environment is not None:
            options["binds"] = [(plan.environment, ENV_MOUNT)]
        async with open_route(
            plan.home,
            use.job.job_id,
            HostScope(plan.network).refusal,
            plan.credentials,
            on_connection=connections.append,
        ) as route:
            result = await run_sandboxed(command, use.workspace.path, egress=route, **options)
            refused = route.refusals_since(0)
            if route.refused or connections:
                await asyncio.sleep(0.05)  # connections the command's end cut are counted
        if refused:
            told = "".join(f"\nacp: {r.method} {r.host}:{r.port} refused: {r.reason}"
                           for r in refused)  # fmt: skip
            result = result.model_copy(update={"stderr": result.stderr + told})
        for connection in connections:
            await use.box.recorder.log("network.connection", _connection_data(connection))
        for refusal in refused:
            await use.box.recorder.log(
                "network.refused",
                {"host": refusal.host, "port": refusal.port, "method": refusal.method,
                 "reason": refusal.reason, "command_index": index},
            )  # fmt: skip
    log = redact(
        f"$ {command}\n--- exit {result.exit_code} in {result.duration_s:.2f}s"
        f"{' (timed out)' if result.timed_out else ''}"
        f"{' (output truncated)' if result.truncated else ''}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    ref = use.keep(f"command-{index}.log", log.encode())
    data = {
        "index": index,
        "command": command,
        "exit_code": result.exit_code,
        "duration_s": round(result.duration_s, 3),
        "timed_out": result.timed_out,
        "truncated": result.truncated,
        "stderr_tail": redact(result.stderr[-500:]),
    }
    await use.record(data, (ref.sha256,))
    return result


def _connection_data(connection: Connection) -> dict[str, Any]:
    return {
        "host": connection.host,
        "port": connection.port,
        "method": connection.method,
        "bytes_up": connection.bytes_up,
        "bytes_down": connection.bytes_down,
        "status": connection.status,
        "credential": connection.credential,  # the variable's NAME, never its value
        "duration_s": round(connection.duration_s, 3),
    }


WORKSPACE_TOOLS = (read_file, list_dir, write_file, shell)
