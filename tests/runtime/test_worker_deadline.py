"""Every worker pass over a job has a deadline: a job that runs past it fails with the reason,
its work is cancelled, and the jobs queued behind it run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml

from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.settings import Settings
from runtime.worker import Worker
from tests.conftest import BUNDLED_POLICY


async def open_engine(tmp_path: Path, db_url: str, **limits: float) -> Engine:
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["limits"].update(limits)
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return await Engine.open(
        Settings.from_env(
            {"ACP_HOME": str(tmp_path / "home"), "ACP_DATABASE_URL": db_url,
             "ACP_POLICY_DIR": str(folder)}
        )
    )  # fmt: skip


async def test_a_job_past_its_time_limit_fails_and_the_next_job_runs(tmp_path, db_url) -> None:
    engine = await open_engine(tmp_path, db_url, job_time_limit_s=2, command_timeout_s=300)
    try:
        alice = engine.actor("cli", "alice")
        stuck = await engine.submit("code demo: run `sleep 120; echo late > late.txt`", alice)
        after = await engine.submit("code demo: run `echo next > next.txt`", alice)
        worker = Worker(engine)
        stop = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(worker.run(stop))
        try:
            while (await engine.get(after.id)).state in (JobState.queued, JobState.running):
                assert time.monotonic() - started < 60, "the worker is wedged"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
        failed = await engine.get(stuck.id)
        assert failed.state is JobState.failed
        assert "time limit of 2 s" in failed.result["reason"]
        assert "nothing was published" in failed.result["reason"]
        assert time.monotonic() - started < 30
        assert not (engine.settings.worktrees_dir / stuck.job_id).exists(), "checkout removed"
        done = await engine.get(after.id)
        assert done.state is JobState.awaiting_approval, done.result
        assert done.pending_action.stat["files"] == ["next.txt"]
    finally:
        await engine.close()
