"""A job that ended without publishing has nothing pending, and no door says otherwise.

Real git, bubblewrap and the database (both backends); the doors' own renderers.
"""

from __future__ import annotations

import subprocess

import pytest

from bot import cli
from bot.slack import blocks
from runtime.errors import BadRequest
from runtime.jobs import JobState
from runtime.kinds.code.repo import ensure_named_repo
from runtime.worker import Worker

FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'


def git(repo, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


async def settle(engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


async def test_job_whose_publish_failed_shows_no_pending_merge(engine):
    job = await settle(engine, (await engine.submit(FIX, engine.actor("cli", "alice"))).id)
    assert job.state is JobState.awaiting_approval and job.pending_action.action == "merge"
    repo = await ensure_named_repo(engine.settings, engine.policy, "demo")
    readme = repo / "README.md"  # main moves under the job: its merge now conflicts
    readme.write_text(readme.read_text().replace("teh", "tEh"))
    git(repo, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "conflicting")

    await engine.approve(job.id, engine.actor("cli", "bob"))
    job = await settle(engine, job.id)

    assert job.state is JobState.failed, job.result
    assert job.pending_action is None
    shown = cli.render_job(engine, job)
    assert "approval for" not in shown and "approve with" not in shown, shown
    assert "approved by bob" in shown, "what did happen is still shown"
    card = str(blocks.job_card(job, {}))
    assert "acp_approve" not in card and "approved by bob" in card and ":red_circle:" in card
    [gone] = blocks.approval_request(job, None, {}, high_risk=False)
    assert "no open approval request" in str(gone)


@pytest.mark.parametrize("text", ["code demo: run `echo \udcff`", "code demo: fix \ud800 it"])
async def test_request_that_is_not_valid_text_is_refused_on_the_record(engine, text):
    with pytest.raises(BadRequest, match="is a lone surrogate") as caught:
        await engine.submit(text, engine.actor("cli", "alice"))
    assert caught.value.message.encode()
    [refused] = [e for e in await engine.events() if e.kind == "request.refused"]
    assert refused.data["request"]["chars"] == len(text)
    assert await engine.verify_audit()


async def test_answer_that_is_not_valid_text_is_refused_on_the_record(engine):
    alice = engine.actor("cli", "alice")
    job = await engine.submit("fix teh typo in the readme", alice)
    assert job.state.value == "needs_clarification", job.result
    with pytest.raises(BadRequest, match="is a lone surrogate"):
        await engine.answer(job.id, alice, "demo\udcff")
    [refused] = [e for e in await engine.events() if e.kind == "answer.refused"]
    assert refused.data["job"] == job.job_id and "lone surrogate" in refused.data["message"]
    assert (await engine.get(job.id)).state.value == "needs_clarification"
    assert await engine.verify_audit()
