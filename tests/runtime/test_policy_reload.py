"""The policy's life while the service runs: reloaded and swapped atomically (or refused with
file and line while the old one serves), every version stored by its hash, each job decided
and executed under the version it records, and a job whose grant was withdrawn before it ran
decided again and denied, saying why.

Real policy files in tmp_path, the real engine and worker on SQLite (and PostgreSQL where the
store matters); a small job kind registered here records the policy each pass ran under.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from runtime.engine import Engine
from runtime.jobs import JobState, JobType
from runtime.kinds import registry
from runtime.kinds.base import JobContext, JobKind, Outcome, Succeeded
from runtime.policy import load_bundle
from runtime.settings import Settings
from runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "policies" / "default.yml"
GRANT = "        targets: [demo]\n        tools: [fs.read, fs.write, shell, git.diff]"


class PingTarget(BaseModel):
    note: str = ""


class PingKind(JobKind):
    """Succeeds at once, recording the policy version its pass ran under; like the real kinds,
    it needs its target to be in that policy (the old KeyError when it was not)."""

    job_type = JobType("ping")
    aliases = ("ping",)
    target_section = "pings"
    target_model = PingTarget
    tools = ("ping.send",)

    def has_explicit_steps(self, instruction: str, steps: list[str]) -> bool:
        return True

    async def execute(self, ctx: JobContext) -> Outcome:
        targets = ctx.policy.targets_in("pings")
        assert ctx.job.spec.target in targets, "ran under a policy without its target"
        await asyncio.sleep(0)
        return Succeeded(
            reason="pinged",
            result={"ran_under": ctx.policy_hash, "targets": sorted(targets)},
        )


@pytest.fixture(autouse=True)
def ping_kind():
    registry.register(PingKind)
    yield
    registry.unregister("ping")


PING_POLICY = """
people:
  alice:
    roles: [pinger]
    identities: {{cli: [alice]}}
  carol:
    roles: [pinger]
    identities: {{cli: [carol]}}
roles:
  pinger:
    grants:
      - id: pinger.ping
        job_types: [ping]
        targets: [{targets}]
        tools: [ping.send]
models:
  routes:
    - id: models.direct
      model: direct
targets:
  pings:
{entries}
"""


def ping_policy(folder: Path, targets: list[str]) -> None:
    entries = "\n".join(f"    {t}: {{note: {t}}}" for t in targets)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.yml").write_text(
        PING_POLICY.format(targets=", ".join(targets), entries=entries).lstrip()
    )


def copy_bundled(folder: Path) -> None:
    """The bundled policy without its examples (the tests change what those pin down)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = BUNDLED.read_text()
    (folder / "default.yml").write_text(text.split("\nexpect:")[0] + "\n")


async def open_service(tmp_path: Path, folder: Path, db_url: str | None = None) -> Engine:
    url = db_url or f"sqlite+aiosqlite:///{tmp_path / 'acp.db'}"
    settings = Settings(home=tmp_path / "home", database_url=url, policy_dir=folder)
    return await Engine.open(settings, upgrade=True, actor="serve:test")


async def events_of(engine: Engine, job_id: int) -> list[Any]:
    return await engine.events(job_id)


async def test_reload_under_load_each_job_records_the_policy_it_ran_under(tmp_path: Path):
    folder = tmp_path / "policy"
    ping_policy(folder, ["alpha", "beta"])
    engine = await open_service(tmp_path, folder)
    try:
        alice, carol = engine.actor("cli", "alice"), engine.actor("cli", "carol")
        hashes = {engine.loaded.sha256}
        stop = asyncio.Event()
        worker = Worker(engine, poll_interval=0.01)
        worker_task = asyncio.create_task(worker.run(stop))
        rng = random.Random(17)
        submitted: list[int] = []
        refused = 0

        async def submit_many() -> None:
            nonlocal refused
            for i in range(200):
                target = rng.choice(["alpha", "beta", "gamma"])
                who = alice if i % 2 else carol
                try:
                    job = await engine.submit(f"ping {target}: hello {i}", who)
                except Exception as error:  # gamma is not a target under version A
                    assert "gamma" in str(error)
                    refused += 1
                    continue
                submitted.append(job.id)
                if i % 7 == 0:
                    await asyncio.sleep(0.005)

        async def flip() -> None:
            for n in range(20):
                ping_policy(folder, ["alpha", "beta", "gamma"] if n % 2 == 0 else ["alpha", "beta"])
                result = await engine.policies.reload("reload", "test")
                assert result.error is None and result.changed
                hashes.add(engine.loaded.sha256)
                await asyncio.sleep(0.02)

        await asyncio.gather(submit_many(), flip())
        # A broken policy is refused with its file and line; the one in force keeps serving.
        good = engine.loaded.sha256
        (folder / "policy.yml").write_text("people:\n  alice: {roles: [nobody]}\n")
        result = await engine.policies.reload("reload", "test")
        assert result.error is not None
        assert "policy.yml:2: person 'alice' has unknown role 'nobody'" in result.error.message
        assert engine.loaded.sha256 == good
        job = await engine.submit("ping alpha: after the broken file", alice)
        submitted.append(job.id)

        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            jobs = [await engine.get(j) for j in submitted]
            if all(j.state in (JobState.succeeded, JobState.denied) for j in jobs):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await worker_task

        assert len(hashes) == 2
        outcomes = {"succeeded": 0, "denied": 0}
        for job in jobs:
            assert job.state in (JobState.succeeded, JobState.denied), (job.job_id, job.result)
            assert "internal error" not in str(job.result)
            events = await events_of(engine, job.id)
            decided = [
                e.data["policy_hash"]
                for e in events
                if e.kind in ("job.queued", "policy.redecided", "policy.denied")
            ]
            assert decided[-1] == job.policy_hash  # the last decision names the recorded policy
            outcomes[job.state.value] += 1
            if job.state is JobState.succeeded:
                started = next(e for e in events if e.kind == "job.started")
                # Executed under the very version it records, and that version had its target.
                assert started.data["policy_hash"] == job.policy_hash
                assert job.result["ran_under"] == job.policy_hash
                assert job.spec.target in job.result["targets"]
            else:  # decided under a version with gamma, run under one without: re-decided
                assert job.spec.target == "gamma"
                assert "the policy changed before it ran" in job.result["reason"]
                assert any(e.kind == "policy.denied" and e.data.get("redecided") for e in events)
        assert outcomes["succeeded"] > 100
        # Every version was stored by its hash and can be read back as the same policy.
        for sha in hashes:
            assert load_bundle(engine.artifacts.read(sha), folder).sha256 == sha
        kinds = [e.kind for e in await engine.events()]
        assert kinds.count("policy.loaded") == 21  # startup + 20 flips
        assert kinds.count("policy.reload_refused") == 1
    finally:
        await engine.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_grant_withdrawn_before_the_job_ran_is_redecided_and_denied(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
):
    folder = tmp_path / "policy"
    copy_bundled(folder)
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    engine = await open_service(tmp_path, folder, url)
    try:
        alice = engine.actor("cli", "alice")
        queued = await engine.submit("code demo: run `ls`", alice)
        assert queued.state is JobState.queued
        before = queued.policy_hash
        text = (folder / "default.yml").read_text()
        (folder / "default.yml").write_text(
            text.replace(GRANT, "        targets: [nothing-here]\n        tools: [fs.read]", 1)
        )
        result = await engine.policies.reload("reload", "alice via test")
        assert result.changed
        after = engine.loaded.sha256
        worker = Worker(engine)
        assert await worker.run_once() is None  # nothing left to run: the job was denied
        job = await engine.get(queued.id)
        assert job.state is JobState.denied
        assert job.policy_hash == after
        reason = job.result["reason"]
        assert f"re-decided under policy {after[:12]}" in reason
        assert f"decided under {before[:12]}" in reason and "alice via test" in reason
        assert "alice has no grant for code jobs on 'demo'" in reason
        events = await engine.events(job.id)
        denied = next(e for e in events if e.kind == "policy.denied" and e.data.get("redecided"))
        assert denied.data["from"] == before and denied.data["to"] == after
        assert {"kind": "effect", "rule": "grants.none", "detail": "allow -> deny"} in (
            denied.data["changes"]
        )
        assert not any(e.kind == "job.started" for e in events)
    finally:
        await engine.close()


async def test_a_job_still_allowed_takes_the_new_decision_and_says_so(tmp_path: Path):
    folder = tmp_path / "policy"
    copy_bundled(folder)
    engine = await open_service(tmp_path, folder)
    try:
        alice = engine.actor("cli", "alice")
        queued = await engine.submit("code demo: run `ls`", alice)
        text = (folder / "default.yml").read_text()
        # A new gate on running demo jobs at all: the queued job must stop at it.
        (folder / "default.yml").write_text(
            text.replace("    actions: [merge]\n", "    actions: [run, merge]\n", 1)
        )
        assert (await engine.policies.reload("reload", "test")).changed
        assert await Worker(engine).run_once() is None
        job = await engine.get(queued.id)
        assert job.state is JobState.awaiting_approval
        assert job.pending_action is not None and job.pending_action.action == "run"
        assert job.policy_hash == engine.loaded.sha256
        asked = [e for e in await engine.events(job.id) if e.kind == "approval.requested"]
        assert asked[-1].data["redecided"]
        assert {
            "kind": "approval_added",
            "rule": "demo.merge.review",
            "detail": "run gate, approvers: bob",
        } in asked[-1].data["changes"]
    finally:
        await engine.close()


async def test_a_worker_process_follows_the_policy_the_service_put_in_force(tmp_path: Path):
    folder = tmp_path / "policy"
    ping_policy(folder, ["alpha"])
    service = await open_service(tmp_path, folder)
    # A second engine on the same database, as `acp worker` opens it (no upgrade, no record).
    worker_engine = await Engine.open(service.settings)
    try:
        ping_policy(folder, ["alpha", "beta"])
        assert (await service.policies.reload("reload", "test")).changed
        job = await service.submit("ping beta: hi", service.actor("cli", "alice"))
        assert worker_engine.loaded.sha256 != service.loaded.sha256  # not yet followed
        done = await Worker(worker_engine).run_once()
        assert done is not None and done.state is JobState.succeeded, done.result
        assert done.result["ran_under"] == service.loaded.sha256 == job.policy_hash
        assert worker_engine.policies.current.source == "reload"
    finally:
        await worker_engine.close()
        await service.close()


async def test_the_watcher_reloads_an_edited_folder_and_refuses_a_broken_one_once(tmp_path: Path):
    from runtime.policy_live import PolicyWatcher

    folder = tmp_path / "policy"
    ping_policy(folder, ["alpha"])
    engine = await open_service(tmp_path, folder)
    stop = asyncio.Event()
    watcher = PolicyWatcher(engine.policies, interval=0.05)
    task = asyncio.create_task(watcher.run(stop))
    try:
        first = engine.loaded.sha256
        ping_policy(folder, ["alpha", "beta"])
        await _until(lambda: engine.loaded.sha256 != first)
        assert engine.policies.current.source == "filesystem"
        assert "owner of the policy files" in engine.policies.current.actor
        second = engine.loaded.sha256
        (folder / "policy.yml").write_text("roles: {pinger: {grants: [{id: x}]}}\n")
        await _until_async(lambda: _count(engine, "policy.reload_refused"), 1)
        await asyncio.sleep(0.3)  # seen again and again: refused once
        assert engine.loaded.sha256 == second
        kinds = [e.kind for e in await engine.events()]
        assert kinds.count("policy.reload_refused") == 1
        refused = [e for e in await engine.events() if e.kind == "policy.reload_refused"]
        assert "policy.yml:1" in refused[0].data["error"]
        watcher.request("sighup", "signal SIGHUP")
        await asyncio.sleep(0.2)
        kinds = [e.kind for e in await engine.events()]
        assert kinds.count("policy.reload_refused") == 2  # an explicit reload says it again
    finally:
        stop.set()
        await task
        await engine.close()


async def _count(engine: Engine, kind: str) -> int:
    return [e.kind for e in await engine.events()].count(kind)


async def _until_async(count, at_least: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await count() >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def _until(check, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_reload_that_cannot_finish_is_refused_and_the_old_policy_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import os

    from runtime import policy_live

    folder = tmp_path / "policy"
    ping_policy(folder, ["alpha"])
    engine = await open_service(tmp_path, folder)
    monkeypatch.setattr(policy_live, "RELOAD_TIMEOUT_S", 0.5)
    stuck = folder / "stuck.yml"
    os.mkfifo(stuck)  # reading it blocks until someone writes: a disk that never answers
    try:
        before = engine.loaded.sha256
        started = asyncio.get_running_loop().time()
        result = await engine.policies.reload("reload", "test")
        took = asyncio.get_running_loop().time() - started
        assert result.error is not None and "took over 0.5 s" in result.error.message
        assert took < 5 and engine.loaded.sha256 == before
        job = await engine.submit("ping alpha: still served", engine.actor("cli", "alice"))
        assert job.state is JobState.queued
        assert await _count(engine, "policy.reload_refused") == 1
    finally:
        await asyncio.to_thread(_release, stuck)
        await engine.close()


def _release(fifo: Path) -> None:
    """Open the FIFO for writing and close it: the reader a refused reload left behind ends."""
    with open(fifo, "wb"):
        pass


async def test_a_worker_restarted_while_the_folder_is_broken_works_under_the_policy_in_force(
    tmp_path: Path,
):
    from runtime.errors import PolicyFileError

    folder = tmp_path / "policy"
    ping_policy(folder, ["alpha"])
    service = await open_service(tmp_path, folder)
    try:
        (folder / "policy.yml").write_text("people: [\n")
        assert (await service.policies.reload("filesystem", "filesystem")).error is not None
        # The supervisor restarts a crashed worker: it must not need the broken folder.
        worker_engine = await Engine.open(service.settings)
        try:
            assert worker_engine.loaded.sha256 == service.loaded.sha256
            job = await service.submit("ping alpha: hi", service.actor("cli", "alice"))
            done = await Worker(worker_engine).run_once()
            assert done is not None and done.id == job.id and done.state is JobState.succeeded
        finally:
            await worker_engine.close()
        # The service itself does not start on a folder it cannot read.
        with pytest.raises(PolicyFileError, match=r"policy\.yml:2"):
            await open_service(tmp_path, folder)
    finally:
        await service.close()
    # Nor does any process when no policy was ever put in force.
    fresh = Settings(home=tmp_path / "other", database_url=f"sqlite+aiosqlite:///{tmp_path}/o.db",
                     policy_dir=folder)  # fmt: skip
    with pytest.raises(PolicyFileError):
        await Engine.open(fresh)
