"""The Slack front door: a Bolt AsyncApp whose listeners parse, call the engine and render.

Every rule lives in the runtime: a listener maps the Slack user to a person, calls the engine,
and shows the engine's answer or refusal. Slash commands are acknowledged before any work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import blocks
from runtime.engine import Engine
from runtime.errors import AcpError, BadRequest
from runtime.jobs import JobState, Origin, parse_job_id

log = logging.getLogger("acp.slack")

DEFAULT_API_URL = "https://slack.com/api/"
MEMBERSHIP_TTL_S = 60.0


def slack_ids(engine: Engine) -> dict[str, str]:
    """person name -> their first Slack user id, for mentions."""
    return {
        name: person.identities.slack[0]
        for name, person in engine.policy.people.items()
        if person.identities.slack
    }


def _wrong_channel(job: Any) -> bool:
    """Denied for where it was asked (slack.channels): its card is not posted there."""
    return "slack.channel" in (job.decision.get("rule_ids") or [])


def _without_mention(text: str, bot_user_id: str | None) -> str:
    """The request in a message that mentions the app: its mentions of the app taken out."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    return " ".join(text.split()) if "\n" not in text else text.strip()


class Arrivals(AsyncMiddleware):
    """When Slack's last request came in. The door's work after an ack (intake, the thread
    read) waits for a lull of LULL_S between requests, at most LULL_MOST_S, so that under a
    burst every ack goes out before the work it started competes with them for the loop."""

    LULL_S = 0.003
    LULL_MOST_S = 0.5

    def __init__(self) -> None:
        self.last = 0.0
        self._one = asyncio.Lock()

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse, next):
        self.last = time.monotonic()
        return await next()

    def turn(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The door's heavy work (a submission) one at a time, each begun in a lull: woken
        together after a burst, they would otherwise compete with the next burst's acks."""
        return self._turn()

    @contextlib.asynccontextmanager
    async def _turn(self):
        async with self._one:
            await self.lull()
            yield

    async def lull(self) -> None:
        give_up = time.monotonic() + self.LULL_MOST_S
        while (now := time.monotonic()) < give_up:
            quiet_for = now - self.last
            if quiet_for >= self.LULL_S:
                return
            await asyncio.sleep(self.LULL_S - quiet_for)


class DropRepeatedEvents(AsyncMiddleware):
    """Slack redelivers an event it thinks we missed; one event is handled once. (A middleware
    class, not a function: Bolt builds every listener argument for a function, on every request.)"""

    def __init__(self) -> None:
        self.seen: OrderedDict[str, None] = OrderedDict()

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse, next):
        body = req.body
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            if event_id in self.seen:
                return BoltResponse(status=200, body="")
            self.seen[event_id] = None
            while len(self.seen) > 10_000:
                self.seen.popitem(last=False)
        return await next()


# The events slack_bolt's assistant middleware acts on; every other request skips its matchers
# (each builds all of a listener's arguments).
ASSISTANT_EVENTS = frozenset({"assistant_thread_started", "assistant_thread_context_changed",
                              "message"})  # fmt: skip


class OnlyFor(AsyncMiddleware):
    """`inner` run only for Events API deliveries of these event types."""

    def __init__(self, types: frozenset[str], inner: AsyncMiddleware) -> None:
        self.types, self.inner = types, inner

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse, next):
        body = req.body
        if (
            body.get("type") != "event_callback"
            or (body.get("event") or {}).get("type") not in self.types
        ):
            return await next()
        return await self.inner.async_process(req=req, resp=resp, next=next)


def make_client(
    token: str, api_url: str | None = None, *, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """The Web API client. With `session`, every call reuses its connections (the SDK opens a
    session per call otherwise, costing a connection and ~1 ms of the loop each)."""
    base = api_url or DEFAULT_API_URL
    client = AsyncWebClient(
        token=token, base_url=base if base.endswith("/") else base + "/", session=session
    )
    # Slack's 429s are waited out (Retry-After) and retried, as Slack asks.
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=5))
    return client


def build_app(
    engine: Engine,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    command: str = "/agent",
) -> AsyncApp:
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        process_before_response=False,
        request_verification_enabled=signing_secret is not None,
    )
    # How Slack proved who sent each request: its signature over the body (HTTP), or the
    # app-level token's own connection (Socket Mode, no signing secret).
    how = "slack signature" if signing_secret is not None else "slack socket mode"

    def slack_person(user_id: str):
        from runtime.identity import slack_actor

        return slack_actor(engine.policy, user_id, how=how)

    app.use(DropRepeatedEvents())
    arrivals = Arrivals()
    app.use(arrivals)

    # Bolt tries listeners in the order they are added, building every argument for each
    # one's matcher: the events that come by the hundred (mentions, DMs) are tried first.
    # --- mentions and direct messages: the same intake and policy as /agent (handle_message)
    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], context: dict[str, Any]) -> None:
        await handle_message(event, context.get("bot_user_id"))

    @app.event("message")
    async def on_message(event: dict[str, Any], context: dict[str, Any]) -> None:
        # A direct message to the app (people's own messages, with files or not; no edits,
        # joins or bot posts).
        if (
            event.get("channel_type") != "im"
            or event.get("subtype") not in (None, "file_share")
            or event.get("bot_id")
        ):
            return
        await handle_message(event, context.get("bot_user_id"))

    async def ephemeral(channel: str | None, user: str, error: AcpError | str) -> None:
        message, hint = (
            (error.message, error.hint) if isinstance(error, AcpError) else (error, None)
        )
        if not channel:
            return
        await client.chat_postEphemeral(
            channel=channel, user=user, text=message, blocks=blocks.refusal(message, hint)
        )

    @app.command(command)
    async def on_command(ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        text = (command.get("text") or "").strip()
        if text.partition(" ")[0].lower() in ("", "help"):
            await ack(
                response_type="ephemeral", text="How to use /agent", blocks=blocks.help_blocks()
            )
            return
        await ack()
        # The engine's work happens after the ack, one command at a time, in arrival order.
        intake.put_nowait((text, command, respond))
        if not consumers:
            consumers.append(asyncio.create_task(consume()))

    # --- the message shortcut "Send to agent…" (tried right after /agent) ----------------------
    from bot.slack.shortcut import register_shortcut

    register_shortcut(
        app, engine, client, person_of=slack_person, can_post_in=lambda c: can_post_in(c),
        lull=arrivals.lull, turn=arrivals.turn,
    )  # fmt: skip

    intake: asyncio.Queue[tuple[str, dict[str, Any], AsyncRespond]] = asyncio.Queue()
    consumers: list[asyncio.Task[None]] = []

    async def consume() -> None:
        while True:
            text, command, respond = await intake.get()
            try:
                await arrivals.lull()  # acks first: Slack times them, not the intake
                await handle_command(text, command, respond)
            except Exception:  # one bad command must not stop the ones behind it
                log.exception("slash command failed")

    async def handle_command(text: str, command: dict[str, Any], respond: AsyncRespond) -> None:
        word, _, rest = text.partition(" ")
        try:
            actor = slack_person(command["user_id"])
            if word.lower() == "status":
                job = await engine.get(parse_job_id(rest))
                card = blocks.job_card(job, slack_ids(engine),
                                       console_url=engine.settings.console_url)  # fmt: skip
                await respond(response_type="ephemeral", text=blocks.card_text(job), blocks=card)
            elif word.lower() == "routines":
                from runtime import routines

                listed = await routines.routines(engine)
                lines = [await blocks.routine_line(engine, r) for r in listed]
                text = "\n".join(lines) or "No routines yet. Propose one with /agent schedule "
                await respond(response_type="ephemeral", text=text[:3000],
                              blocks=blocks.routines_blocks(lines))  # fmt: skip
            elif word.lower() == "audit":
                job = await engine.get(parse_job_id(rest))
                events = await engine.events(job.id)
                await respond(
                    response_type="ephemeral",
                    text=f"Audit trail of {job.job_id}",
                    blocks=blocks.audit_blocks(job, events),
                )
            elif not await can_post_in(command["channel_id"]):
                await respond(
                    response_type="ephemeral",
                    text="I am not in this private channel, so the job's card and approvals "
                    "could not be posted here. Invite me with `/invite @agent` and ask again "
                    "(nothing was submitted).",
                )
            else:
                trigger = command.get("trigger_id")
                job = await engine.submit(
                    text,
                    actor,
                    Origin.slack,
                    # Slack may deliver one command twice; its trigger id makes it one job.
                    request_key=f"slack:{trigger}" if trigger else None,
                    reply_to={
                        "door": "slack",
                        "channel": command["channel_id"],
                        "user": command["user_id"],
                    },
                )
                if job.state is JobState.denied:
                    said = f"{job.job_id} was denied: {job.result.get('reason') or 'by policy'}"
                    await respond(
                        response_type="ephemeral", text=said, blocks=blocks.refusal(said, None)
                    )
                else:
                    await respond(
                        response_type="ephemeral",
                        text=f"Accepted as {job.job_id} ({job.state.value}); "
                        "follow it in the thread of its card.",
                    )
        except AcpError as error:
            hint = error.hint
            if hint is None and isinstance(error, BadRequest):
                hint = f"for example: {blocks.EXAMPLE}"
            await respond(
                response_type="ephemeral",
                text=error.message,
                blocks=blocks.refusal(error.message, hint),
            )

    membership: dict[str, tuple[float, bool]] = {}

    async def can_post_in(channel: str) -> bool:
        """Whether the app can post a job's card here: any public channel (chat:write.public)
        and DM, a private channel only once invited. Asked of Slack at most once a minute."""
        if channel.startswith("D"):
            return True
        known = membership.get(channel)
        if known is not None and time.monotonic() - known[0] < MEMBERSHIP_TTL_S:
            return known[1]
        try:
            async with asyncio.timeout(5):
                info = (await client.conversations_info(channel=channel))["channel"]
            able = bool(info.get("is_member") or not info.get("is_private"))
        except SlackApiError as error:
            able = error.response.get("error") not in ("channel_not_found", "not_in_channel")
        except TimeoutError:
            return True  # Slack is slow: try to post; the delivery retries and logs
        membership[channel] = (time.monotonic(), able)
        return able

    def _job_and_hash(value: str) -> tuple[int, str]:
        job_id, _, action_hash = value.partition("|")
        return int(job_id), action_hash

    @app.action("acp_approve")
    async def on_approve(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id")
        try:
            job_id, action_hash = _job_and_hash(action["value"])
            await engine.approve(job_id, slack_person(user), action_hash=action_hash)
        except AcpError as error:
            await ephemeral(channel, user, error)

    @app.action("acp_reject")
    async def on_reject(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id")
        try:
            job_id, action_hash = _job_and_hash(action["value"])
            verdict = await engine.may_decide(job_id, slack_person(user), approve=False)
            if verdict.effect != "allow":
                await ephemeral(channel, user, "; ".join(verdict.reasons))
                return
            await client.views_open(
                trigger_id=body["trigger_id"],
                view=blocks.reason_modal(job_id, action_hash, channel),
            )
        except AcpError as error:
            await ephemeral(channel, user, error)

    @app.view("acp_reject_reason")
    async def on_reject_reason(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = body["user"]["id"]
        job_id, action_hash, _channel = view["private_metadata"].split("|", 2)
        reason = view["state"]["values"]["reason"]["value"]["value"] or ""
        try:
            await engine.reject(int(job_id), slack_person(user), reason=reason,
                                action_hash=action_hash)  # fmt: skip
        except AcpError as error:
            await ack(response_action="errors", errors={"reason": error.message[:150]})
            return
        await ack()

    @app.action(re.compile(r"^acp_answer_\d+$"))
    async def on_answer_option(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id")
        job_id, _, option = action["value"].partition("|")
        try:
            await engine.answer(int(job_id), slack_person(user), option)
        except AcpError as error:
            await ephemeral(channel, user, error)

    @app.action("acp_answer_text")
    async def on_answer_text(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id")
        try:
            job = await engine.get(int(action["value"]))
            await client.views_open(
                trigger_id=body["trigger_id"], view=blocks.answer_modal(job, channel)
            )
        except AcpError as error:
            await ephemeral(channel, user, error)

    @app.view("acp_answer_text")
    async def on_answer_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        job_id, _, _channel = view["private_metadata"].partition("|")
        answer = view["state"]["values"]["answer"]["value"]["value"] or ""
        try:
            await engine.answer(int(job_id), slack_person(body["user"]["id"]), answer)
        except AcpError as error:
            await ack(response_action="errors", errors={"answer": error.message[:150]})
            return
        await ack()

    async def handle_message(
        event: dict[str, Any], bot_user_id: str | None, *, door: dict[str, Any] | None = None
    ) -> None:
        """A message that asks for a job (a mention, a DM, the assistant panel); `door` adds
        to the job's reply_to (the assistant thread it came from)."""
        await arrivals.lull()  # acks first: Slack times them, not the intake
        from bot.slack.context import thread_context, thread_messages
        from bot.slack.files import files_on, request_inputs

        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        if not user or not channel or not ts:
            return
        text = _without_mention(event.get("text") or "", bot_user_id)
        thread_ts = event.get("thread_ts")
        own_files = files_on(event)
        try:
            if not text and own_files:
                raise BadRequest(
                    f"{own_files[0].name or 'the file'} came without a request; nothing was "
                    "submitted",
                    hint="send the request with the file attached, e.g. `doc reports: weekly "
                    "summary `template templates/weekly.md.j2 out/weekly.md inputs/NAME.csv``",
                )
            if text.partition(" ")[0].lower() in ("", "help"):
                await client.chat_postEphemeral(
                    channel=channel, user=user, text="How to use the agent",
                    blocks=blocks.help_blocks(), thread_ts=thread_ts,
                )  # fmt: skip
                return
            actor = slack_person(user)
            context = []
            above: list[dict[str, Any]] = []
            if thread_ts and thread_ts != ts:
                limits = engine.policy.slack
                try:
                    above, seen = await thread_messages(
                        client, channel, thread_ts, before=ts,
                        wanted=limits.thread_context_messages,
                    )  # fmt: skip
                except (TimeoutError, SlackApiError) as error:
                    why = getattr(error, "response", {}) or {}
                    await ephemeral(channel, user, "I could not read the thread above "
                                    f"({why.get('error', 'no answer in time')}); the job has "
                                    "none of it as context.")  # fmt: skip
                else:
                    person_of = engine.policy.person_for
                    context.append(thread_context(
                        above, limits, lambda uid: person_of("slack", uid),
                        source=f"slack thread {channel}/{thread_ts}", seen=seen,
                    ))  # fmt: skip
            # Files attached to it, or shared in the thread above a doc request: its inputs.
            inputs = await request_inputs(engine, client, text, actor, own_files, above)
            reply_to = {"door": "slack", "channel": channel, "user": user,
                        "thread_ts": thread_ts or ts, **(door or {})}  # fmt: skip
            async with arrivals.turn():  # one submission at a time, in a lull
                job = await engine.submit(
                    text, actor, Origin.slack,
                    # Slack redelivers events: one message is one job.
                    request_key=f"slack-message:{channel}:{ts}",
                    reply_to=reply_to, context=context, inputs=inputs,
                )  # fmt: skip
            if job.state is JobState.denied and _wrong_channel(job):
                reason = job.result.get("reason") or "the policy does not allow it here"
                await ephemeral(channel, user, f"{job.job_id} was denied: {reason}")
        except AcpError as error:
            hint = error.hint
            if hint is None and isinstance(error, BadRequest):
                hint = f"for example: {blocks.EXAMPLE}"
            await client.chat_postEphemeral(
                channel=channel, user=user, text=error.message,
                blocks=blocks.refusal(error.message, hint), thread_ts=thread_ts,
            )  # fmt: skip

    # --- the assistant panel: suggested prompts, messages as requests ------------------------
    from bot.slack.assistant import build_assistant

    app.use(OnlyFor(ASSISTANT_EVENTS, build_assistant(lambda: engine.policy, slack_person,
                                                      handle_message)))  # fmt: skip

    @app.event("app_home_opened")
    async def on_home(event: dict[str, Any]) -> None:
        user = event["user"]
        try:
            person = slack_person(user).person
        except AcpError as error:
            view = {"type": "home", "blocks": blocks.refusal(error.message, error.hint)}
            await client.views_publish(user_id=user, view=view)
            return
        pending = await engine.awaiting(person)
        recent = await engine.jobs(requester=person, limit=15)
        await client.views_publish(
            user_id=user, view=blocks.home_view(pending, recent, slack_ids(engine))
        )

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("slack listener failed: %s", error, exc_info=error)

    return app
