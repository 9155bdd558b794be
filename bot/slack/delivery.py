"""Delivers the Slack outbox: the job card in the channel, kept as the job's one live progress
message, and in its thread what needs people or tells the outcome.

Each job is delivered on its own, so one job waiting never holds another. Its card is rendered
from its current state at most once per MIN_UPDATE_INTERVAL: items that arrive meanwhile stay
pending and the next render covers them all, so the last state always reaches Slack. Items are
marked delivered one by one once what they owe is sent, so a restart neither loses nor repeats a
message. Step events only move the card; long text goes as a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import blocks
from bot.slack.app import slack_ids
from runtime import audit
from runtime.engine import Engine
from runtime.jobs import JobRecord
from runtime.kinds.base import JobKind
from runtime.store import outbox
from runtime.store.outbox import OutboxItem

log = logging.getLogger("acp.slack.delivery")
DOOR = "slack"

# Seconds between two renders of one job's card. Slack's chat.update is Tier 3 (about 50 a
# minute per workspace) and Slack asks for about one message a second per channel.
MIN_UPDATE_INTERVAL = 1.0
# Jobs delivered at once: enough that a slow or rate-limited call never holds the others,
# few enough not to burst Slack.
MAX_JOBS_AT_ONCE = 8
# Per-step events: the card shows them; a thread line each would be noise.
CARD_ONLY = frozenset({"job.started", "job.resumed", *blocks.STEP_KINDS})
ENDINGS = frozenset(
    {"job.succeeded", "job.failed", "publish.merged", "publish.pushed", "publish.pull_request"}
)
# The card is gone or not ours any more: the thread still gets its messages.
CARD_GONE = frozenset({"message_not_found", "cant_update_message"})
SHUTDOWN_GRACE_S = 5.0


class SlackDelivery:
    def __init__(
        self,
        engine: Engine,
        client: AsyncWebClient,
        *,
        poll_interval: float = 0.2,
        min_update_interval: float = MIN_UPDATE_INTERVAL,
    ):
        self.engine = engine
        self.client = client
        self.poll_interval = poll_interval
        self.min_update_interval = min_update_interval
        self._rendered_at: dict[int, float] = {}  # job id -> when its card was last sent
        self._delivering: dict[int, asyncio.Task[None]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    wait = await self.deliver_pending(stop)
                except Exception:  # the loop must outlive a bad item or a database hiccup
                    log.exception("slack delivery pass failed")
                    wait = self.poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self._finish_deliveries()

    async def deliver_pending(self, stop: asyncio.Event | None = None) -> float:
        """Start delivering each job with items due, unless it is being delivered already or
        its card was sent less than the interval ago (its items wait for the next render).
        Returns how long to wait before looking again."""
        now = time.monotonic()
        wait = self.poll_interval
        for job_id, at in list(self._rendered_at.items()):
            if now - at >= self.min_update_interval:
                del self._rendered_at[job_id]  # nothing to hold back any more
        for job_id in await outbox.pending_jobs(self.engine.db, DOOR):
            if len(self._delivering) >= MAX_JOBS_AT_ONCE:
                break
            if job_id in self._delivering:
                continue
            last = self._rendered_at.get(job_id)
            if last is not None and now - last < self.min_update_interval:
                wait = min(wait, last + self.min_update_interval - now)
                continue
            task = asyncio.create_task(self.deliver_job(job_id, stop), name=f"slack-J-{job_id}")
            self._delivering[job_id] = task
            task.add_done_callback(lambda _, job_id=job_id: self._delivering.pop(job_id, None))
        return max(wait, 0.1)

    async def deliver_job(self, job_id: int, stop: asyncio.Event | None = None) -> None:
        """Everything due for one job: its card rendered once from its current state, then
        each item's own thread messages in order, each item marked delivered once sent."""
        try:
            await self._deliver_job(job_id, stop)
        except Exception:  # one job's bad item must not end the others' deliveries
            log.exception("slack delivery of job %s failed", job_id)

    async def _deliver_job(self, job_id: int, stop: asyncio.Event | None) -> None:
        db = self.engine.db
        items = await outbox.pending(db, DOOR, limit=500, job_id=job_id)
        if not items:
            return
        job = await self.engine.get(job_id)  # read after the items: the card covers them all
        if "slack.channel" in (job.decision.get("rule_ids") or []):
            # Asked where the policy does not allow it: told privately, no card there.
            for item in items:
                await outbox.mark_delivered(db, item.id)
            return
        ids = slack_ids(self.engine)
        try:
            thread = await self._render_card(job, ids)
        except Exception as error:  # recorded on the item, which backs off
            await self._failed(items[0], error)  # the job's other items wait behind it
            return
        for item in items:
            if stop is not None and stop.is_set():
                return  # what is left is delivered after the restart
            try:
                await self.deliver(item, job, thread, ids)
            except Exception as error:  # recorded on the item, which backs off
                await self._failed(item, error)  # the job's later items wait behind it
                return
            await outbox.mark_delivered(db, item.id)

    async def _render_card(self, job: JobRecord, ids: dict) -> dict:
        """Post the job's card, or update it in place, showing where the job is now; the
        address of its thread."""
        db = self.engine.db
        thread = await outbox.thread_of(db, job.id, DOOR)
        card = blocks.job_card(job, ids, await audit.events_for(db, job.id),
                               console_url=self.engine.settings.console_url)  # fmt: skip
        text = blocks.card_text(job)
        try:
            if thread is None:
                channel = (job.reply_to or {}).get("channel")
                # Asked in a thread (a mention): the card and everything after it go there.
                root = (job.reply_to or {}).get("thread_ts")
                posted = await self.client.chat_postMessage(
                    channel=channel, text=text, blocks=card, thread_ts=root
                )
                thread = {"channel": posted["channel"], "ts": posted["ts"]}
                if root:
                    thread["root"] = root
                await outbox.remember_thread(db, job.id, DOOR, thread)
                return thread
            try:
                await self.client.chat_update(
                    channel=thread["channel"], ts=thread["ts"], text=text, blocks=card
                )
            except SlackApiError as error:
                if error.response.get("error") not in CARD_GONE:
                    raise
                log.warning("the card of %s cannot be updated (%s)", job.job_id,
                            error.response.get("error"))  # fmt: skip
            return thread
        finally:
            # From the end of the call (a 429 retried inside it included): the next render
            # of this card is at least the interval after Slack last heard of it.
            self._rendered_at[job.id] = time.monotonic()

    async def _failed(self, item: OutboxItem, error: Exception) -> None:
        if isinstance(error, SlackApiError):
            reason = error.response.get("error", str(error))
            gave_up = await outbox.mark_failed(self.engine.db, item, f"slack: {reason}")
            log.warning("slack refused outbox item %s (%s)%s", item.id, reason,
                        "; giving up" if gave_up else "")  # fmt: skip
        elif isinstance(error, OSError):
            await outbox.mark_failed(self.engine.db, item, f"network: {error}")
        else:  # a bug, not Slack: backing off keeps one bad item from spinning
            log.error("outbox item %s could not be delivered", item.id, exc_info=error)
            await outbox.mark_failed(self.engine.db, item, f"error: {error!r}")

    async def _finish_deliveries(self) -> None:
        """At shutdown: let deliveries under way finish their current item, briefly."""
        running = list(self._delivering.values())
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=SHUTDOWN_GRACE_S)
        for task in late:
            task.cancel()  # its item stays pending: sent after the restart
        await asyncio.gather(*late, return_exceptions=True)

    async def deliver(self, item: OutboxItem, job: JobRecord, thread: dict, ids: dict) -> None:
        """What one item owes in the job's thread; its card was rendered for all of them."""
        event = await audit.event_at(self.engine.db, item.data.get("seq", 0))
        if event is None:
            return
        await self._reply(job, event, thread, ids)
        if (job.reply_to or {}).get("assistant"):
            # Asked in the assistant panel: its status line and title follow the job.
            from bot.slack.assistant import follow_job

            await follow_job(self.client, job, event, ids)

    async def _reply(
        self, job: JobRecord, event: audit.AuditEvent, thread: dict, ids: dict
    ) -> None:
        channel, ts = thread["channel"], thread.get("root") or thread["ts"]
        if event.kind == "approval.requested":
            diff = self._diff_text(job)
            inline = diff if diff is not None and len(diff) <= blocks.TEXT_LIMIT - 20 else None
            high_risk = any(g.get("high_risk") for g in job.decision.get("approvals", []))
            await self.client.chat_postMessage(
                channel=channel, thread_ts=ts, text=f"{job.job_id} needs approval",
                blocks=blocks.approval_request(job, inline, ids, high_risk=high_risk),
            )  # fmt: skip
            if diff is not None and inline is None:
                await self._upload(channel, ts, f"{job.job_id}-review.txt", diff,
                                   f"The full diff of {job.job_id}")  # fmt: skip
            await self._attach(job, channel, ts, self._kind(job).evidence(job).attach)
            return
        if event.kind == "job.clarification_requested":
            await self.client.chat_postMessage(
                channel=channel, thread_ts=ts, text=job.clarification.question
                if job.clarification else "question", blocks=blocks.clarification(job),
            )  # fmt: skip
            return
        if event.kind not in CARD_ONLY:
            line = blocks.event_line(event, ids, job.spec.job_type.value)
            if line is None:
                return
            await self.client.chat_postMessage(channel=channel, thread_ts=ts, text=line)
            if event.kind in ENDINGS:
                # What the job's kind shows of its end: a result table, the last page and
                # trace, the documents it published.
                await self._results(job, channel, ts, read=event.kind == "job.succeeded")
        if event.kind == "tool.shell" and event.artifacts:
            output = self.engine.artifacts.read(event.artifacts[0]).decode(errors="replace")
            if "--- stdout\n\n--- stderr\n" not in output:  # something was printed: show it
                await self._upload(channel, ts, f"{job.job_id}-step-{event.data.get('index')}.log",
                                   output, f"Output of step {event.data.get('index')}")  # fmt: skip

    def _kind(self, job: JobRecord) -> JobKind:
        from runtime.kinds import registry

        return registry.kind_for(job.spec.job_type)

    async def _results(self, job: JobRecord, channel: str, ts: str, *, read: bool) -> None:
        """What the kind shows of an ended job: text to read (in the thread, a file when
        long) and files to attach."""
        shown = self._kind(job).results(job)
        attached = {item.sha256 for item in shown.attach}
        if read:
            if shown.lines:  # the facts the result stands on (a SQL job: the statement)
                facts = "\n".join(f"{line.label}: {line.text}" for line in shown.lines)
                if len(facts) <= blocks.TEXT_LIMIT - 20:
                    await self.client.chat_postMessage(
                        channel=channel, thread_ts=ts, text=blocks.code_block(facts)
                    )
                else:
                    await self._upload(channel, ts, f"{job.job_id}-statement.txt", facts,
                                       "The statement that ran")  # fmt: skip
            for digest in shown.read:
                if digest in attached:  # a file of its own below, not posted twice
                    continue
                text = self.engine.artifacts.read(digest).decode(errors="replace")
                if len(text) <= blocks.TEXT_LIMIT - 20:
                    await self.client.chat_postMessage(
                        channel=channel, thread_ts=ts, text=blocks.code_block(text)
                    )
                else:
                    await self._upload(channel, ts, f"{job.job_id}-result.txt", text, "Result")
        await self._attach(job, channel, ts, shown.attach)

    async def _attach(self, job: JobRecord, channel: str, ts: str, files: list) -> None:
        for item in files:
            await self._upload(channel, ts, item.filename,
                               self.engine.artifacts.read(item.sha256), item.title)  # fmt: skip

    def _diff_text(self, job: JobRecord) -> str | None:
        """What the reviewer reads, as the job's kind says (a diff, a document diff)."""
        shown = self._kind(job).evidence(job)
        texts = [self.engine.artifacts.read(d).decode(errors="replace") for d in shown.read]
        return "\n".join(texts) if texts else None

    async def _upload(
        self, channel: str, ts: str, filename: str, content: str | bytes, title: str
    ) -> None:
        await self.client.files_upload_v2(
            channel=channel, thread_ts=ts, content=content, filename=filename, title=title
        )
