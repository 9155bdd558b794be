"""Model mode: the model drives the same steps from the page's accessibility tree.

The model picks one tool call at a time (goto, click, fill, fill_secret, select, wait_for,
snapshot, ask); each becomes a browser step in the grammar a person writes (steps.py) and is
taken as one (run.py), so a mutation pauses the job exactly as a written step does. The
conversation is kept with the pause, so an approval after a restart goes on with it.
Credentials are filled by name; the model never sees their values.

This is the kind's own loop for now (the shared agent loop, runtime.agent, comes later).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError

from runtime.agent import opening_messages, tool_result
from runtime.errors import AcpError, BudgetExceeded, ModelUnavailable, SandboxViolation
from runtime.jobs import JobRecord
from runtime.kinds.base import JobContext, NeedsAnswer, Outcome
from runtime.kinds.browser import endings, pause
from runtime.kinds.browser.progress import BrowserProgress
from runtime.kinds.browser.run import secrets_for
from runtime.kinds.browser.steps import BrowserStep
from runtime.kinds.code.run import transcript_artifact
from runtime.models import load_litellm
from runtime.secrets import redact
from runtime.tools.browser import MutationPending

if TYPE_CHECKING:
    from runtime.kinds.browser.run import Run
    from runtime.policy import SiteTarget

SYSTEM_PROMPT = (
    "You operate a web browser for the site '{target}' ({start}). You see pages as accessibility "
    "trees. Act with the tools, one step at a time; selectors are Playwright selectors, best "
    'taken from the tree, e.g. role=button[name="Save"] or text=User 42. Paths may be '
    "relative to the site. The runtime pauses any action that changes data until a person "
    "approves it; you do not need to ask first. Fill credentials only with fill_secret and a "
    "credential name ({credentials}); you never see their values. Finish by replying without "
    "a tool call, with a short report of what you found or did. If the request is ambiguous, "
    "call `ask` with one precise question."
)


def function(tool: str, description: str, /, **params: str) -> dict[str, Any]:
    """A tool the model may call, with string parameters, all required (positional-only, so
    a parameter may itself be called `name`)."""
    return {
        "type": "function",
        "function": {
            "name": tool,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {p: {"type": "string", "description": d} for p, d in params.items()},
                "required": list(params),
            },
        },
    }


TOOLS = [
    function("goto", "Open a URL or a path of the site.", url="path or http(s) URL"),
    function("click", "Click an element.", selector="Playwright selector"),
    function(
        "fill", "Type a value into a field.", selector="Playwright selector", value="the text"
    ),
    function(
        "fill_secret", "Fill a credential the runtime holds.", selector="selector", name="name"
    ),
    function("select", "Choose an option.", selector="Playwright selector", value="option value"),
    function("wait_for", "Wait for an element to appear.", selector="Playwright selector"),
    function("snapshot", "Read the current page again (its accessibility tree)."),
    function("ask", "Ask the requester one clarifying question and stop.", question="the question"),
]


def opening(job: JobRecord, site: SiteTarget) -> list[dict[str, Any]]:
    return opening_messages(
        job.spec.target or "",
        job.spec.instruction,
        job.result.get("answers", []),
        SYSTEM_PROMPT,
        start=site.start_url(),
        credentials=", ".join(sorted(site.credentials)) or "none",
    )


def load_messages(ctx: JobContext, state: BrowserProgress) -> list[dict[str, Any]] | None:
    """The conversation saved at the pause (None: the model had not started yet)."""
    digest = state.transcript_sha256
    return json.loads(ctx.recorder.read(digest)) if digest else None


def step_of(name: str, args: dict[str, Any]) -> BrowserStep:
    """A model's tool call as a browser step (the same grammar a person writes)."""
    text = {k: str(v) for k, v in args.items()}
    if name == "goto":
        return BrowserStep(verb="goto", args=[text.get("url", "")])
    if name == "click":
        return BrowserStep(verb="click", args=[text.get("selector", "")])
    if name == "fill":
        value = text.get("value", "")
        if value.startswith("secret:"):
            raise AcpError("credentials are filled with fill_secret, by name")
        return BrowserStep(verb="fill", args=[text.get("selector", ""), value])
    if name == "fill_secret":
        secret = "secret:" + text.get("name", "")
        return BrowserStep(verb="fill", args=[text.get("selector", ""), secret])
    if name == "select":
        return BrowserStep(verb="select", args=[text.get("selector", ""), text.get("value", "")])
    if name == "wait_for":
        return BrowserStep(verb="wait", args=[text.get("selector", "")])
    raise AcpError(f"there is no tool named '{name}'")


def after_action(
    messages: list[dict[str, Any]], call_id: str | None, said: str, observation: str
) -> list[dict[str, Any]]:
    """The model hears how its paused action ended (a tool result, or a note if no call)."""
    if call_id:
        messages.append(tool_result(call_id, f"{said}\n{observation}"))
    else:
        messages.append({"role": "user", "content": f"The runtime: {said}\n{observation}"})
    return messages


async def run_model(run: Run, messages: list[dict[str, Any]]) -> Outcome:
    ctx, job = run.ctx, run.job
    limits = ctx.limits
    client = ctx.model()
    await load_litellm()  # in a thread: the first import would stall this worker's browsers
    if len(messages) == 2 + len(job.result.get("answers", [])):
        messages.append({"role": "user", "content": await run.session.observe()})
    steps_used = sum(1 for m in messages if m.get("role") == "assistant")
    for _ in range(steps_used, limits.agent_max_steps):
        try:
            reply = await client.complete(messages, TOOLS)
        except (BudgetExceeded, ModelUnavailable) as error:
            return await endings.fail_run(run, error.message)
        messages.append(reply.message)
        if not reply.tool_calls:
            await _transcript(run, messages)
            said = f"the model finished: {(reply.content or '')[:500]}"
            return await endings.complete(run, said, messages)
        for call in reply.tool_calls:
            try:
                args = json.loads(call.arguments or "{}")
                if not isinstance(args, dict):
                    raise ValueError
            except ValueError:
                messages.append(tool_result(call.id, "error: the arguments are not a JSON object"))
                continue
            if call.name == "ask":
                return await _model_asks(run, messages, call.id, str(args.get("question", "")))
            if call.name == "snapshot":
                messages.append(tool_result(call.id, await run.session.observe()))
                continue
            try:
                step = step_of(call.name, args)
                if step.secret is not None:
                    run.secrets.update(secrets_for(run.site, job.spec.target or "", [step]))
                await run.take(step)
            except MutationPending as paused:
                await run.record()
                line = "wait 0" if paused.before_step else step.text()
                return await pause.pause(run, paused.pending, line, messages, call.id,
                                         before_step=paused.before_step)  # fmt: skip
            except SandboxViolation as refusal:
                await run.record()
                said = refusal.message
                messages.append(tool_result(call.id, said if said.startswith("refused")
                                            else f"refused: {said}"))  # fmt: skip
                continue
            except (AcpError, PlaywrightError) as error:
                await run.record()
                text = error.message if isinstance(error, AcpError) else str(error).splitlines()[0]
                messages.append(tool_result(call.id, f"error: {redact(text)}"))
                continue
            await run.record()
            run.took(step.text())
            messages.append(tool_result(call.id, f"done.\n{await run.session.observe()}"))
    await _transcript(run, messages)
    return await endings.fail_run(
        run, f"the agent stopped: step limit of {limits.agent_max_steps} reached"
    )


async def _transcript(run: Run, messages: list[dict[str, Any]]) -> None:
    ref = transcript_artifact(run.ctx.recorder, messages)
    run.artifacts.append(ref)
    await run.ctx.recorder.log("agent.transcript", {"messages": len(messages)},
                               artifacts=(ref.sha256,))  # fmt: skip


async def _model_asks(
    run: Run, messages: list[dict[str, Any]], call_id: str, question: str
) -> Outcome:
    messages.append(tool_result(call_id, "asked the requester; waiting"))
    await _transcript(run, messages)
    run.session.discard_pending()
    await run.save_trace(final=True)
    return NeedsAnswer(question=question[:2000] or "Please clarify.", artifacts=run.artifacts)
