"""Mentioning the app in a thread, or writing to it directly: the same intake and policy as
/agent; in a thread the conversation above is the job's context (capped by the policy, authors
named as people, pasted tokens redacted), kept on the chain, and the card lands in the thread.

`acp serve` in HTTP mode against the Slack stand-in; signed Events API deliveries over real
HTTP; the thread read back through conversations.replies.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import yaml

from tests.doors.slack.rig import ALICE, BOB, CAROL, CHANNEL, FORM, SECRET, SlackRig, http_env
from tests.standins.slack_signing import event_callback, post_signed, slash_command
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import ROOT, acp

BOT = "U0BOT"
PASTED = "xoxb-1234567890-abcdefghijklmnop"


def capped_policy(folder: Path, messages: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "policies").glob("*.yml"):
        (folder / path.name).write_text(path.read_text())
    policy = yaml.safe_load((folder / "default.yml").read_text())
    policy["slack"] = {"thread_context_messages": messages, "thread_context_bytes": 4000}
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def mention_event(message: dict) -> dict:
    """The app_mention event Slack sends for a message already in the stand-in's channel."""
    return {"type": "app_mention", **{k: message[k] for k in ("user", "text", "ts", "channel")},
            "thread_ts": message["thread_ts"]}  # fmt: skip


def dm_event(message: dict) -> dict:
    """The message event (channel_type im) Slack sends for a direct message to the app."""
    event = {"type": "message", "channel_type": "im"}
    event.update({k: message[k] for k in ("text", "ts", "channel") if k in message})
    if "user" in message:
        event["user"] = message["user"]
    return event


async def deliver(rig: SlackRig, event: dict) -> None:
    status, _, took = await post_signed(
        rig.url, event_callback(event), SECRET, content_type="application/json"
    )
    assert status == 200 and took < 3


async def until(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(check)
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


async def test_a_mention_in_a_thread_takes_the_conversation_above_as_context(tmp_path: Path):
    standin = await SlackStandIn().start()
    env = http_env(tmp_path, standin, ACP_POLICY_DIR=str(capped_policy(tmp_path / "p", 6)))
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        parent = standin.add_message(CHANNEL, "ALERT: test_refund is flaky on main", user=BOB)
        root = parent["ts"]
        for n in range(10):
            author = (ALICE, BOB, "U0STRANGER")[n % 3]
            text = f"reply {n}: looked at it"
            if n == 8:
                text = f"reply {n}: try with my token {PASTED} if you need"
            standin.add_message(CHANNEL, text, user=author, thread_ts=root)
        mention = standin.add_message(
            CHANNEL, f"<@{BOT}> code demo: run `ls`", user=ALICE, thread_ts=root
        )
        await deliver(rig, mention_event(mention))

        job = await until(lambda: _job(env, "J-1"))
        assert job["prompt"] == "code demo: run `ls`"
        assert job["spec"]["origin"] == "slack" and job["spec"]["requester"] == "alice"
        context = next(a for a in job["artifacts"] if a["name"] == "context/slack-thread.txt")
        text = acp(env, "artifact", "J-1", "context/slack-thread.txt", "-o", "-").stdout
        lines = text.splitlines()
        # Capped by the policy: the newest 6 of the 11 messages above, oldest first.
        assert len(lines) == 6
        assert [line.split(": ", 1)[1].split(":")[0] for line in lines] == [
            f"reply {n}" for n in range(4, 10)
        ]
        assert "ALERT" not in text and "<@U0BOT>" not in text  # older, and the mention itself
        assert PASTED not in text and "[redacted:token]" in text
        assert "alice (U0ALICE001)" in text and "bob (U0BOB00001)" in text
        assert "unknown Slack user U0STRANGER" in text
        export = acp(env, "audit", "export", "--job", "J-1").stdout
        events = [json.loads(line) for line in export.splitlines() if line.strip()]
        attached = next(e for e in events if e["kind"] == "context.attached")
        assert attached["artifacts"] == [context["sha256"]]
        assert attached["data"]["messages"] == 6 and attached["data"]["messages_above"] == 11
        assert attached["data"]["truncated"] is True
        assert acp(env, "audit", "verify").returncode == 0

        # The card is posted in the thread the question was asked in, and its updates follow.
        card = await until(lambda: _in_thread(standin, root, "J-1"))
        assert card["thread_ts"] == root

        # The same event delivered again is the same job.
        await deliver(rig, mention_event(mention))
        await asyncio.sleep(1)
        assert _job(env, "J-2") is None

        # The same policy as /agent: carol may not run code on demo, and is told so there.
        denied = standin.add_message(
            CHANNEL, f"<@{BOT}> code demo: run `ls`", user=CAROL, thread_ts=root
        )
        await deliver(rig, mention_event(denied))
        job = await until(lambda: _job(env, "J-2"))
        assert job["state"] == "denied"
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


async def test_a_direct_message_is_a_request_and_its_card_is_in_the_dm(tmp_path: Path):
    standin = await SlackStandIn().start()
    rig = SlackRig(http_env(tmp_path, standin), standin)
    await asyncio.to_thread(rig.start)
    try:
        dm = standin.dm_channel(ALICE)
        message = standin.add_message(dm, "code demo: run `ls`", user=ALICE)
        await deliver(rig, dm_event(message))
        job = await until(lambda: _job(rig.env, "J-1"))
        assert job["spec"]["requester"] == "alice"
        assert not any(a["name"].startswith("context/") for a in job["artifacts"])
        await until(lambda: _in_thread(standin, message["ts"], "J-1", channel=dm))
        # The app's own posts and edits are not requests.
        bot_post = {"text": "code demo: run `ls`", "ts": "99.1", "channel": dm}
        await deliver(rig, {**dm_event(bot_post), "bot_id": "B0BOT"})
        edit = {"text": "", "ts": "99.2", "channel": dm, "user": ALICE}
        await deliver(rig, {**dm_event(edit), "subtype": "message_changed"})
        await asyncio.sleep(1)
        assert _job(rig.env, "J-2") is None
        # Someone the policy does not know is refused where they asked.
        other = standin.add_message(dm, "code demo: run `ls`", user="U0NOBODY")
        await deliver(rig, dm_event(other))
        refused = await until(
            lambda: [e for e in standin.ephemerals if "not a person in the policy" in json.dumps(e)]
        )
        assert refused[0]["user"] == "U0NOBODY"
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


def _job(env: dict[str, str], job_id: str) -> dict | None:
    shown = acp(env, "show", job_id, "--json")
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def _in_thread(standin: SlackStandIn, root: str, words: str, channel: str = CHANNEL):
    for message in standin.thread(channel, root):
        if words in json.dumps(message):
            return message
    return None


CHANNEL_RULES = {
    "channels": [
        {"id": "demo.channels", "job_types": ["code"], "targets": ["demo"],
         "channels": ["C0TEST", "dm"]},
    ]
}  # fmt: skip


async def test_channel_scoping_and_a_private_channel_the_app_is_not_in(tmp_path: Path):
    folder = capped_policy(tmp_path / "p", 20)
    policy = yaml.safe_load((folder / "default.yml").read_text())
    policy["slack"].update(CHANNEL_RULES)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    standin = await SlackStandIn().start()
    standin.channels["G0SECRET1"] = {"id": "G0SECRET1", "is_private": True, "is_member": False}
    standin.channels["C0OTHER12"] = {"id": "C0OTHER12", "is_private": False, "is_member": True}
    env = http_env(tmp_path, standin, ACP_POLICY_DIR=str(folder))
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        # Allowed here (C0TEST is the rig's channel).
        status, _, _ = await rig.command("code demo: run `ls`")
        assert status == 200
        await rig.response_with("Accepted as J-1")
        # Another channel: refused, saying where to ask instead.
        body = slash_command("code demo: run `ls`", user_id=ALICE, channel_id="C0OTHER12",
                             response_url=standin.response_url())  # fmt: skip
        status, _, _ = await post_signed(rig.url, body, SECRET, content_type=FORM)
        assert status == 200
        refused = await rig.response_with("only in <#C0TEST>, direct messages to the app")
        assert "not in <#C0OTHER12>" in json.dumps(refused)
        # The terminal is not a Slack channel: the rule does not bind it.
        done = acp(env, "submit", "--as", "alice", "--no-wait", "code demo: run `ls`")
        assert done.returncode == 0 and "queued" in done.stderr + done.stdout
        # A private channel the app was not invited to: told to invite it; no job is made.
        body = slash_command("code demo: run `ls`", user_id=ALICE, channel_id="G0SECRET1",
                             response_url=standin.response_url())  # fmt: skip
        status, _, _ = await post_signed(rig.url, body, SECRET, content_type=FORM)
        assert status == 200
        await rig.response_with("Invite me with `/invite @agent`")
        jobs = json.loads(acp(env, "jobs", "--json").stdout)
        assert len(jobs) == 3  # J-1 (here), J-2 (denied in C0OTHER12), J-3 (the terminal)
        assert {j["state"] for j in jobs if j["id"] == 2} == {"denied"}
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()
