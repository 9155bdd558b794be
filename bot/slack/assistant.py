"""The assistant panel (Slack's Agents & AI Apps surface, slack_bolt's AsyncAssistant).

Opening the panel shows suggested prompts built from what the person may ask for (their grants,
less what the channel rules keep out of direct messages); each message there is a request
through the same intake and policy as every door; while the job runs the panel's status line
follows it ("waiting for bob's approval") and the thread's title is the job's summary.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.context.set_status.async_set_status import AsyncSetStatus
from slack_bolt.context.set_suggested_prompts.async_set_suggested_prompts import (
    AsyncSetSuggestedPrompts,
)
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from runtime.audit import AuditEvent
from runtime.errors import AcpError
from runtime.jobs import TERMINAL_STATES, JobRecord, JobState
from runtime.policy.schema import Policy

log = logging.getLogger("acp.slack.assistant")

MAX_PROMPTS = 4  # Slack shows at most four suggested prompts
TITLE_CHARS = 80
_titled: OrderedDict[int, None] = OrderedDict()  # jobs whose thread title is set (this process)
_shown: OrderedDict[int, tuple[str, float]] = OrderedDict()  # job -> (status line, when shown)
STATUS_INTERVAL_S = 1.0  # a running job's line changes at most this often; a new state at once


def suggested_prompts(policy: Policy, person: str, channel: str | None) -> list[dict[str, str]]:
    """Up to four prompts of what `person` may ask for here: one of each kind first (a SQL
    diagnostic, a code run...), then more targets, in the policy's order."""
    from runtime.kinds import registry
    from runtime.policy.decide import requestable_for

    pairs = requestable_for(policy, person, channel=channel)
    firsts = [p for i, p in enumerate(pairs) if all(q[0] != p[0] for q in pairs[:i])]
    ordered = firsts + [p for p in pairs if p not in firsts]
    prompts: list[dict[str, str]] = []
    for job_type, target in ordered:
        offered = registry.kind_for(job_type).suggestion(target)
        if offered is not None:
            prompts.append({"title": offered[0][:75], "message": offered[1]})
        if len(prompts) == MAX_PROMPTS:
            break
    return prompts


def build_assistant(
    policy_of: Callable[[], Policy],
    person_of: Callable[[str], Any],
    handle_message: Callable[..., Awaitable[None]],
) -> AsyncAssistant:
    """The panel's listeners. `person_of(slack user id)` is the door's actor (AcpError for
    someone the policy does not know); `handle_message` is the door's intake of a message."""
    assistant = AsyncAssistant()

    @assistant.thread_started
    async def started(
        payload: dict[str, Any], say: AsyncSay, set_suggested_prompts: AsyncSetSuggestedPrompts
    ) -> None:
        thread = payload.get("assistant_thread") or {}
        user = thread.get("user_id") or payload.get("user") or ""
        try:
            person = person_of(user).person
        except AcpError as error:
            await say(text=f"{error.message}. {error.hint or ''}".strip())
            return
        prompts = suggested_prompts(policy_of(), person, thread.get("channel_id"))
        if not prompts:
            await say(
                text=f"Hi {person}. The policy grants you no job you can ask for here; "
                "ask an administrator for a grant (`acp policy explain` shows why)."
            )
            return
        await say(
            text=f"Hi {person}. Ask for a job the way you would with `/agent`, e.g. "
            f"`{prompts[0]['message']}`. Every request goes through the policy; I show its "
            "progress here."
        )
        await set_suggested_prompts(prompts=prompts, title="What you can ask me")

    @assistant.thread_context_changed
    async def context_changed() -> None:
        # The channel the person is looking at is not part of any request: nothing to keep.
        return None

    @assistant.user_message
    async def user_message(
        payload: dict[str, Any], context: dict[str, Any], set_status: AsyncSetStatus
    ) -> None:
        try:
            await set_status("reading your request…")
        except SlackApiError as error:  # not an assistant thread after all: carry on
            log.info("assistant status refused: %s", error.response.get("error"))
        await handle_message(payload, context.get("bot_user_id"), door={"assistant": True})

    return assistant


def status_line(job: JobRecord, event: AuditEvent) -> str:
    """What the panel says the job is doing; "" once it has ended (Slack clears the line)."""
    state = job.state
    if state in TERMINAL_STATES:
        return ""
    if state is JobState.awaiting_approval:
        names = sorted(
            {n for gate in job.decision.get("approvals", []) for n in gate.get("approvers", [])}
        )
        who = " or ".join(names) if names else "an approver"
        return f"waiting for {who}'s approval…"
    if state is JobState.needs_clarification:
        return "waiting for your answer to the question above…"
    if state in (JobState.queued, JobState.received):
        return "queued…"
    if state is JobState.approved:
        return "approved; publishing…"
    data = event.data
    if event.kind == "tool.shell":
        return f"ran `{str(data.get('command', ''))[:60]}`; working…"
    if event.kind.startswith("browser."):
        return f"browsing {job.spec.target}…"
    if event.kind.startswith("sql."):
        return f"querying {job.spec.target}…"
    return f"working on {job.spec.target or 'it'}…"


async def follow_job(
    client: AsyncWebClient, job: JobRecord, event: AuditEvent, slack_ids: dict[str, str]
) -> None:
    """Bring the panel up to the job: its title once, its status line on every change.
    The panel is a courtesy: Slack refusing it never holds the job's messages back."""
    reply = job.reply_to or {}
    channel, thread_ts = reply.get("channel"), reply.get("thread_ts")
    if not channel or not thread_ts:
        return
    try:
        if job.id not in _titled:
            title = f"{job.job_id} {job.spec.job_type.value} {job.spec.target or ''}: "
            title += " ".join(job.spec.instruction.split())
            await client.assistant_threads_setTitle(
                channel_id=channel, thread_ts=thread_ts, title=title[:TITLE_CHARS]
            )
            _titled[job.id] = None
            while len(_titled) > 10_000:
                _titled.popitem(last=False)
        line = status_line(job, event)
        last = _shown.get(job.id)
        now = time.monotonic()
        if last is not None and (
            last[0] == line or (job.state is JobState.running and now - last[1] < STATUS_INTERVAL_S)
        ):
            return  # unchanged, or a step's line soon after the last one: left as it is
        await client.assistant_threads_setStatus(
            channel_id=channel, thread_ts=thread_ts, status=line
        )
        _shown[job.id] = (line, now)
        _shown.move_to_end(job.id)
        while len(_shown) > 10_000:
            _shown.popitem(last=False)
    except SlackApiError as error:
        log.info("assistant panel of %s refused: %s", job.job_id, error.response.get("error"))
