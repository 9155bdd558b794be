"""The governed agent loop: the model proposes tool calls, the runtime decides and runs them.

Every call goes through the job's Toolbox (authorized against its grant, recorded); a refusal
is handed back to the model as a tool result and the loop goes on. Step and time limits hold
whatever the model says: the time limit is a deadline over every model call and every tool
call, never a check between them. What the model sends is untrusted text: it is escaped
(runtime.untrusted) before it is kept, sent on or recorded. Readable in one sitting on purpose.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from pydantic import BaseModel

from runtime.errors import SandboxViolation
from runtime.models import ModelClient, ModelReply
from runtime.toolbox import Toolbox
from runtime.untrusted import escape_data, escape_text

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
    return escape_data(messages)


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
    # One deadline over the whole loop: a model call or a tool call that would outlast it is
    # cancelled (a sandboxed command's process group is killed) and the job stops, saying where.
    where = _Where()
    limit = asyncio.timeout(time_limit_s)
    try:
        async with limit:
            return await _loop(toolbox, client, messages, tools, max_steps, documents, where)
    except TimeoutError:
        if not limit.expired():
            raise  # a TimeoutError of a tool's own, not the deadline's
        return AgentOutcome(
            kind="stopped",
            summary=f"the agent's time limit of {time_limit_s:g} s was reached during {where.now}",
            steps=where.step,
            transcript=messages,
        )


class _Where:
    """Where the loop is, for the reason a person reads when the deadline cuts it short."""

    now = "the first model call"
    step = 0


async def _loop(
    toolbox: Toolbox,
    client: ModelClient,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    max_steps: int,
    documents: bool,
    where: _Where,
) -> AgentOutcome:
    for step in range(1, max_steps + 1):
        where.now, where.step = f"model call {step}", step - 1
        reply = _escaped(await client.complete(messages, tools))
        messages.append(reply.message)
        where.step = step
        if not reply.tool_calls:
            return AgentOutcome(
                kind="finished", summary=reply.content or "", steps=step, transcript=messages
            )
        for call in reply.tool_calls:
            if call.name == "ask":
                question = (_arguments(call.arguments) or {}).get("question") or "Please clarify."
                messages.append(tool_result(call.id, "asked the requester; waiting"))
                return AgentOutcome(
                    kind="asked",
                    question=escape_text(str(question))[:2000],
                    steps=step,
                    transcript=messages,
                )
            where.now = call.name[:100]
            result = await _run_tool(toolbox, call.name, call.arguments, documents)
            messages.append(tool_result(call.id, result))
    return AgentOutcome(
        kind="stopped",
        summary=f"the agent's step limit of {max_steps} was reached",
        steps=max_steps,
        transcript=messages,
    )


def _escaped(reply: ModelReply) -> ModelReply:
    """The model's reply with what UTF-8 cannot carry escaped, so keeping it, sending it back
    and recording it cannot fail (a lone surrogate decoded from JSON's "\\ud800")."""
    return reply.model_copy(
        update={
            "content": None if reply.content is None else escape_text(reply.content),
            "message": escape_data(reply.message),
            "tool_calls": [
                call.model_copy(update={"id": escape_text(call.id), "name": escape_text(call.name)})
                for call in reply.tool_calls
            ],
        }
    )


def refusal_text(refusal: SandboxViolation) -> str:
    """What the model is told of a refusal: its message, said to be a refusal once."""
    message = refusal.message
    return message if message.startswith("refused") else f"refused: {message}"


async def _run_tool(toolbox: Toolbox, name: str, arguments: str, documents: bool = False) -> str:
    """One tool call of the model's, as the text it gets back; every attempt is on the record."""
    tool = _TOOLBOX.get(name)
    args = _arguments(arguments)
    if args is None:
        reason = "the arguments are not a JSON object"
        await toolbox.record_refusal(name, arguments, reason)
        return f"error: {reason}"
    if tool is None and documents:
        from runtime.doc_jobs import DocumentError, run_doc_tool

        try:
            text = await run_doc_tool(toolbox, name, args)
        except SandboxViolation as refusal:
            return refusal_text(refusal)
        except (DocumentError, KeyError, TypeError, ValueError, OSError) as error:
            return f"error: {getattr(error, 'message', error)}"
        if text is not None:
            return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + "\n[truncated]"
    if tool is None:
        reason = f"there is no tool named {name!r}"
        await toolbox.record_refusal(name, args, reason)
        return f"error: {reason}"
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
        return refusal_text(refusal)
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
    """A tool's answer to the model, cut at RESULT_LIMIT; a file name of invalid UTF-8 in it
    (a lone surrogate) is escaped, so the next request can be sent."""
    if len(content) > RESULT_LIMIT:
        content = content[:RESULT_LIMIT] + "\n[truncated]"
    return {"role": "tool", "tool_call_id": escape_text(call_id), "content": escape_text(content)}
