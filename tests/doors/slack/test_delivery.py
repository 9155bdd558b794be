"""Delivery to Slack: a rate-limited Web API is retried; a restart between a job's end and
its message delivers once.
"""

from __future__ import annotations

import asyncio

from tests.doors.slack.rig import CHANNEL, FIX, awaiting_approval


async def test_rate_limited_web_api_is_retried_after_retry_after(rig):
    rig.standin.fail_next("chat.postMessage", status=429, retry_after=1)
    await awaiting_approval(rig)
    limited = [c for c in rig.standin.calls_to("chat.postMessage")]
    assert len(limited) >= 3, "the 429'd card post was retried, then the thread reply"
    ts, _ = rig.card()
    cards = [m for (c, t), m in rig.standin.messages.items() if not m.get("thread_ts")]
    assert len(cards) == 1 and ts


async def test_restart_between_job_end_and_message_delivers_once(rig):
    rig.standin.error_next("chat.postMessage", "internal_error", times=1_000)
    status, _, _ = await rig.command(FIX)
    assert status == 200
    await rig.wait_state({"awaiting_approval"})
    assert rig.standin.messages == {}, "Slack was down: nothing reached the channel"
    await asyncio.to_thread(rig.service.kill9)
    rig.standin.clear_failures()
    await asyncio.to_thread(rig.start)
    request = await rig.thread_with("acp_approve", timeout=40)
    assert request
    cards = [m for m in rig.standin.messages.values() if not m.get("thread_ts")]
    assert len(cards) == 1, "one card, however many restarts"
    ts, _ = rig.card()
    texts = [m.get("text") for m in rig.standin.thread(CHANNEL, ts)]
    assert len(texts) == len(set(texts)), f"a thread reply was sent twice: {texts}"
