"""A service killed with SIGKILL mid-job: nothing lost, nothing run twice, the chain intact."""

from __future__ import annotations

import json
import time
from pathlib import Path

from runtime.jobs import JobState
from runtime.worker import Worker
from tests.support.acp_process import Service, acp


def state(env, job: str) -> dict:
    return json.loads(acp(env, "show", job, "--json").stdout)


def wait_for(env, job: str, states: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = state(env, job)
        if record["state"] in states:
            return record
        time.sleep(0.2)
    raise AssertionError(f"{job} stayed {record['state']}, wanted {states}")


def stored(env: dict[str, str], job_id: int) -> str:
    import asyncio

    from runtime.engine import Engine
    from runtime.settings import Settings

    async def read() -> str:
        engine = await Engine.open(Settings.from_env(env))
        try:
            return (await engine.get(job_id)).state.value
        finally:
            await engine.close()

    return asyncio.run(read())


def test_kill_9_mid_run_then_restart_loses_nothing_and_runs_nothing_twice(acp_env):
    service = Service(acp_env).start()
    try:
        slow = acp(
            acp_env,
            "submit",
            "--as",
            "alice",
            "--no-wait",
            "code demo: run `echo started >> ran.txt; sleep 30; echo done > slow.txt`",
        )
        assert slow.returncode == 0, slow.stderr
        quick = acp(
            acp_env,
            "submit",
            "--as",
            "alice",
            "--no-wait",
            "code demo: run `echo quick > quick.txt`",
        )
        assert quick.returncode == 0, quick.stderr
        wait_for(acp_env, "J-1", {"running"})
        time.sleep(0.5)
        service.kill9()
        # With the service dead, what the database holds (read the way an operator would).
        assert stored(acp_env, 1) == "running"
        assert stored(acp_env, 2) == "queued"
    finally:
        service.stop()

    service = Service(acp_env).start()
    try:
        first = wait_for(acp_env, "J-1", {"failed"})
        second = wait_for(acp_env, "J-2", {"awaiting_approval"})
    finally:
        service.stop()
    assert not (Path(acp_env["ACP_HOME"]) / "worktrees" / "J-1").exists(), "checkout cleaned up"
    assert "interrupted" in first["result"]["reason"]
    assert "nothing was published" in first["result"]["reason"]
    assert second["pending_action"]["stat"]["files"] == ["quick.txt"]

    events = [json.loads(line) for line in acp(acp_env, "audit", "export").stdout.splitlines()]
    started = [e["job_id"] for e in events if e["kind"] == "job.started"]
    assert started.count(1) == 1 and started.count(2) == 1, "each job ran exactly once"
    assert [e["kind"] for e in events if e["job_id"] == 1][-1] == "job.interrupted"
    verified = acp(acp_env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr


async def test_publish_interrupted_by_a_crash_is_resumed_once(engine):
    job = await engine.submit("code demo: run `echo x > x.txt`", engine.actor("cli", "alice"))
    first = Worker(engine)
    await first.run_once()
    await engine.approve(job.id, engine.actor("cli", "bob"))
    await first.register()
    claimed = await first.claim()
    assert claimed.state is JobState.running and claimed.phase == "publish"
    await first.unregister()  # the worker is gone, as after a crash, before it published

    second = Worker(engine)
    await second.register()
    assert await second.recover() == [job.id]
    done = await engine.get(job.id)
    assert done.state is JobState.succeeded, done.result
    kinds = [e.kind for e in await engine.events(job.id)]
    assert kinds.count("publish.merged") == 1 and "job.resumed" in kinds
    assert await second.recover() == []


async def test_two_workers_never_claim_the_same_job(engine):
    import asyncio

    alice = engine.actor("cli", "alice")
    for n in range(8):
        await engine.submit(f"code demo: run `echo {n} > n{n}.txt`", alice)
    first, second = Worker(engine), Worker(engine)

    async def drain(worker: Worker) -> list[int]:
        claimed = []
        while (job := await worker.claim()) is not None:
            claimed.append(job.id)
            await asyncio.sleep(0)
        return claimed

    one, two = await asyncio.gather(drain(first), drain(second))
    assert sorted(one + two) == list(range(1, 9))
    assert not set(one) & set(two), "a job was claimed twice"
    kinds = [e.kind for e in await engine.events()]
    assert kinds.count("job.started") == 8


async def test_worker_start_waits_for_its_own_row_not_a_count(acp_env, engine, monkeypatch):
    """A restart within a crashed worker's heartbeat window (about 14 s after the crash): the
    dead row leaves the live window while the new worker starts, so a count of live workers
    never rises; the supervisor must see its own worker register and return at once."""
    import asyncio
    import socket
    import sys
    from datetime import timedelta

    from sqlalchemy import insert

    from runtime.engine import LIVE_WORKER_SECONDS
    from runtime.store.job_store import utcnow
    from runtime.store.models import WorkerRow
    from runtime.supervisor import WorkerProcess

    for name, value in acp_env.items():
        monkeypatch.setenv(name, value)
    last_beat = utcnow() - timedelta(seconds=LIVE_WORKER_SECONDS - 0.5)
    async with engine.db.begin() as conn:
        await conn.execute(
            insert(WorkerRow.__table__).values(
                id="crashed", host=socket.gethostname(), pid=2**22 + 1,
                started_at=last_beat, heartbeat_at=last_beat,
            )
        )  # fmt: skip
    worker = WorkerProcess([sys.executable, "-m", "bot.cli", "worker"])
    started = time.monotonic()
    try:
        await asyncio.wait_for(worker.start(engine), 20)
        assert time.monotonic() - started < 20
        assert await engine.worker_registered(worker.worker_id)
    finally:
        await worker.stop()
