"""Block actions: the Approve and Reject buttons on a job's thread (a refused approver, a
double click, a stale button, a stranger's Reject).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.doors.slack.rig import ALICE, BOB, CAROL, awaiting_approval, button
from tests.support.acp_process import acp


@pytest.mark.parametrize(
    ("user", "words"),
    [(CAROL, "carol is not an approver"), (ALICE, "four-eyes")],
    ids=["not-an-approver", "self-approval"],
)
async def test_refused_approver_gets_an_ephemeral_and_nothing_changes(rig, user, words):
    request = await awaiting_approval(rig)
    ts, _ = rig.card()
    await rig.click("acp_approve", button(request, "acp_approve"), user, ts)
    refusal = await rig.ephemeral_with(words)
    assert refusal["user"] == user
    assert (await asyncio.to_thread(rig.job))["state"] == "awaiting_approval"


async def test_double_click_approves_once(rig):
    request = await awaiting_approval(rig)
    ts, _ = rig.card()
    value = button(request, "acp_approve")
    await rig.click("acp_approve", value, BOB, ts)
    await rig.wait_state({"succeeded"})
    await rig.click("acp_approve", value, BOB, ts)
    await rig.ephemeral_with("nothing changed")
    events = [json.loads(line) for line in acp(rig.env, "audit", "export").stdout.splitlines()]
    assert [e["kind"] for e in events].count("approval.granted") == 1


async def test_stale_approval_button_is_refused(rig):
    request = await awaiting_approval(rig)
    ts, _ = rig.card()
    job_id, _, _ = button(request, "acp_approve").partition("|")
    await rig.click("acp_approve", f"{job_id}|{'ab' * 32}", BOB, ts)
    await rig.ephemeral_with("the approval does not apply")
    assert (await asyncio.to_thread(rig.job))["state"] == "awaiting_approval"


async def test_reject_button_refuses_a_stranger_before_any_modal(rig):
    request = await awaiting_approval(rig)
    ts, _ = rig.card()
    await rig.click("acp_reject", button(request, "acp_reject"), CAROL, ts)
    await rig.ephemeral_with("not an approver")
    assert rig.standin.views_opened == []
