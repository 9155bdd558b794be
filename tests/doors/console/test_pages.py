"""The console's lists and tools: jobs filtered and searched, a new job appearing on an open
list without reload, the policy's "what would happen" form, the audit log's search and its
verification, routines with pause and resume for their owner only."""

from __future__ import annotations

import json

from playwright.async_api import expect

from tests.doors.console.rig import ConsoleRig, job_id_of, shot

CODE = 'code demo: run `sed -i "s/teh/the/" README.md`'


def rows(page) -> object:
    return page.locator("#job-rows tr.job")


async def test_jobs_filter_search_and_follow_new_jobs_live(console: ConsoleRig):
    first = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", CODE))
    denied = console_submit_denied(console)
    await console.wait_state(first, {"awaiting_approval"})

    _, bob = await console.page_for("bob")
    await bob.goto(f"{console.url}/jobs")
    await expect(rows(bob)).to_have_count(2)
    await bob.select_option("select[name=state]", "denied")
    await bob.click("form.filters button[type=submit]")
    await expect(rows(bob)).to_have_count(1)
    await expect(rows(bob).first).to_have_attribute("data-job", denied)
    await bob.goto(f"{console.url}/jobs?requester=alice")
    await expect(rows(bob)).to_have_count(1)
    await bob.goto(f"{console.url}/jobs?q={first}")
    await expect(rows(bob)).to_have_count(1)
    await expect(rows(bob).first).to_have_attribute("data-job", first)
    await bob.goto(f"{console.url}/jobs?q=s%2Fteh%2Fthe")
    await expect(rows(bob)).to_have_count(1)
    await bob.goto(f"{console.url}/jobs?kind=sql")
    await expect(bob.locator("#job-rows")).to_contain_text("No job matches")
    await bob.goto(f"{console.url}/jobs?since=nonsense")
    await expect(bob.locator(".refusal .message")).to_contain_text("since must be a date")

    # An open, unfiltered list shows a job submitted elsewhere, without a reload.
    await bob.goto(f"{console.url}/jobs")
    await expect(rows(bob)).to_have_count(2)
    await bob.evaluate("window.__same_page = true")
    third = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", CODE))
    await expect(bob.locator(f"#job-rows tr[data-job={third}]")).to_be_visible(timeout=10_000)
    assert await bob.evaluate("window.__same_page === true")
    await shot(bob, "jobs")


def console_submit_denied(console: ConsoleRig) -> str:
    """carol asks for code work, which the policy does not grant her: a denied job."""
    from tests.support.acp_process import acp

    done = acp(console.env, "submit", "--as", "carol", "--no-wait", "code demo: run `make lint`")
    return job_id_of(done.stdout + done.stderr)


async def test_policy_what_would_happen_is_the_engines_decision(console: ConsoleRig):
    _, carol = await console.page_for("carol")
    await carol.goto(f"{console.url}/policy")
    shown_hash = await carol.locator("code.policy-hash").inner_text()
    assert shown_hash in console.acp("policy", "show")
    await carol.fill("input[name=request]", CODE)
    await carol.click("form.check button[type=submit]")
    decision = carol.locator("#check .decision")
    await expect(decision.locator(".effect")).to_have_text("deny")
    await expect(decision).to_contain_text("carol")
    expected = console.acp("policy", "check", "--as", "carol", CODE)
    assert "deny" in expected.lower()
    await shot(carol, "policy-check")
    _, alice = await console.page_for("alice")
    await alice.goto(f"{console.url}/policy")
    await alice.fill("input[name=request]", CODE)
    await alice.click("form.check button[type=submit]")
    await expect(alice.locator("#check .effect")).to_have_text("allow")
    await expect(alice.locator("#check")).to_contain_text("merge")


async def test_audit_search_and_verify(console: ConsoleRig):
    job = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", CODE))
    await console.wait_state(job, {"awaiting_approval"})
    _, bob = await console.page_for("bob")
    await bob.goto(f"{console.url}/audit?job={job}")
    events = bob.locator("table.events tbody tr")
    assert await events.count() >= 3
    await expect(events.first).to_contain_text(job)
    await bob.goto(f"{console.url}/audit?person=alice&kind=job")
    texts = await bob.locator("table.events tbody tr td:nth-child(5)").all_inner_texts()
    assert texts and all(t.startswith("alice") for t in texts), texts
    await bob.click("text=Verify the chain")
    await expect(bob.locator("#verify-result .ok")).to_contain_text("Intact")
    await shot(bob, "audit")


async def test_routines_pause_and_resume_for_their_owner(console: ConsoleRig):
    made = console.acp("routines", "add", "--as", "alice", "0 9 * * MON",
                       "sql payments-replica: top 10 slowest queries")  # fmt: skip
    job = job_id_of(made)
    console.acp("approve", job, "--as", "bob")
    await console.wait_state(job, {"succeeded"})
    _, carol = await console.page_for("carol")
    await carol.goto(f"{console.url}/routines")
    row = carol.locator("tr[data-routine=R-1]")
    await expect(row).to_contain_text("active")
    await row.locator("button", has_text="Pause").click()
    await expect(carol.locator(".refusal .message")).to_be_visible()  # not hers to pause
    assert "active" in console.acp("routines", "list")

    _, alice = await console.page_for("alice")
    await alice.goto(f"{console.url}/routines")
    row = alice.locator("tr[data-routine=R-1]")
    await row.locator("button", has_text="Pause").click()
    await expect(alice.locator("tr[data-routine=R-1]")).to_contain_text("paused")
    await shot(alice, "routines")
    await alice.locator("tr[data-routine=R-1] button", has_text="Resume").click()
    await expect(alice.locator("tr[data-routine=R-1]")).to_contain_text("active")


async def test_answer_a_question_and_cancel_from_the_job_page(console: ConsoleRig):
    job = job_id_of(console.acp("submit", "--as", "alice", "--no-wait",
                                "fix teh typo in the readme"))  # fmt: skip
    await console.wait_state(job, {"needs_clarification"})
    _, alice = await console.page_for("alice")
    await alice.goto(f"{console.url}/jobs/{job}")
    question = alice.locator("#panel .clarify")
    await expect(question.locator(".question")).not_to_be_empty()
    await expect(question.locator("button[value=demo]")).to_be_visible()
    await shot(alice, "job-question")
    await question.locator("button[value=demo]").click()
    # Without a model the job needs its steps too: the next question, answered in words.
    await expect(question.locator(".question")).to_contain_text("Which command")
    await question.locator("input[name=answer]").fill('`sed -i "s/teh/the/" README.md`')
    await question.locator("button", has_text="Send").click()
    await expect(alice.locator("#panel")).to_have_attribute(
        "data-state", "awaiting_approval", timeout=30_000
    )
    shown = json.loads(console.acp("show", job, "--json"))
    assert shown["spec"]["target"] == "demo"

    other = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", CODE))
    await console.wait_state(other, {"awaiting_approval"})
    _, carol = await console.page_for("carol")
    await carol.goto(f"{console.url}/jobs/{other}")
    await carol.click("button[name=cancel]")  # not hers: the engine says so
    await expect(carol.locator("#notice .refusal .message")).to_be_visible()
    await alice.goto(f"{console.url}/jobs/{other}")
    await alice.click("button[name=cancel]")
    await expect(alice.locator("#panel")).to_have_attribute("data-state", "cancelled")


async def test_a_reason_being_typed_survives_the_live_refresh(console: ConsoleRig):
    job = job_id_of(console.acp("submit", "--as", "alice", "--no-wait", CODE))
    await console.wait_state(job, {"awaiting_approval"})
    _, bob = await console.page_for("bob")
    await bob.goto(f"{console.url}/jobs/{job}")
    reason = bob.locator("#panel input[name=reason]")
    await reason.fill("the typo fix touches the wrong file")
    refreshed = []
    bob.on("response", lambda r: refreshed.append(r.status) if "/panel" in r.url else None)
    # Something happens on the job that does not change it: alice tries to approve her own.
    refused = console.acp_result("approve", job, "--as", "alice")
    assert refused.returncode != 0 and "four-eyes" in refused.stderr
    await bob.wait_for_timeout(1500)
    assert refreshed and set(refreshed) == {204}, refreshed  # asked, and nothing to swap
    await expect(reason).to_have_value("the typo fix touches the wrong file")
    await bob.click("button[name=reject]")
    await expect(bob.locator("#panel")).to_have_attribute("data-state", "rejected")
    shown = json.loads(console.acp("show", job, "--json"))
    assert shown["approvals"][-1]["reason"] == "the typo fix touches the wrong file"
