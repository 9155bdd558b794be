"""Every path that picks what to do by job kind picks the same thing.

Replay runs a job's model loop with the tools and the prompt of the kind the job is (a doc job
has the document tools); recovery after a crash resumes the publish of the kind the job is
(a routine is created, changed or deleted, a document merged), not always a code merge.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

from runtime import audit, routines
from runtime.engine import Engine
from runtime.jobs import JobRecord, JobState
from runtime.settings import Settings
from runtime.worker import Worker
from tests.kinds.doc.test_doc_jobs import git, make_repo, text_of, write_policy
from tests.support.acp_process import acp

# --- replay -------------------------------------------------------------------------------


async def test_replay_of_a_doc_job_runs_the_document_tools_and_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_thread
) -> None:
    from tests.standins.model_standin import ModelStandIn, call, say

    repo = make_repo(tmp_path / "reports")
    async with ModelStandIn(api_key="sk-doc-replay") as standin:
        route = {
            "id": "models.doc.standin",
            "job_types": ["doc"],
            "model": "openai/gpt-4o-mini",
            "api_base": standin.base_url,
            "api_key_env": "ACP_DOC_TEST_KEY",
        }
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_", "OPENAI_"))
        }
        env.update(
            ACP_HOME=str(tmp_path / "home"),
            ACP_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/acp.db",
            ACP_POLICY_DIR=str(write_policy(tmp_path / "policy", repo, model=route)),
            ACP_DOC_TEST_KEY="sk-doc-replay",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            PYTHONUNBUFFERED="1",
        )
        monkeypatch.setenv("ACP_DOC_TEST_KEY", "sk-doc-replay")
        engine = await Engine.open(Settings.from_env(env))
        try:
            standin.script(
                "gpt-4o-mini",
                call("set_cells", path="budget.xlsx", sheet="Budget", cells='{"C3": 13}'),
                say("Raised ledger's q2 to 13."),
            )
            job = await engine.submit(
                "doc reports: raise ledger's q2 budget to 13", engine.actor("cli", "alice")
            )
            job = await settle(engine, job.id)
            assert job.state is JobState.awaiting_approval, job.result
            assert "12 -> 13" in text_of(engine, job, "document-diff.txt")
            sent = len(standin.requests)

            api_thread(env)
            done = await asyncio.to_thread(acp, env, "replay", job.job_id)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "identical" in done.stdout, done.stdout
            assert len(standin.requests) == sent, "a replay makes no live model call"

            done = await asyncio.to_thread(acp, env, "replay", job.job_id, "--json")
            report = json.loads(done.stdout)
            assert report["identical"] and report["replayed_diff_sha256"], report
            # (the patches' `index` lines differ: a saved workbook's bytes are never the same)
            assert report["replayed_document_diff_sha256"], "the documents were compared"
            assert (
                report["replayed_document_diff_sha256"] == report["recorded_document_diff_sha256"]
            )

            # To git the workbook is binary ("Binary files differ" either way): a change on
            # main under the same recorded cell write shows in the document diff.
            book = load_workbook(repo / "budget.xlsx")
            book["Budget"]["C3"] = 11
            book.save(repo / "budget.xlsx")
            git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "q2 = 11")
            done = await asyncio.to_thread(acp, env, "replay", job.job_id, "--on-base", "main")
            assert done.returncode == 1, done.stdout + done.stderr
            assert "differs" in done.stdout and "11 -> 13" in done.stdout, done.stdout
            assert len(standin.requests) == sent
        finally:
            await engine.close()


# --- recovery -----------------------------------------------------------------------------


async def settle(engine: Engine, job_id: int) -> JobRecord:
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


async def crash_while_publishing(engine: Engine, job_id: int) -> Worker:
    """A worker claims the approved job for its publish and dies before publishing (the
    state a SIGKILL in the publish phase leaves); a new worker starts."""
    first = Worker(engine)
    await first.register()
    claimed = await first.claim()
    assert claimed is not None and claimed.id == job_id
    assert claimed.state is JobState.running and claimed.phase == "publish"
    await first.unregister()  # gone, as after a crash
    second = Worker(engine)
    await second.register()
    return second


async def assert_resumed_once(engine: Engine, worker: Worker, job_id: int, done_kind: str):
    assert await worker.recover() == [job_id]
    job = await engine.get(job_id)
    assert job.state is JobState.succeeded, job.result
    kinds = [e.kind for e in await engine.events(job_id)]
    assert "job.resumed" in kinds and kinds.count(done_kind) == 1, kinds
    assert await worker.recover() == []
    await audit.verify(engine.db, engine.artifacts)  # raises if the chain is broken
    return job


async def test_routine_creation_interrupted_while_publishing_is_created_on_recovery(engine):
    alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
    job = await engine.submit('schedule "0 9 * * MON" code demo: run `echo ok`', alice)
    job = await settle(engine, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    await engine.approve(job.id, bob)
    worker = await crash_while_publishing(engine, job.id)

    job = await assert_resumed_once(engine, worker, job.id, "routine.created")
    [routine] = await routines.routines(engine)
    assert routine.created_by_job == job.id and routine.state == "active"
    assert routine.schedule.expression == "0 9 * * MON"
    assert job.result["routine"] == routine.routine_id


@pytest.mark.parametrize("action", ["change", "delete"])
async def test_routine_change_interrupted_while_publishing_is_applied_on_recovery(
    engine, action: str
):
    alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
    proposal = await settle(
        engine, (await engine.submit('schedule "0 9 * * MON" code demo: run `echo ok`', alice)).id
    )
    await engine.approve(proposal.id, bob)
    assert (await settle(engine, proposal.id)).state is JobState.succeeded
    [routine] = await routines.routines(engine)

    schedule = "0 8 * * TUE" if action == "change" else None
    job = await routines.propose_change(engine, routine.id, alice, action, schedule)
    job = await settle(engine, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    await engine.approve(job.id, bob)
    worker = await crash_while_publishing(engine, job.id)

    done = "routine.changed" if action == "change" else "routine.deleted"
    await assert_resumed_once(engine, worker, job.id, done)
    after = await routines.get(engine, routine.id)
    if action == "change":
        assert after.state == "active" and after.schedule.expression == "0 8 * * TUE"
    else:
        assert after.state == "deleted"


async def test_doc_merge_interrupted_while_publishing_is_merged_on_recovery(tmp_path: Path):
    from tests.kinds.doc.test_doc_jobs import WEEKLY, main_has

    repo = make_repo(tmp_path / "reports")
    settings = Settings.from_env(
        {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
            "ACP_POLICY_DIR": str(write_policy(tmp_path / "policy", repo)),
        }
    )
    engine = await Engine.open(settings)
    try:
        job = await engine.submit(
            f"doc reports: weekly summary {WEEKLY}", engine.actor("cli", "alice")
        )
        job = await settle(engine, job.id)
        assert job.state is JobState.awaiting_approval, job.result
        await engine.approve(job.id, engine.actor("cli", "bob"))
        worker = await crash_while_publishing(engine, job.id)
        await assert_resumed_once(engine, worker, job.id, "publish.merged")
        assert main_has(repo, "out/weekly.xlsx")
    finally:
        await engine.close()


async def test_browser_job_approved_to_run_at_all_is_run_not_resumed(tmp_path: Path):
    """A gate on running a job at all (action `run`) runs it when approved, for every kind:
    a browser job is not sent to take a paused action it never had."""
    from tests.kinds.browser.test_browser_jobs import write_policy as browser_policy

    policy = browser_policy(tmp_path / "policy", "http://127.0.0.1:9", gate=False)
    text = (policy / "default.yml").read_text()
    rules = yaml.safe_load(text)
    rules["approvals"].append(
        {"id": "admin.run", "job_types": ["browser"], "targets": ["admin"], "actions": ["run"],
         "approvers": {"roles": ["demo-approver"]}, "four_eyes": True, "expires_after": "1h"}
    )  # fmt: skip
    (policy / "default.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    settings = Settings.from_env(
        {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
            "ACP_POLICY_DIR": str(policy),
        }
    )
    engine = await Engine.open(settings)
    try:
        job = await engine.submit("browse admin: `goto /`", engine.actor("cli", "alice"))
        assert job.state is JobState.awaiting_approval, job.result
        assert job.pending_action.action == "run"
        await engine.approve(job.id, engine.actor("cli", "bob"))
        claimed = await Worker(engine).claim()
        assert claimed is not None and claimed.id == job.id
        assert claimed.phase == "execute", claimed.phase
        kinds = [e.kind for e in await engine.events(job.id)]
        assert kinds[-1] == "job.started", kinds
    finally:
        await engine.close()
