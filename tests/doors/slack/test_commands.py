"""Slash commands: submit → card → approval → merge; help, status, audit and malformed
requests; the same decision from Slack and the terminal; 50 concurrent acks; Slack's
retries never make a second job.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time

from tests.doors.slack.rig import ALICE, BOB, CHANNEL, FIX, FORM, SECRET, awaiting_approval, button
from tests.standins.slack_signing import event_callback, post_signed, slash_command
from tests.support.acp_process import acp


async def test_slash_command_to_card_to_approval_to_merge(rig):
    request = await awaiting_approval(rig)
    ts, card = rig.card()
    assert "code demo" in json.dumps(card) and "fs.read, fs.write, shell, git.diff" in json.dumps(
        card
    )
    assert "direct" in json.dumps(card), "the model route is on the card"
    assert "-something real to change. Try fixing teh typo" in json.dumps(request)

    assert await rig.click("acp_approve", button(request, "acp_approve"), BOB, ts) == 200
    record = await rig.wait_state({"succeeded"})
    assert record["approvals"][0]["decided_by"] == "bob"
    await rig.thread_with("Approved by <@U0BOB00001>")
    await rig.thread_with("published as")
    deadline = time.monotonic() + 10
    while "succeeded" not in json.dumps(rig.standin.messages[(CHANNEL, ts)]):
        assert time.monotonic() < deadline, "the card was not updated in place"
        await asyncio.sleep(0.1)
    updated = json.dumps(rig.standin.messages[(CHANNEL, ts)])
    assert "approved by <@U0BOB00001> (bob)" in updated


async def test_slack_retries_never_create_a_second_job(rig):
    body = slash_command(
        FIX, user_id=ALICE, channel_id=CHANNEL, response_url=rig.standin.response_url()
    )
    first, _, _ = await post_signed(rig.url, body, SECRET, content_type=FORM)
    again, _, _ = await post_signed(rig.url, body, SECRET, content_type=FORM, retry_num=1)
    assert (first, again) == (200, 200)
    await rig.wait_state({"awaiting_approval"})
    jobs = json.loads(acp(rig.env, "jobs", "--json").stdout)
    assert [j["id"] for j in jobs] == [1]
    event = event_callback({"type": "app_home_opened", "user": BOB, "tab": "home"}, event_id="Ev01")
    await post_signed(rig.url, event, SECRET, content_type="application/json")
    await post_signed(rig.url, event, SECRET, content_type="application/json", retry_num=1)
    await asyncio.sleep(1.0)
    assert len(rig.standin.calls_to("views.publish")) == 1


async def test_help_status_audit_and_malformed_requests(rig):
    status, text, _ = await rig.command("help")
    assert status == 200 and "/agent status J-12" in text
    await rig.command("cod demo: run `true`")
    bad = await rig.response_with("unknown job type")
    assert "did you mean" in json.dumps(bad)
    await rig.command("code demo:", user=ALICE)
    await rig.response_with("says nothing to do")
    await rig.command(FIX, user="U0NOBODY01")
    await rig.response_with("not a person in the policy")
    await rig.command(FIX)
    await rig.wait_state({"awaiting_approval"})
    await rig.command("status J-1")
    await rig.response_with("awaiting approval")
    await rig.command("audit J-1")
    await rig.response_with("approval.requested")
    await rig.command("status J-99")
    await rig.response_with("no job J-99")


async def test_same_request_same_decision_from_slack_socket_and_token(rig):
    await rig.command(FIX)
    await rig.wait_state({"awaiting_approval"})
    terminal = acp(rig.env, "submit", "--as", "alice", "--json", "--no-wait", FIX)
    created = acp(rig.env, "token", "create", "--as", "alice", "--scopes", "submit", "--json")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    url = re.search(r"(http://127\.0\.0\.1:\d+)/api/v1", rig.service.output()).group(1)
    http_env = {**rig.env, "ACP_URL": url, "ACP_TOKEN": token["secret"]}
    over_http = acp(http_env, "submit", "--json", "--no-wait", FIX)
    assert over_http.returncode == 0, over_http.stderr
    from_slack, from_cli = rig.job("J-1"), json.loads(terminal.stdout)
    from_http = json.loads(over_http.stdout)
    assert from_slack["spec"]["origin"] == "slack" and from_cli["spec"]["origin"] == "cli"
    for record in (from_slack, from_cli, from_http):
        assert record["spec"]["requester"] == "alice"
        for key in ("effect", "rule_ids", "reasons", "tools_granted", "approvals", "model"):
            assert record["decision"][key] == from_slack["decision"][key], key
        assert record["policy_hash"] == from_slack["policy_hash"]
    received = {
        e["job_id"]: e["actor"]
        for e in map(json.loads, acp(rig.env, "audit", "export").stdout.splitlines())
        if e["kind"] == "job.received"
    }
    assert received[1] == f"alice via slack signature {ALICE}"
    assert received[2].startswith("alice via cli socket uid ") and "impersonation" in received[2]
    assert received[3] == f"alice via token {token['token']['id']}"


async def test_fifty_concurrent_commands_all_ack_within_three_seconds(rig):
    results = await asyncio.gather(
        *(rig.command(f"code demo: run `echo {n} > n{n}.txt`") for n in range(50))
    )
    statuses = [status for status, _, _ in results]
    times = sorted(elapsed for _, _, elapsed in results)
    p99 = times[int(0.99 * (len(times) - 1))]
    print(
        f"\n50 concurrent slash commands: p50 {statistics.median(times) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
    )
    assert statuses == [200] * 50
    assert times[-1] < 3.0
    await rig.wait_state({"awaiting_approval", "queued", "running"}, job="J-50", timeout=60)
    assert len(json.loads(acp(rig.env, "jobs", "--json", "--limit", "100").stdout)) == 50
