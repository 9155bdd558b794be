"""The message shortcut "Send to agent…": a modal offering only what the person is granted,
the message and its thread as the job's context, the card in the message's thread.

`acp serve` in HTTP mode against the Slack stand-in; signed message_action and view_submission
payloads over real HTTP; views.open checked by the stand-in (trigger age, one view a trigger).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.doors.slack.rig import ALICE, BOB, CAROL, CHANNEL, FORM, SECRET, SlackRig, http_env
from tests.doors.slack.test_mentions import until
from tests.standins.slack_signing import message_shortcut, post_signed, view_submission
from tests.standins.slack_standin import SlackStandIn
from tests.support.acp_process import acp

CALLBACK = "acp_send_to_agent"


async def use_shortcut(rig: SlackRig, message: dict, user: str) -> dict:
    """Choose "Send to agent…" on `message`; the modal the app opened for it."""
    before = len(rig.standin.views_opened)
    body = message_shortcut(CALLBACK, message, user_id=user, channel_id=CHANNEL,
                            response_url=rig.standin.response_url())  # fmt: skip
    status, _, took = await post_signed(rig.url, body, SECRET, content_type=FORM)
    assert status == 200 and took < 3
    views = await until(lambda: rig.standin.views_opened[before:])
    return views[0]


def options(view: dict) -> list[str]:
    select = next(b for b in view["blocks"] if b.get("block_id") == "what")["element"]
    return [o["value"] for o in select["options"]]


async def submit(rig: SlackRig, view: dict, values: dict, user: str) -> str:
    """Submit the modal Slack opened (its view id: a retried submission has the same)."""
    body = view_submission(CALLBACK, view["private_metadata"], values, user_id=user,
                           view_id=view["id"])  # fmt: skip
    status, text, _ = await post_signed(rig.url, body, SECRET, content_type=FORM)
    assert status == 200
    return text


def chosen(value: str, instruction: str) -> dict:
    option = {"text": {"type": "plain_text", "text": value}, "value": value}
    return {"what": {"value": {"type": "static_select", "selected_option": option}},
            "instruction": {"value": instruction}}  # fmt: skip


async def test_send_a_thread_message_to_the_agent(tmp_path: Path):
    standin = await SlackStandIn().start()
    env = http_env(tmp_path, standin)
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        root = standin.add_message(CHANNEL, "ALERT: test_refund flaky on main", user=BOB)
        standin.add_message(CHANNEL, "it fails one run in five", user=CAROL,
                            thread_ts=root["ts"])  # fmt: skip
        picked = standin.add_message(CHANNEL, "seen it since the retry change", user=ALICE,
                                     thread_ts=root["ts"])  # fmt: skip
        standin.add_message(CHANNEL, "later reply, after the one picked", user=BOB,
                            thread_ts=root["ts"])  # fmt: skip

        # carol (an analyst) is offered only what she is granted: SQL on the replica.
        carols = await use_shortcut(rig, picked, CAROL)
        assert options(carols) and all(v.startswith("sql ") for v in options(carols))
        view = await use_shortcut(rig, picked, ALICE)
        assert view["callback_id"] == CALLBACK
        assert {"code demo", "sql payments-replica", "doc reports"} <= set(options(view))

        # Nothing to do: the modal says so, and no job is made.
        answer = await submit(rig, view, chosen("code demo", "   "), ALICE)
        assert json.loads(answer)["errors"]["instruction"]
        answer = await submit(rig, view, chosen("code demo", "run `ls`"), ALICE)
        assert answer == ""
        await rig.ephemeral_with("Accepted as J-1")
        job = json.loads(acp(env, "show", "J-1", "--json").stdout)
        assert job["prompt"] == "code demo: run `ls`" and job["spec"]["requester"] == "alice"
        context = acp(env, "artifact", "J-1", "context/slack-thread.txt", "-o", "-").stdout
        lines = context.splitlines()
        # The thread up to and including the message picked, authors as people.
        assert len(lines) == 3 and "ALERT" in lines[0] and "bob (U0BOB00001)" in lines[0]
        assert "retry change" in lines[-1] and "later reply" not in context
        assert (
            json.loads(acp(env, "show", "J-1", "--json").stdout)["reply_to"]["thread_ts"]
            == (root["ts"])
        )
        await until(lambda: [m for m in standin.thread(CHANNEL, root["ts"])
                             if "J-1" in json.dumps(m)])  # fmt: skip
        assert acp(env, "audit", "verify").returncode == 0

        # The same modal submitted twice (Slack retries) is one job.
        await submit(rig, view, chosen("code demo", "run `ls`"), ALICE)
        await asyncio.sleep(1)
        assert acp(env, "show", "J-2", "--json").returncode != 0

        # The engine decides, not the modal: carol choosing code (a forged choice) is denied.
        await submit(rig, carols, chosen("code demo", "run `ls`"), CAROL)
        await rig.ephemeral_with("J-2 was denied")
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


async def test_someone_the_policy_does_not_know_is_told_in_the_modal(tmp_path: Path):
    standin = await SlackStandIn().start()
    rig = SlackRig(http_env(tmp_path, standin), standin)
    await asyncio.to_thread(rig.start)
    try:
        message = standin.add_message(CHANNEL, "something", user=BOB)
        view = await use_shortcut(rig, message, "U0NOBODY")
        assert "not a person in the policy" in json.dumps(view["blocks"])
        assert view["callback_id"] == "" and view["submit"] is None
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()


async def test_a_file_on_the_message_sent_is_the_doc_jobs_input(tmp_path: Path):
    from tests.doors.slack.test_files import CSV_MIME, INCIDENTS, sha256, share

    standin = await SlackStandIn().start()
    env = http_env(tmp_path, standin)
    rig = SlackRig(env, standin)
    await asyncio.to_thread(rig.start)
    try:
        message = standin.add_message(CHANNEL, "this week's incidents", user=BOB)
        message["files"] = [share(standin, "incidents.csv", INCIDENTS, user=BOB,
                                  mimetype=CSV_MIME)]  # fmt: skip
        view = await use_shortcut(rig, message, ALICE)
        step = "`template templates/weekly.md.j2 out/weekly.md inputs/incidents.csv`"
        assert await submit(rig, view, chosen("doc reports", f"weekly summary {step}"), ALICE) == ""
        await rig.ephemeral_with("Accepted as J-1")
        job = json.loads(acp(env, "show", "J-1", "--json").stdout)
        (ref,) = [a for a in job["artifacts"] if a["name"] == "input/incidents.csv"]
        assert ref["sha256"] == sha256(INCIDENTS)
        assert standin.calls_to("files.download")
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()
