"""The message shortcut "Send to agent…": any message (and its thread) becomes a request's
context. The modal offers only the kinds and targets the person is granted where the message
is; the engine still decides the request exactly as for /agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import blocks
from runtime.engine import Engine
from runtime.errors import AcpError
from runtime.jobs import JobState, Origin

log = logging.getLogger("acp.slack.shortcut")

CALLBACK = "acp_send_to_agent"
MAX_OPTIONS = 100  # Slack's limit for a static select
WHOLE_THREAD = "9999999999.999999"
ABOUT = (
    "The message (and its thread) goes with the request as context. The policy decides it as "
    "it decides `/agent`; its card is posted in the message's thread."
)  # later than any message: a thread root takes all replies


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def notice_modal(text: str) -> dict[str, Any]:
    """A modal that only tells (someone the policy does not know, or with no grant here)."""
    return {
        "type": "modal",
        "title": _plain("Send to agent"),
        "close": _plain("Close"),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}],
    }


def send_modal(choices: list[tuple[str, str]], metadata: dict[str, Any]) -> dict[str, Any]:
    """Pick a kind and target among `choices` ((kind, target) pairs) and say what to do."""
    options = [
        {"text": _plain(f"{kind} · {target}"[:75]), "value": f"{kind} {target}"}
        for kind, target in choices[:MAX_OPTIONS]
    ]
    return {
        "type": "modal",
        "callback_id": CALLBACK,
        "private_metadata": json.dumps(metadata),
        "title": _plain("Send to agent"),
        "submit": _plain("Send"),
        "close": _plain("Cancel"),
        "blocks": [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": ABOUT}]},
            {
                "type": "input",
                "block_id": "what",
                "label": _plain("Kind and target"),
                "element": {
                    "type": "static_select",
                    "action_id": "value",
                    "options": options,
                    "initial_option": options[0],
                },
            },
            {
                "type": "input",
                "block_id": "instruction",
                "label": _plain("What should it do?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "placeholder": _plain("e.g. find why this test is flaky and fix it"),
                },
            },
        ],
    }


def register_shortcut(
    app: AsyncApp,
    engine: Engine,
    client: AsyncWebClient,
    *,
    person_of: Callable[[str], Any],
    can_post_in: Callable[[str], Awaitable[bool]],
    lull: Callable[[], Awaitable[None]],
    turn: Callable[[], contextlib.AbstractAsyncContextManager[None]],
) -> None:
    """The shortcut's listener and its modal's submission, on `app`."""
    from bot.slack.context import thread_context, thread_messages
    from bot.slack.files import request_inputs
    from runtime.policy.decide import requestable_for

    running: set[asyncio.Task[None]] = set()

    @app.shortcut(CALLBACK)
    async def on_shortcut(ack: AsyncAck, shortcut: dict[str, Any]) -> None:
        await ack()
        await lull()  # the acks of a burst first (at most 0.5 s of the trigger's 3 s)
        user, channel = shortcut["user"]["id"], (shortcut.get("channel") or {}).get("id", "")
        message = shortcut.get("message") or {}
        try:
            person = person_of(user).person
        except AcpError as error:
            view = notice_modal(f"{error.message}. {error.hint or ''}".strip())
        else:
            choices = [(str(k), t) for k, t in requestable_for(engine.policy, person,
                                                               channel=channel)]  # fmt: skip
            if not choices:
                view = notice_modal(
                    f"The policy grants {person} no job that can be asked for here. "
                    "`acp policy explain --as NAME 'REQUEST'` shows why; a grant comes from a "
                    "policy change."
                )
            else:
                ts = str(message.get("ts") or shortcut.get("message_ts") or "")
                root = message.get("thread_ts") or ts
                view = send_modal(choices, {"channel": channel, "ts": ts, "thread_ts": root})
        await client.views_open(trigger_id=shortcut["trigger_id"], view=view)

    @app.view(CALLBACK)
    async def on_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view["state"]["values"]
        chosen = ((values.get("what") or {}).get("value") or {}).get("selected_option") or {}
        instruction = " ".join(
            str(((values.get("instruction") or {}).get("value") or {}).get("value") or "").split()
        )
        if not chosen.get("value"):
            await ack(response_action="errors", errors={"what": "Pick a kind and a target."})
            return
        if not instruction:
            await ack(response_action="errors",
                      errors={"instruction": "Say what the job should do."})  # fmt: skip
            return
        await ack()
        # The thread is read after the ack (Slack wants the modal answered within 3 s).
        task = asyncio.create_task(
            send(body["user"]["id"], f"{chosen['value']}: {instruction}", view)
        )
        running.add(task)
        task.add_done_callback(running.discard)

    async def send(user: str, text: str, view: dict[str, Any]) -> None:
        where = json.loads(view.get("private_metadata") or "{}")
        channel, ts, root = where.get("channel", ""), where.get("ts", ""), where.get("thread_ts")
        try:
            if not await can_post_in(channel):
                await tell(channel, user, root, "I am not in this private channel, so the job's "
                           "card could not be posted here. Invite me with `/invite @agent` and "
                           "send it again (nothing was submitted).")  # fmt: skip
                return
            actor = person_of(user)
            context = []
            limits = engine.policy.slack
            try:
                found, seen = await thread_messages(
                    client, channel, root or ts, wanted=limits.thread_context_messages,
                    before=WHOLE_THREAD if root == ts else ts, through=True,
                )  # fmt: skip
            except (TimeoutError, SlackApiError) as error:
                why = (getattr(error, "response", None) or {}).get("error", "no answer in time")
                await tell(channel, user, root, f"I could not read the message ({why}); "
                           "nothing was submitted.")  # fmt: skip
                return
            person_for = engine.policy.person_for
            context.append(thread_context(
                found, limits, lambda uid: person_for("slack", uid),
                source=f"slack message {channel}/{ts}", seen=seen,
            ))  # fmt: skip
            # Files people shared on the message or in its thread: a doc job's inputs.
            inputs = await request_inputs(engine, client, text, actor, [], found)
            reply_to = {"door": "slack", "channel": channel, "user": user, "thread_ts": root}
            async with turn():  # one submission at a time, in a lull between requests
                job = await engine.submit(
                    text,
                    actor,
                    Origin.slack,
                    request_key=f"slack-shortcut:{view.get('id')}",  # one modal is one job
                    reply_to=reply_to,
                    context=context,
                    inputs=inputs,
                )
            if job.state is JobState.denied:
                reason = job.result.get("reason") or "by policy"
                await tell(channel, user, root, f"{job.job_id} was denied: {reason}")
            else:
                said = f"Accepted as {job.job_id} ({job.state.value}); its card is in the thread."
                await tell(channel, user, root, said)
        except AcpError as error:
            await tell(channel, user, root, error)
        except Exception:  # a failed send is told to the log, never lost silently
            log.exception("sending a message to the agent failed")
            await tell(channel, user, root, "Sending it failed on our side; it may not have "
                       "been submitted. Check `/agent status` or ask an operator.")  # fmt: skip

    async def tell(channel: str, user: str, thread_ts: str | None, said: AcpError | str) -> None:
        message, hint = (said.message, said.hint) if isinstance(said, AcpError) else (said, None)
        try:
            await client.chat_postEphemeral(
                channel=channel, user=user, text=message, thread_ts=thread_ts,
                blocks=blocks.refusal(message, hint) if hint or "denied" in message else None,
            )  # fmt: skip
        except SlackApiError as error:
            log.warning("could not tell %s in %s: %s", user, channel, error.response.get("error"))
