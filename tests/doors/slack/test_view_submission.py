"""View submissions: the reject-reason modal, and a clarification answered with a button then
the free-text modal.
"""

from __future__ import annotations

import asyncio
import time

from tests.doors.slack.rig import ALICE, BOB, CHANNEL, awaiting_approval, button


async def test_reject_asks_for_a_reason_in_a_modal(rig):
    request = await awaiting_approval(rig)
    ts, _ = rig.card()
    await rig.click("acp_reject", button(request, "acp_reject"), BOB, ts)
    deadline = time.monotonic() + 10
    while not rig.standin.views_opened:
        assert time.monotonic() < deadline, "no modal was opened"
        await asyncio.sleep(0.1)
    view = rig.standin.views_opened[-1]
    assert view["callback_id"] == "acp_reject_reason"
    await rig.submit_view(
        "acp_reject_reason", view["private_metadata"], {"reason": {"value": "wrong file"}}, BOB
    )
    record = await rig.wait_state({"rejected"})
    assert record["approvals"][0]["reason"] == "wrong file"
    await rig.thread_with("Rejected by <@U0BOB00001> (bob): wrong file")


async def test_clarification_answered_with_a_button_then_a_modal(rig):
    status, _, _ = await rig.command("fix teh typo in the readme")
    assert status == 200
    question = await rig.thread_with("Which target")
    ts, _ = rig.card()
    await rig.click("acp_answer_0", button(question, "acp_answer_0"), ALICE, ts)
    follow_up = await rig.thread_with("Which command")
    metadata = f"{button(follow_up, 'acp_answer_text')}|{CHANNEL}"
    await rig.submit_view(
        "acp_answer_text", metadata, {"answer": {"value": 'sed -i "s/teh/the/" README.md'}}, ALICE
    )
    record = await rig.wait_state({"awaiting_approval"})
    assert record["spec"]["target"] == "demo"
    assert record["spec"]["commands"] == ['sed -i "s/teh/the/" README.md']
