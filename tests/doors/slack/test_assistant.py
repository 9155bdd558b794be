"""The assistant panel: suggested prompts from the person's grants, a message there is a
request through the same policy, the panel's status line follows the job and its title is the
job's summary.

`acp serve` in HTTP mode against the Slack stand-in; signed Events API deliveries
(assistant_thread_started, message.im in the assistant thread) over real HTTP; the stand-in
checks assistant.threads.* arguments as Slack does (a DM channel, one to four prompts).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.doors.slack.rig import ALICE, CAROL, FIX, SECRET, SlackRig, http_env
from tests.doors.slack.test_mentions import until
from tests.standins.slack_signing import event_callback, post_signed
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import acp


async def deliver(rig: SlackRig, event: dict) -> None:
    status, _, took = await post_signed(
        rig.url, event_callback(event), SECRET, content_type="application/json"
    )
    assert status == 200 and took < 3


def started(user: str, channel: str, ts: str) -> dict:
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user, "channel_id": channel, "thread_ts": ts,
            "context": {"channel_id": "C0TEST", "team_id": "T0TEST"},
        },
    }  # fmt: skip


def prompts_for(standin: SlackStandIn, channel: str) -> list[dict] | None:
    for call in standin.calls_to("assistant.threads.setSuggestedPrompts"):
        if call.args.get("channel_id") == channel and call.response.get("ok"):
            prompts = call.args["prompts"]
            return json.loads(prompts) if isinstance(prompts, str) else prompts
    return None


async def test_suggested_prompts_follow_the_persons_grants(tmp_path: Path):
    standin = await SlackStandIn().start()
    rig = SlackRig(http_env(tmp_path, standin), standin)
    await asyncio.to_thread(rig.start)
    try:
        carol_dm, alice_dm = standin.dm_channel(CAROL), standin.dm_channel(ALICE)
        await deliver(rig, started(CAROL, carol_dm, "1700000000.000100"))
        await deliver(rig, started(ALICE, alice_dm, "1700000000.000200"))
        carol = await until(lambda: prompts_for(standin, carol_dm))
        alice = await until(lambda: prompts_for(standin, alice_dm))
        # carol, an analyst, is granted read-only SQL on the replica only.
        assert carol and all(p["message"].startswith("sql ") for p in carol)
        assert any("payments-replica" in p["title"] for p in carol)
        # alice, an engineer, is offered one of each kind she holds, at most four.
        kinds = {p["message"].split()[0] for p in alice}
        assert {"code", "sql", "doc"} <= kinds and len(alice) <= 4
        greeting = next(
            m for (c, _), m in standin.messages.items() if c == carol_dm and "Hi carol" in m["text"]
        )
        assert greeting["thread_ts"] == "1700000000.000100"
        # Someone the policy does not know is told so in the panel, and offered nothing.
        nobody_dm = standin.dm_channel("U0NOBODY")
        await deliver(rig, started("U0NOBODY", nobody_dm, "1700000000.000300"))
        await until(
            lambda: [m for (c, _), m in standin.messages.items()
                     if c == nobody_dm and "not a person in the policy" in m["text"]]
        )  # fmt: skip
        assert prompts_for(standin, nobody_dm) is None
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


async def test_a_message_in_the_panel_is_a_job_whose_status_the_panel_follows(tmp_path: Path):
    standin = await SlackStandIn().start()
    env = http_env(tmp_path, standin)
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        dm = standin.dm_channel(ALICE)
        root = "1700000000.000100"
        standin.messages[(dm, root)] = {"type": "message", "channel": dm, "ts": root,
                                        "text": "Hi alice", "bot_id": "B0BOT"}  # fmt: skip
        await deliver(rig, started(ALICE, dm, root))
        message = standin.add_message(dm, FIX, user=ALICE, thread_ts=root)
        await deliver(rig, {"type": "message", "channel_type": "im", "channel": dm,
                            "user": ALICE, "text": FIX, "ts": message["ts"],
                            "thread_ts": root})  # fmt: skip

        def statuses() -> list[str]:
            return [c.args["status"] for c in standin.calls_to("assistant.threads.setStatus")
                    if c.args.get("thread_ts") == root]  # fmt: skip

        await until(lambda: "waiting for bob's approval…" in statuses())
        job = json.loads(acp(env, "show", "J-1", "--json").stdout)
        assert job["spec"]["requester"] == "alice" and job["state"] == "awaiting_approval"
        assert job["reply_to"]["assistant"] is True
        # The card is in the panel's thread; the title is the job's summary.
        assert any("J-1" in json.dumps(m) for m in standin.thread(dm, root))
        titles = [c.args["title"] for c in standin.calls_to("assistant.threads.setTitle")]
        assert len(titles) == 1 and titles[0].startswith("J-1 code demo: ")
        seen = statuses()
        assert seen[0] == "reading your request…"
        assert seen.index("reading your request…") < seen.index("waiting for bob's approval…")

        assert acp(env, "approve", "J-1", "--as", "bob").returncode == 0
        await rig.wait_state({"succeeded"})
        # The job ended: the status line is cleared, after the approval wait.
        await until(lambda: statuses()[-1] == "")
        assert statuses().index("waiting for bob's approval…") < len(statuses()) - 1
        assert all(c.response.get("ok") for c in standin.calls_to("assistant.threads.setStatus"))
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


async def test_carol_asking_the_panel_for_code_is_denied_by_the_same_policy(tmp_path: Path):
    standin = await SlackStandIn().start()
    env = http_env(tmp_path, standin)
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        dm, root = standin.dm_channel(CAROL), "1700000000.000100"
        standin.messages[(dm, root)] = {"type": "message", "channel": dm, "ts": root,
                                        "text": "Hi carol", "bot_id": "B0BOT"}  # fmt: skip
        message = standin.add_message(dm, "code demo: run `ls`", user=CAROL, thread_ts=root)
        await deliver(rig, {"type": "message", "channel_type": "im", "channel": dm,
                            "user": CAROL, "text": message["text"], "ts": message["ts"],
                            "thread_ts": root})  # fmt: skip
        job = await until(lambda: json.loads(acp(env, "show", "J-1", "--json").stdout or "null"))
        assert job["state"] == "denied" and "grants.none" in job["decision"]["rule_ids"]
        # The denial is shown in the panel's thread and the status line is cleared.
        await until(lambda: any("denied" in json.dumps(m).lower()
                                for m in standin.thread(dm, root)))  # fmt: skip
        await until(
            lambda: [c for c in standin.calls_to("assistant.threads.setStatus")
                     if c.args.get("status") == ""]
        )  # fmt: skip
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()
