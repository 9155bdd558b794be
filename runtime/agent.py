"""The governed agent loop: the model proposes tool calls, the runtime decides and runs them.

Every call goes through the job's Toolbox (authorized against its grant, recorded); a refusal
is handed back to the model as a tool result and the loop goes on. Step and time limits hold
whatever the model says. Readable in one sitting on purpose.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel

from runtime.errors import SandboxViolation
from runtime.models import ModelClient
from runtime.toolbox import Toolbox

SYSTEM_PROMPT = (
    "You are a careful software engineer working inside a git worktree of the repository "
    "'{target}'. Use the tools to inspect and change files and to run commands (no network). "
    "Paths are relative to the repository root. Make the smallest change that does what is "
    "asked, run the tests when there are any, and finish by replying without a tool call, "
    "with a one-paragraph summary of what you changed. If the request is ambiguous, call "
    "`ask` with one precise question instead of guessing."
)
RESULT_LIMIT = 12_000


def function(tool: str, description: str, /, **params: str) -> dict[str, Any]:
    """A tool the model may call, with string parameters (positional-only, so a parameter may
    itself be called `name`)."""
    return {
        "type": "function",
        "function": {
            "name": tool,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {p: {"type": "string", "description": d} for p, d in params.items()},
                "required": [p for p in params if p != "path" or tool != "list_dir"],
            },
        },
    }


TOOLS = [
    function("read_file", "Read a text file of the repository.", path="relative path"),
    function(
        "write_file",
        "Create or replace a text file.",
        path="relative path",
        content="the whole new content",
    ),
    function("list_dir", "List a directory (folders end with /).", path="relative path"),
    function(
        "run",
        "Run a shell command in the repository (sandboxed, no network).",
        command="a bash command line",
    ),
    function("ask", "Ask the requester one clarifying question and stop.", question="the question"),
]

# The model's tool names, mapped to the runtime's tools and their argument names.
_TOOLBOX = {"read_file": "fs.read", "write_file": "fs.write", "list_dir": "fs.list", "run": "shell"}


class AgentOutcome(BaseModel):
    kind: Literal["finished", "asked", "stopped"]
    summary: str = ""
    question: str | None = None
    steps: int = 0
    transcript: list[dict[str, Any]]


def opening_messages(
    target: str,
    instruction: str,
    answers: list[dict[str, str]],
    system: str = SYSTEM_PROMPT,
    **fields: str,
) -> list[dict]:
    """The system prompt (formatted with the target and any other fields), the request, and
    the requester's answers so far."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system.format(target=target, **fields)},
        {"role": "user", "content": instruction},
    ]
    for qa in answers:
        messages.append({"role": "user", "content": f"Q: {qa['question']}\nA: {qa['answer']}"})
    return messages


async def run_agent(
    toolbox: Toolbox,
    client: ModelClient,
    messages: list[dict[str, Any]],
    *,
    max_steps: int,
    time_limit_s: float,
    documents: bool = False,
) -> AgentOutcome:
    """The loop; with documents=True the model also has the document tools (doc jobs)."""
    tools = TOOLS
    if documents:
        from runtime.doc_jobs import doc_tools

        tools = [*TOOLS, *doc_tools()]
    deadline = time.monotonic() + time_limit_s
    for step in range(1, max_steps + 1):
        if time.monotonic() > deadline:
            return AgentOutcome(
                kind="stopped",
                summary=f"time limit of {time_limit_s:.0f}s reached",
                steps=step - 1,
                transcript=messages,
            )
        reply = await client.complete(messages, tools)
        messages.append(reply.message)
        if not reply.tool_calls:
            return AgentOutcome(
                kind="finished", summary=reply.content or "", steps=step, transcript=messages
            )
        for call in reply.tool_calls:
            if call.name == "ask":
                question = _arguments(call.arguments).get("question") or "Please clarify."
                messages.append(tool_result(call.id, "asked the requester; waiting"))
                return AgentOutcome(
                    kind="asked", question=str(question)[:2000], steps=step, transcript=messages
                )
            result = await _run_tool(toolbox, call.name, call.arguments, documents)
            messages.append(tool_result(call.id, result))
    return AgentOutcome(
        kind="stopped",
        summary=f"step limit of {max_steps} reached",
        steps=max_steps,
        transcript=messages,
    )


async def _run_tool(toolbox: Toolbox, name: str, arguments: str, documents: bool = False) -> str:
    tool = _TOOLBOX.get(name)
    args = _arguments(arguments)
    if args is None:
        return "error: the arguments are not a JSON object"
    if tool is None and documents:
        from runtime.doc_jobs import DocumentError, run_doc_tool

        try:
            text = await run_doc_tool(toolbox, name, args)
        except SandboxViolation as refusal:
            return f"refused: {refusal.message}"
        except (DocumentError, KeyError, TypeError, ValueError, OSError) as error:
            return f"error: {getattr(error, 'message', error)}"
        if text is not None:
            return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + "\n[truncated]"
    if tool is None:
        return f"error: there is no tool named '{name}'"
    try:
        if tool == "shell":
            result = await toolbox.call("shell", command=str(args.get("command", "")))
            text = f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
        elif tool == "fs.write":
            await toolbox.call(
                tool, path=str(args.get("path", "")), content=str(args.get("content", ""))
            )
            text = "written"
        elif tool == "fs.list":
            text = "\n".join(await toolbox.call(tool, path=str(args.get("path") or ".")))
        else:
            text = await toolbox.call(tool, path=str(args.get("path", "")))
    except SandboxViolation as refusal:
        return f"refused: {refusal.message}"
    except (KeyError, TypeError, ValueError, OSError) as error:
        return f"error: {error}"
    return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + "\n[truncated]"


def _arguments(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def tool_result(call_id: str, content: str) -> dict[str, Any]:
    """A tool's answer to the model, cut at RESULT_LIMIT."""
    if len(content) > RESULT_LIMIT:
        content = content[:RESULT_LIMIT] + "\n[truncated]"
    return {"role": "tool", "tool_call_id": call_id, "content": content}
