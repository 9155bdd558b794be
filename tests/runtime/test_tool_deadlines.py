"""A tool call or a model call that would block: refused before it can, or cut by the deadline.

End to end with the model stand-in through litellm, a real worker, git, bubblewrap and SQLite.
The agent's time limit is one deadline over the whole loop; when it fires the job fails saying
where, and the worker goes on to the next job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.jobs import JobState
from runtime.models import litellm_module
from runtime.worker import Worker
from tests.kinds.code import test_agent
from tests.kinds.code.test_agent import MODEL, REQUEST, Rig, kinds, tool_result
from tests.standins.model_standin import call, say

rig = test_agent.rig  # the fixture: stand-in, repository, policy and engines of one test


@contextlib.contextmanager
def fifo_release(root: Path, after_s: float) -> Iterator[None]:
    """After after_s, keep opening every FIFO under root read-write: a worker wrongly blocked
    opening one is let go, so a broken build fails this test instead of hanging it."""
    stop = threading.Event()

    def release() -> None:
        if stop.wait(after_s):
            return
        while not stop.wait(0.2):
            for path in root.rglob("*") if root.exists() else ():
                with contextlib.suppress(OSError):
                    if stat.S_ISFIFO(path.lstat().st_mode):
                        os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


async def submit_both_and_work(engine, first: str, second: str):
    """Two jobs queued one behind the other, then one worker until the queue is empty."""
    person = engine.actor("cli", "alice")
    one = await engine.submit(first, person)
    two = await engine.submit(second, person)
    assert one.state is two.state is JobState.queued
    worker = Worker(engine)
    await asyncio.to_thread(litellm_module)  # once per process, seconds: not the jobs' time
    started = time.monotonic()
    while await worker.run_once():
        pass
    return await engine.get(one.id), await engine.get(two.id), time.monotonic() - started


async def test_fifo_socket_and_symlink_loop_made_by_the_model_are_refused_at_once(rig: Rig):
    engine = await rig.engine(limits={"agent_time_limit_s": 60})
    make = (
        "mkfifo pipe && ln -s loop loop && "
        "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")' && echo made"
    )
    rig.standin.script(
        MODEL,
        call("run", command=make),
        call("read_file", path="pipe"),
        call("write_file", path="pipe", content="into the pipe"),
        call("read_file", path="sock"),
        call("list_dir", path="pipe"),
        call("read_file", path="loop"),
        call("read_file", path="src"),
        say("none of them could be read"),
        say("nothing to change"),  # the second job
    )
    with fifo_release(engine.settings.worktrees_dir, after_s=30):
        first, second, elapsed = await submit_both_and_work(engine, REQUEST, REQUEST)

    reqs = rig.standin.requests_for(MODEL)
    assert tool_result(reqs[1]).startswith("exit 0"), tool_result(reqs[1])
    results = [tool_result(r) for r in reqs[2:8]]
    for text in results[:5]:
        assert text.startswith("refused: ") and "refused: refused" not in text, text
    assert "'pipe' is a FIFO" in results[0] and "'pipe' is a FIFO" in results[1]
    assert "'sock' is a socket" in results[2]
    assert "'pipe' is a FIFO" in results[3]
    assert "'loop' is a symlink" in results[4]
    assert results[5] == "error: 'src' is a folder, not a file; list it with list_dir"
    refused = await kinds(engine, first.id, "tool.refused")
    assert [(e.data["tool"], e.data["arguments"]["path"]) for e in refused] == [
        ("fs.read", "pipe"),
        ("fs.write", "pipe"),
        ("fs.read", "sock"),
        ("fs.list", "pipe"),
        ("fs.read", "loop"),
    ]
    [failed] = await kinds(engine, first.id, "tool.failed")
    assert failed.data["tool"] == "fs.read" and "is a folder" in failed.data["error"]
    assert first.state is JobState.awaiting_approval, first.result  # the symlink is its change
    assert first.pending_action.stat["files"] == ["loop"]
    assert second.state is JobState.succeeded, second.result
    assert elapsed < 30, f"nothing blocked, yet the two jobs took {elapsed:.0f} s"
    assert await engine.verify_audit()


async def test_command_that_outlives_the_time_limit_fails_the_job_and_the_next_job_runs(
    rig: Rig,
):
    engine = await rig.engine(limits={"agent_time_limit_s": 2, "command_timeout_s": 300})
    rig.standin.script(
        MODEL,
        call("run", command="sleep 60 && touch slept"),
        say("slept"),
        say("nothing to change"),  # the second job
    )
    first, second, elapsed = await submit_both_and_work(engine, REQUEST, REQUEST)

    assert first.state is JobState.failed, first.result
    assert first.result["reason"] == (
        "stopped: the agent's time limit of 2 s was reached during run"
    )
    assert await kinds(engine, first.id, "tool.shell") == [], "the command never finished"
    [stopped] = await kinds(engine, first.id, "agent.stopped")
    assert "during run" in stopped.data["summary"] and stopped.artifacts, "transcript kept"
    assert second.state is JobState.succeeded, second.result
    assert elapsed < 20, f"the time limit of 2 s held the worker {elapsed:.0f} s"
    assert not list(engine.settings.worktrees_dir.rglob("slept"))


async def test_model_call_that_outlives_the_time_limit_fails_the_job(rig: Rig):
    engine = await rig.engine(limits={"agent_time_limit_s": 1.5})
    rig.standin.latency_s = 30
    rig.standin.script(MODEL, say("too late"), say("too late"), say("nothing to change"))
    person = engine.actor("cli", "alice")
    slow = await engine.submit(REQUEST, person)
    await asyncio.to_thread(litellm_module)
    started = time.monotonic()
    while await Worker(engine).run_once():
        pass
    elapsed = time.monotonic() - started
    slow = await engine.get(slow.id)

    assert slow.state is JobState.failed, slow.result
    assert slow.result["reason"] == (
        "stopped: the agent's time limit of 1.5 s was reached during model call 1"
    )
    assert elapsed < 15, elapsed
    rig.standin.latency_s = 0
    fast = await engine.submit(REQUEST, person)
    while await Worker(engine).run_once():
        pass
    assert (await engine.get(fast.id)).state is JobState.succeeded
