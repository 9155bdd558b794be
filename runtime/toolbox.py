"""A job's tools behind one door: each call is authorized against the job's grant, run, recorded.

Whoever asks (direct-mode steps now, a model later) gets the same checks; the caller's word
is never the authority. A refusal is an audit event and an exception, never a silent skip.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from runtime.errors import SandboxViolation, ToolNotGranted
from runtime.jobs import ArtifactRef, JobRecord
from runtime.sandbox.bwrap import CommandResult, run_sandboxed
from runtime.sandbox.worktree import Worktree
from runtime.secrets import redact
from runtime.tools import fs
from runtime.untrusted import escape_text, has_lone_surrogate

if TYPE_CHECKING:
    from runtime.engine import Engine

# The grant entry each tool needs; listing a directory is part of reading.
REQUIRED_GRANT = {
    "fs.read": "fs.read",
    "fs.list": "fs.read",
    "fs.write": "fs.write",
    "shell": "shell",
    "docs.read": "fs.read",
    "docs.template": "docs",
    "docs.write": "docs",
    "docs.cells": "docs",
}


class Toolbox:
    def __init__(
        self, engine: Engine, job: JobRecord, tree: Worktree, actor: str, *, record: bool = True
    ) -> None:
        self.record = record  # a replay runs the same checks but leaves the job's record alone
        self.engine = engine
        self.job = job
        self.tree = tree
        self.actor = actor
        self.artifacts: list[ArtifactRef] = []
        self._shell_runs = 0

    async def call(self, tool: str, /, **arguments: Any) -> Any:
        """Run `tool` if the job's grant allows it; record the call, the refusal or the error."""
        try:
            self._authorize(tool)
            _refuse_unencodable(arguments)
            return await self._dispatch(tool, arguments)
        except SandboxViolation as refusal:
            await self.record_refusal(tool, arguments, refusal.message)
            raise
        except Exception as error:  # the attempt stays on the record, whatever went wrong
            if self.record:
                await self.engine.log(
                    self.job.id,
                    "tool.failed",
                    self.actor,
                    {"tool": tool, "arguments": _brief(arguments), "error": _error_text(error)},
                )
            raise

    async def record_refusal(self, tool: str, arguments: Any, reason: str) -> None:
        """A refused call on the record; also for a call the caller could not even parse."""
        if not self.record:
            return
        await self.engine.log(
            self.job.id,
            "tool.refused",
            self.actor,
            {"tool": tool, "arguments": _brief(arguments), "reason": reason},
        )

    def _authorize(self, tool: str) -> None:
        needed = REQUIRED_GRANT.get(tool)
        if needed is None:
            raise ToolNotGranted(f"there is no tool named {escape_text(tool)!r}")
        if needed not in self.job.tools_granted:
            granted = ", ".join(self.job.tools_granted) or "none"
            raise ToolNotGranted(
                f"{self.job.job_id} may not use '{tool}'; its grant allows: {granted}"
            )

    async def _dispatch(self, tool: str, arguments: dict[str, Any]) -> Any:
        # File I/O runs in a thread, never on the event loop: a slow disk must not stall the
        # worker, and the agent's deadline can still fire (fs refuses anything that could block
        # the thread itself: FIFOs, sockets, devices).
        root = self.tree.path
        if tool == "shell":
            return await self._shell(arguments["command"])
        if tool.startswith("docs."):
            return await self._docs(tool, arguments)
        if tool == "fs.write":
            grant = fs.FsGrant(root=root, writable=True)
            await asyncio.to_thread(fs.write_file, grant, arguments["path"], arguments["content"])
            await self._record(
                tool, {"path": arguments["path"], "bytes": len(arguments["content"])}
            )
            return None
        grant = fs.FsGrant(root=root, writable=False)
        if tool == "fs.list":
            entries = await asyncio.to_thread(fs.list_dir, grant, arguments.get("path", "."))
            await self._record(tool, {"path": arguments.get("path", "."), "entries": len(entries)})
            return entries
        content = await asyncio.to_thread(fs.read_file, grant, arguments["path"])
        await self._record(tool, {"path": arguments["path"], "bytes": len(content)})
        return content

    async def _docs(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Document tools (runtime.tools.docs), off the event loop: parsing a workbook is CPU."""
        from runtime.tools import docs

        limit = self.engine.policy.limits.doc_max_bytes
        grant = fs.FsGrant(root=self.tree.path, writable=tool != "docs.read")
        if tool == "docs.read":
            text = await asyncio.to_thread(docs.read_document, grant, arguments["path"], limit)
            await self._record(tool, {"path": arguments["path"], "chars": len(text)})
            return text
        if tool == "docs.template":
            done = await asyncio.to_thread(
                docs.render_template, grant, arguments["template"], arguments["output"],
                list(arguments.get("data", [])), limit,
            )  # fmt: skip
        elif tool == "docs.cells":
            done = await asyncio.to_thread(
                docs.set_cells, grant, arguments["path"], arguments["sheet"],
                dict(arguments["cells"]), limit,
            )  # fmt: skip
        else:
            done = await asyncio.to_thread(
                docs.write_document, grant, arguments["path"], arguments["content"], limit
            )
        await self._record(tool, done)
        return done

    async def _record(
        self, tool: str, data: dict[str, Any], artifacts: tuple[str, ...] = ()
    ) -> None:
        await self.engine.log(self.job.id, f"tool.{tool}", self.actor, data, artifacts)

    async def _shell(self, command: str) -> CommandResult:
        limits = self.engine.policy.limits
        self._shell_runs += 1
        index = self._shell_runs
        result = await run_sandboxed(
            command,
            self.tree.path,
            ro_paths=[self.tree.git_common_dir],
            timeout_s=limits.command_timeout_s,
            output_cap=limits.output_cap_bytes,
        )
        log = redact(
            f"$ {command}\n--- exit {result.exit_code} in {result.duration_s:.2f}s"
            f"{' (timed out)' if result.timed_out else ''}"
            f"{' (output truncated)' if result.truncated else ''}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        ref = self.engine.artifacts.put(f"command-{index}.log", log.encode())
        self.artifacts.append(ref)
        data = {
            "index": index,
            "command": command,
            "exit_code": result.exit_code,
            "duration_s": round(result.duration_s, 3),
            "timed_out": result.timed_out,
            "truncated": result.truncated,
            "stderr_tail": redact(result.stderr[-500:]),
        }
        await self._record("shell", data, (ref.sha256,))
        return result


def _brief(arguments: Any) -> Any:
    """What a refusal records of the arguments: enough to see the attempt, not a whole file.
    The audit log escapes what UTF-8 cannot carry (runtime.audit.canonical_json)."""
    if isinstance(arguments, str):
        return arguments[:200]
    if not isinstance(arguments, dict):
        return arguments
    return {k: (v[:200] if isinstance(v, str) else v) for k, v in arguments.items()}


def _refuse_unencodable(arguments: dict[str, Any]) -> None:
    """A lone surrogate in an argument cannot be a real path, command or file content: refuse
    the call here, once for every tool, rather than fail somewhere in an encoder."""
    for name, value in arguments.items():
        texts = [value] if isinstance(value, str) else []
        if isinstance(value, list | tuple):
            texts = [v for v in value if isinstance(v, str)]
        elif isinstance(value, dict):
            texts = [str(part) for item in value.items() for part in item]
        if any(has_lone_surrogate(text) for text in [name, *texts]):
            raise SandboxViolation(
                f"refused: the argument {escape_text(name)!r} is not valid text "
                "(it has a lone surrogate, which UTF-8 cannot carry)",
                hint="send paths, commands and content as valid Unicode text",
            )


def _error_text(error: Exception) -> str:
    return escape_text(getattr(error, "message", None) or str(error) or type(error).__name__)
