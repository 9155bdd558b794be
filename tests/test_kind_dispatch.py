"""Every path that picks what to do by job kind picks the same thing.

Replay runs a job's model loop with the tools and the prompt of the kind the job is (a doc job
has the document tools).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from acp_process import acp
from openpyxl import load_workbook
from test_doc_jobs import git, make_repo, text_of, write_policy

from runtime.engine import Engine
from runtime.jobs import JobRecord, JobState
from runtime.settings import Settings
from runtime.worker import Worker

# --- replay -------------------------------------------------------------------------------


async def test_replay_of_a_doc_job_runs_the_document_tools_and_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from model_standin import ModelStandIn, call, say

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


# --- helpers ------------------------------------------------------------------------------


async def settle(engine: Engine, job_id: int) -> JobRecord:
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)
