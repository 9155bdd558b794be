"""Approvals from the browser: bob approves alice's code job from the console and the worker
merges it; alice is refused approving her own with the engine's four-eyes reason; a second
open page follows the state without a reload (server-sent events)."""

from __future__ import annotations

import json
import time

from playwright.async_api import expect

from tests.doors.console.rig import ConsoleRig, job_id_of, shot

REQUEST = 'code demo: run `sed -i "s/teh/the/" README.md`'


async def test_bob_approves_alices_job_and_alices_open_page_follows_it(console: ConsoleRig):
    job = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", REQUEST))
    await console.wait_state(job, {"awaiting_approval"})

    _, alice = await console.page_for("alice")
    await alice.goto(f"{console.url}/jobs/{job}")
    await expect(alice.locator("#panel")).to_have_attribute("data-state", "awaiting_approval")
    gate_hash = await alice.locator("code.action-hash").inner_text()
    await alice.evaluate("window.__same_page = true")  # gone if the page reloads

    # alice may not approve her own change: the page shows the engine's reason.
    await alice.click("button[name=approve]")
    refusal = alice.locator("#notice .refusal .message")
    await expect(refusal).to_contain_text("four-eyes")
    await expect(alice.locator("#panel")).to_have_attribute("data-state", "awaiting_approval")
    await alice.wait_for_timeout(600)  # the panel follows the job; the refusal stays
    await expect(refusal).to_contain_text("four-eyes")
    await shot(alice, "job-refused-four-eyes")

    # bob sees it waiting for him, with the change in a sentence.
    _, bob = await console.page_for("bob")
    row = bob.locator(f"tr.approval[data-job={job}]")
    await expect(row).to_be_visible()
    await expect(row.locator(".sentence")).not_to_be_empty()
    await shot(bob, "approvals")
    await row.locator("a").click()
    await expect(bob.locator("code.action-hash")).to_have_text(gate_hash)
    await shot(bob, "job-awaiting-approval")
    clicked = time.monotonic()
    await bob.click("button[name=approve]")

    # alice's page, never reloaded, follows: approved, then merged by the worker.
    panel = alice.locator("#panel")
    await expect(panel).not_to_have_attribute("data-state", "awaiting_approval", timeout=5000)
    seen = time.monotonic() - clicked
    await expect(panel).to_have_attribute("data-state", "succeeded", timeout=60_000)
    assert await alice.evaluate("window.__same_page === true"), "the page reloaded"
    print(f"\napproval click to the state change on alice's page: {seen * 1000:.0f} ms")
    await console.wait_state(job, {"succeeded"})

    shown = json.loads(console.acp("show", job, "--json"))
    gate = shown["approvals"][-1]
    assert gate["decision"] == "approved" and gate["decided_by"] == "bob"
    exported = console.acp("audit", "export", "--job", job)
    granted = [json.loads(line) for line in exported.splitlines() if '"approval.' in line]
    assert any("bob via console local demo sign-in" in e["actor"] for e in granted), granted
    await bob.reload()
    await expect(bob.locator("#panel")).to_have_attribute("data-state", "succeeded")
    await shot(bob, "job-succeeded")

    # the approval on the record, with how bob was authenticated.
    approvals = bob.locator("#ev-approvals")
    await expect(approvals).to_contain_text("approved")
    await expect(approvals).to_contain_text("bob via console local demo sign-in")

    # alice rolls her published change back from the page; the repo's main is as before.
    await alice.reload()
    await alice.click("button[name=rollback]")
    await expect(alice.locator("#panel")).to_have_attribute("data-state", "rolled_back",
                                                            timeout=60_000)  # fmt: skip
    await expect(alice.locator("button[name=rollback]")).to_have_count(0)
