"""Live progress in Slack: a job's card is its one progress message, updated in place at most
once a second per message however fast its steps run; the thread keeps the milestones; one
job's throttled card never holds another job's.

The service is real (`acp serve`, a second `acp worker` where two jobs must run at once), the
sandbox is real, and the Slack stand-in answers 429 to a second chat.update of one message
within a second, as Slack does to a burst.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from typing import IO

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.doors.slack.rig import CHANNEL, SlackRig
from tests.standins.slack_standin import Call, SlackStandIn
from tests.support.acp_process import ACP, ROOT, acp

ONCE_A_SECOND = 1.0  # what Slack tolerates for updates of one message
CLOCK_SLACK = 0.05  # two processes read the same monotonic clock; a request takes a moment


def quick_steps(name: str, count: int) -> str:
    """A code request on the demo repo whose steps are `count` quiet shell no-ops."""
    lines = "\n".join(f": {name} step {n}" for n in range(1, count + 1))
    return f"code demo: run these\n```\n{lines}\n```"


def card_updates(standin: SlackStandIn, ts: str) -> list[Call]:
    return [c for c in standin.calls_to("chat.update") if c.args.get("ts") == ts]


def events_of(rig: SlackRig, job: str) -> list[dict]:
    exported = acp(rig.env, "audit", "export", "--job", job)
    assert exported.returncode == 0, exported.stderr
    return [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]


def card_of(standin: SlackStandIn, job: str) -> str:
    for (channel, ts), message in standin.messages.items():
        if channel == CHANNEL and not message.get("thread_ts") and job in message["text"]:
            return ts
    raise AssertionError(f"no card of {job}")


async def final_card(
    standin: SlackStandIn, job: str, words: str, timeout: float = 20, state: str = "succeeded"
) -> str:
    """Wait until the card of `job` shows `words` and its final `state` (a card may show the
    last step while still running: the final render follows within the card's pacing); its ts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for (channel, ts), message in list(standin.messages.items()):
            mine = channel == CHANNEL and not message.get("thread_ts") and job in message["text"]
            shown = json.dumps(message.get("blocks"))
            if mine and words in shown and state in shown:
                return ts
        await asyncio.sleep(0.1)
    raise AssertionError(f"the card of {job} never showed {words!r} and {state!r}")


async def thread_with(standin: SlackStandIn, ts: str, words: str, timeout: float = 15) -> list[str]:
    """The thread under `ts` once a reply shows `words` (posted after the card's last render,
    so it may trail the card by a moment), or as it stands at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        thread = [m.get("text", "") for m in standin.thread(CHANNEL, ts)]
        if any(words in t for t in thread) or time.monotonic() > deadline:
            return thread
        await asyncio.sleep(0.1)


def assert_paced(updates: list[Call]) -> None:
    statuses = [c.status for c in updates]
    assert set(statuses) == {200}, f"Slack had to answer 429: a card updated too often {statuses}"
    gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
    assert all(gap >= ONCE_A_SECOND - CLOCK_SLACK for gap in gaps), gaps


def monotonic_at(iso: str) -> float:
    """An audit timestamp (UTC wall clock) on this process's monotonic clock."""
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() - (time.time() - time.monotonic())


async def test_fifty_quick_steps_update_one_card_at_most_once_a_second(rig):
    status, _, _ = await rig.command(quick_steps("solo", 50))
    assert status == 200
    await rig.wait_state({"succeeded"}, timeout=60)
    ts = await final_card(rig.standin, "J-1", "Step 50/50")

    events = events_of(rig, "J-1")
    steps = [e for e in events if e["kind"] == "tool.shell"]
    assert len(steps) == 50
    first, last = monotonic_at(steps[0]["ts"]), monotonic_at(steps[-1]["ts"])
    updates = card_updates(rig.standin, ts)
    print(f"\n50 steps in {last - first:.2f}s -> {len(updates)} chat.update calls over "
          f"{updates[-1].at - updates[0].at:.2f}s; {len(events)} events")  # fmt: skip
    # One render a second while the steps ran (plus the card's post, the first step and the
    # end): far fewer than the events, however slow a loaded machine makes the steps.
    assert len(updates) <= (last - first) / ONCE_A_SECOND + 4
    assert len(updates) <= len(steps) / 2, "far fewer updates than step events"
    assert_paced(updates)

    shown = json.dumps(updates[-1].args["blocks"])
    assert "succeeded" in shown and "Step 50/50" in shown and ": solo step 50" in shown
    assert "50 of 50 steps ran" in shown
    assert rig.standin.messages[(CHANNEL, ts)]["blocks"] == updates[-1].args["blocks"]

    # The outcome is still told in the thread (sent after the card's render, in order).
    thread = await thread_with(rig.standin, ts, "changed no file")
    assert not [t for t in thread if "→ exit" in t], f"per-step thread replies: {thread}"
    assert any("changed no file" in t for t in thread), "the outcome is still told in the thread"
    cards = [m for m in rig.standin.channel_messages(CHANNEL)]
    assert len(cards) == 1, "one message for the job's progress"


def start_worker(rig: SlackRig) -> tuple[subprocess.Popen, IO[str]]:
    """`acp worker` beside the rig's service, the way an operator adds one."""
    log = open(rig.service.log.with_suffix(".worker.log"), "w")  # noqa: SIM115 - closed by caller
    worker = subprocess.Popen(
        [*ACP, "worker"], env=rig.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    return worker, log


def stop_worker(worker: subprocess.Popen, log: IO[str]) -> None:
    worker.terminate()
    try:
        worker.wait(15)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(5)
    log.close()


@pytest.fixture
async def two_worker_rig(rig):
    """The rig's service, plus a second worker beside it: two jobs run at the same time."""
    worker, log = await asyncio.to_thread(start_worker, rig)
    try:
        yield rig
    finally:
        await asyncio.to_thread(stop_worker, worker, log)


async def test_a_throttled_job_never_holds_another_jobs_card(two_worker_rig):
    rig = two_worker_rig
    await rig.command(quick_steps("long", 60))
    await rig.wait_state({"running"}, "J-1")
    await rig.command(quick_steps("short", 2))
    await rig.wait_state({"succeeded"}, "J-2", timeout=60)
    short = await final_card(rig.standin, "J-2", "Step 2/2")
    await rig.wait_state({"succeeded"}, "J-1", timeout=60)
    long = await final_card(rig.standin, "J-1", "Step 60/60")

    long_updates, short_updates = card_updates(rig.standin, long), card_updates(rig.standin, short)
    assert_paced(long_updates)
    assert_paced(short_updates)
    short_done = monotonic_at(
        next(e["ts"] for e in events_of(rig, "J-2") if e["kind"] == "job.succeeded")
    )
    short_final = short_updates[-1]
    print(f"\nlong job: {len(long_updates)} card updates; short job: {len(short_updates)}, "
          f"its last {short_final.at - short_done:.2f}s after it succeeded")  # fmt: skip
    assert "succeeded" in json.dumps(short_final.args["blocks"])
    # The long job's card was being throttled all along; the short one's was not held by it.
    assert short_final.at - short_done < ONCE_A_SECOND + 1.0
    before = [c for c in long_updates if c.at < short_final.at]
    after = [c for c in long_updates if c.at > short_final.at]
    assert before and after, "the two cards' updates interleave"
    assert "running" in json.dumps(before[-1].args["blocks"])
    assert "succeeded" in json.dumps(long_updates[-1].args["blocks"])
    for ts in (long, short):
        thread = await thread_with(rig.standin, ts, "changed no file")
        assert any("changed no file" in t for t in thread), thread


async def test_standin_answers_429_to_a_burst_of_updates_of_one_message():
    async with SlackStandIn() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
        posted = await client.chat_postMessage(channel=CHANNEL, text="card")
        other = await client.chat_postMessage(channel=CHANNEL, text="another card")
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="1")
        await client.chat_update(channel=CHANNEL, ts=other["ts"], text="1")  # its own message
        with pytest.raises(SlackApiError) as refused:
            await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="2")
        assert refused.value.response.status_code == 429
        assert refused.value.response.headers.get("retry-after") == "1"
        assert refused.value.response["error"] == "ratelimited"
        assert [c.status for c in slack.calls_to("chat.update")] == [200, 200, 429]
        await asyncio.sleep(ONCE_A_SECOND)
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="3")
        assert slack.messages[(CHANNEL, posted["ts"])]["text"] == "3"
