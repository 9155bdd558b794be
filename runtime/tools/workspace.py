"""The tools over a job's worktree: read, list and write files, and run a sandboxed command.

Files are confined to the worktree (runtime.tools.fs); file I/O runs in a thread, never on the
event loop, so a slow disk cannot stall the worker and the agent's deadline can still fire.
A command runs under bubblewrap with no network (runtime.sandbox.bwrap); its output is an
artifact, its secrets redacted.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from runtime.sandbox.bwrap import CommandResult, run_sandboxed
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
    """Run a shell command in the repository (sandboxed, no network).

    Args:
        command: a bash command line
    """
    limits = use.limits
    index = use.count("shell")
    result = await run_sandboxed(
        command,
        use.workspace.path,
        ro_paths=[use.workspace.git_common_dir],
        timeout_s=limits.command_timeout_s,
        output_cap=limits.output_cap_bytes,
    )
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


WORKSPACE_TOOLS = (read_file, list_dir, write_file, shell)
