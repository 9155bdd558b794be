"""Model mode: the model drives the same steps from the page's accessibility tree.

The one agent loop (runtime.agent) runs with the browser's tools (tools.py: goto, click,
fill, fill_secret, select, wait_for, snapshot), each the browser step a person would write,
taken through the job's toolbox, so a mutation pauses the job exactly as a written step
does. The conversation is kept with the pause, so an approval after a restart goes on with
it. Credentials are filled by name; the model never sees their values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from runtime.agent import job_context, opening_messages, run_agent, tool_result, transcript_artifact
from runtime.errors import BudgetExceeded, ModelUnavailable
from runtime.jobs import JobRecord
from runtime.kinds.base import JobContext, NeedsAnswer, Outcome
from runtime.kinds.browser import endings, pause
from runtime.kinds.browser.progress import BrowserProgress
from runtime.kinds.browser.tools import Held
from runtime.models import load_litellm

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


def opening(job: JobRecord, site: SiteTarget, read: Any = None) -> list[dict[str, Any]]:
    return opening_messages(
        job.spec.target or "",
        job.spec.instruction,
        job.answers,
        SYSTEM_PROMPT,
        context=job_context(job, read) if read is not None else [],
        start=site.start_url(),
        credentials=", ".join(sorted(site.credentials)) or "none",
    )


def load_messages(ctx: JobContext, state: BrowserProgress) -> list[dict[str, Any]] | None:
    """The conversation saved at the pause (None: the model had not started yet)."""
    digest = state.transcript_sha256
    return json.loads(ctx.recorder.read(digest)) if digest else None


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
    """The shared agent loop (runtime.agent) over the browser's tools (tools.py), from where
    the conversation is; its ending, a pause or a question, as the job's outcome."""
    ctx, job = run.ctx, run.job
    limits = ctx.limits
    client = ctx.model()
    await load_litellm()  # in a thread: the first import would stall this worker's browsers
    if len(messages) == 2 + len(job.answers):
        messages.append({"role": "user", "content": await run.session.observe()})
    try:
        outcome = await run_agent(
            run.toolbox,
            client,
            messages,
            max_steps=limits.agent_max_steps,
            time_limit_s=limits.agent_time_limit_s,
        )
    except (BudgetExceeded, ModelUnavailable) as error:
        return await endings.fail_run(run, error.message)
    if outcome.kind == "paused":
        held: Held = outcome.paused
        return await pause.pause(run, held.pending, held.line, messages, outcome.call_id,
                                 before_step=held.before_step)  # fmt: skip
    await _transcript(run, messages)
    if outcome.kind == "asked":
        run.session.discard_pending()
        await run.save_trace(final=True)
        question = outcome.question or "Please clarify."
        return NeedsAnswer(question=question, artifacts=run.artifacts)
    if outcome.kind == "finished":
        return await endings.complete(run, f"the model finished: {outcome.summary[:500]}", messages)
    return await endings.fail_run(run, f"the agent stopped: {outcome.summary}")


async def _transcript(run: Run, messages: list[dict[str, Any]]) -> None:
    ref = transcript_artifact(run.ctx.recorder, messages)
    run.artifacts.append(ref)
    await run.ctx.recorder.log("agent.transcript", {"messages": len(messages)},
                               artifacts=(ref.sha256,))  # fmt: skip
