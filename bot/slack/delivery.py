"""Delivers the Slack outbox: the job card in the channel, then every update in its thread.

Items are sent in the order they were written and marked delivered one by one, so a restart
resumes where it stopped. The card is updated in place (chat.update); long text goes as a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

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


class SlackDelivery:
    def __init__(self, engine: Engine, client: AsyncWebClient, *, poll_interval: float = 0.2):
        self.engine = engine
        self.client = client
        self.poll_interval = poll_interval

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.deliver_pending(stop)
            except Exception:  # the loop must outlive a bad item or a database hiccup
                log.exception("slack delivery pass failed")
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)

    async def deliver_pending(self, stop: asyncio.Event | None = None) -> int:
        sent = 0
        blocked: set[int] = set()
        for item in await outbox.pending(self.engine.db, DOOR):
            if stop is not None and stop.is_set():
                break  # what is left is delivered after the restart
            if item.job_id in blocked:
                continue  # keep a job's messages in order behind its failed one
            try:
                await self.deliver(item)
            except SlackApiError as error:
                reason = error.response.get("error", str(error))
                gave_up = await outbox.mark_failed(self.engine.db, item, f"slack: {reason}")
                log.warning("slack refused outbox item %s (%s)%s", item.id, reason,
                            "; giving up" if gave_up else "")  # fmt: skip
                blocked.add(item.job_id)
                continue
            except OSError as error:
                await outbox.mark_failed(self.engine.db, item, f"network: {error}")
                blocked.add(item.job_id)
                continue
            await outbox.mark_delivered(self.engine.db, item.id)
            sent += 1
        return sent

    async def deliver(self, item: OutboxItem) -> None:
        job = await self.engine.get(item.job_id)
        if "slack.channel" in (job.decision.get("rule_ids") or []):
            return  # asked where the policy does not allow it: told privately, no card there
        ids = slack_ids(self.engine)
        thread = await outbox.thread_of(self.engine.db, job.id, DOOR)
        card = blocks.job_card(job, ids)
        if thread is None:
            channel = (job.reply_to or {}).get("channel")
            # Asked in a thread (a mention): the card and everything after it go there.
            root = (job.reply_to or {}).get("thread_ts")
            posted = await self.client.chat_postMessage(
                channel=channel, text=blocks.card_text(job), blocks=card, thread_ts=root
            )
            thread = {"channel": posted["channel"], "ts": posted["ts"]}
            if root:
                thread["root"] = root
            await outbox.remember_thread(self.engine.db, job.id, DOOR, thread)
        else:
            await self.client.chat_update(
                channel=thread["channel"], ts=thread["ts"], text=blocks.card_text(job), blocks=card
            )
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
        line = blocks.event_line(event, ids, job.spec.job_type.value)
        if line is None:
            return
        await self.client.chat_postMessage(channel=channel, thread_ts=ts, text=line)
        if event.kind in (
            "job.succeeded", "job.failed", "publish.merged", "publish.pushed",
            "publish.pull_request",
        ):  # fmt: skip
            # What the job's kind shows of its end: a result table, the last page and trace,
            # the documents it published.
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
        if read:
            for digest in shown.read:
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
