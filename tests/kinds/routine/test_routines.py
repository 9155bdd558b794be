"""Routines: proposed as jobs, approved, fired by APScheduler as ordinary jobs, one scheduler
per database (a lease), misfires after downtime recorded by rule.

Real APScheduler with its SQLAlchemy job store on the test's database; fast triggers
(`every 1s`) stand for daily ones.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
import yaml

from runtime import routines
from runtime.engine import Engine
from runtime.jobs import JobState, Origin
from runtime.routines import RoutineScheduler
from runtime.settings import Settings
from runtime.worker import Worker
from tests.conftest import BUNDLED_POLICY

REQUEST = "code demo: run `echo ok`"


def write_policy(folder: Path, *, drop: str | None = None, **routine_settings) -> Path:
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["routines"].update({"misfire_grace_s": 1, **routine_settings})
    if drop:
        del policy["people"][drop]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


async def open_engine(tmp_path: Path, db_url: str, policy: Path) -> Engine:
    return await Engine.open(
        Settings.from_env(
            {"ACP_HOME": str(tmp_path / "home"), "ACP_DATABASE_URL": db_url,
             "ACP_POLICY_DIR": str(policy)}
        )
    )  # fmt: skip


async def settle(engine: Engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


async def propose(engine: Engine, schedule: str, request: str = REQUEST, owner: str = "alice"):
    job = await engine.submit(f'schedule "{schedule}" {request}', engine.actor("cli", owner))
    return await settle(engine, job.id)


async def approved_routine(engine: Engine, schedule: str, **kw) -> routines.Routine:
    job = await propose(engine, schedule, **kw)
    assert job.state is JobState.awaiting_approval, job.result
    await engine.approve(job.id, engine.actor("cli", "bob"))
    job = await settle(engine, job.id)
    assert job.state is JobState.succeeded, job.result
    [routine] = await routines.routines(engine)
    return routine


async def run_scheduler(engine: Engine, seconds: float, **kw) -> RoutineScheduler:
    scheduler = RoutineScheduler(engine, tick_s=0.2, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return scheduler


async def scheduled_jobs(engine: Engine) -> list:
    return [j for j in await engine.jobs(limit=500) if j.spec.origin is Origin.schedule]


@pytest.fixture
async def engine(tmp_path: Path, db_url: str):
    eng = await open_engine(tmp_path, db_url, write_policy(tmp_path / "policy"))
    try:
        yield eng
    finally:
        await eng.close()


# --- proposing ------------------------------------------------------------------------------


async def test_routine_is_a_job_that_waits_for_approval_and_never_fires_before(engine) -> None:
    job = await propose(engine, "every 1s")
    assert job.spec.job_type.value == "schedule"
    assert job.state is JobState.awaiting_approval
    assert job.pending_action.routine.request == REQUEST
    assert job.pending_action.routine.owner == "alice"
    await run_scheduler(engine, 2.5)
    assert await routines.routines(engine) == []
    assert await scheduled_jobs(engine) == []


async def test_someone_without_the_grant_cannot_schedule_it(engine) -> None:
    job = await engine.submit(f'schedule "every 1s" {REQUEST}', engine.actor("cli", "carol"))
    assert job.state is JobState.denied
    assert "the scheduled request: carol has no grant" in job.result.get("reason", "") + " ".join(
        job.decision["reasons"]
    )


@pytest.mark.parametrize(
    "schedule, words",
    [("61 * * * *", "is not a schedule"), ("every 5 fortnights", "is not a schedule"),
     ("0 9 * * MON tz=Mars/Olympus", "unknown time zone"), ("every 1s misfire=later", "misfire")],
)  # fmt: skip
async def test_bad_schedules_are_refused_at_intake(engine, schedule, words) -> None:
    from runtime.errors import BadRequest

    with pytest.raises(BadRequest, match=words):
        await engine.submit(f'schedule "{schedule}" {REQUEST}', engine.actor("cli", "alice"))


# --- firing ---------------------------------------------------------------------------------


async def test_approved_routine_fires_ordinary_jobs_as_its_owner(engine) -> None:
    routine = await approved_routine(engine, "every 1s")
    assert routine.owner == "alice" and routine.state == "active"
    await run_scheduler(engine, 3.6)
    jobs = await scheduled_jobs(engine)
    assert 2 <= len(jobs) <= 5
    for job in jobs:
        assert job.spec.requester == "alice" and job.prompt == REQUEST
        assert job.spec.job_type.value == "code" and job.state is JobState.queued
        assert job.decision["rule_ids"][0] == "engineer.code.demo"  # the same policy decides
    firings = await routines.history(engine, routine.id)
    assert sorted(f.job_id for f in firings) == sorted(j.id for j in jobs)
    assert len({f.due_at for f in firings}) == len(firings)  # one firing per due time
    job = await settle(engine, jobs[0].id)
    assert job.state is JobState.succeeded  # `echo ok` changes nothing: nothing to publish


async def test_owner_removed_from_the_policy_gets_a_denied_firing(tmp_path, db_url) -> None:
    first = await open_engine(tmp_path, db_url, write_policy(tmp_path / "p1"))
    try:
        routine = await approved_routine(first, "every 1s")
    finally:
        await first.close()
    later = await open_engine(tmp_path, db_url, write_policy(tmp_path / "p2", drop="alice"))
    try:
        await run_scheduler(later, 2.2)
        jobs = await scheduled_jobs(later)
        assert jobs and all(j.state is JobState.denied for j in jobs)
        firings = await routines.history(later, routine.id)
        assert firings[0].outcome == "denied"
        assert "not a person in the policy" in firings[0].detail
    finally:
        await later.close()


async def test_paused_routine_does_not_fire_and_run_now_does(engine) -> None:
    routine = await approved_routine(engine, "0 9 * * MON")
    alice = engine.actor("cli", "alice")
    with pytest.raises(Exception, match="may not change"):
        await routines.set_state(engine, routine.id, engine.actor("cli", "carol"), "paused")
    await routines.set_state(engine, routine.id, alice, "paused")
    with pytest.raises(Exception, match="paused; resume it first"):
        await routines.run_now(engine, routine.id, alice)
    await routines.set_state(engine, routine.id, alice, "active")
    job = await routines.run_now(engine, routine.id, alice)
    assert job.spec.origin is Origin.schedule and job.state is JobState.queued
    assert (await routines.history(engine, routine.id))[0].detail == "run now by alice"


# --- unattended approvals -------------------------------------------------------------------


async def test_unattended_approval_expires_and_is_rejected(tmp_path, db_url) -> None:
    policy = write_policy(tmp_path / "policy", unattended={"expires_after": "2s"})
    engine = await open_engine(tmp_path, db_url, policy)
    try:
        routine = await approved_routine(
            engine, "0 9 * * MON", request="code demo: run `echo hi > hello.txt`"
        )
        job = await routines.run_now(engine, routine.id, engine.actor("cli", "alice"))
        job = await settle(engine, job.id)
        assert job.state is JobState.awaiting_approval  # a merge, and nobody is watching
        gate = job.approvals[-1]
        assert (gate.expires_at - gate.requested_at).total_seconds() == pytest.approx(2, abs=1)
        await asyncio.sleep(2.2)
        await engine.expire_overdue()
        job = await engine.get(job.id)
        assert job.state is JobState.rejected
        assert job.approvals[-1].decision == "expired"
    finally:
        await engine.close()


async def test_unattended_approval_escalates_once_then_is_rejected(tmp_path, db_url) -> None:
    unattended = {"expires_after": "2s", "on_expiry": "escalate", "escalate_to": ["carol"]}
    engine = await open_engine(
        tmp_path, db_url, write_policy(tmp_path / "p", unattended=unattended)
    )
    try:
        routine = await approved_routine(
            engine, "0 9 * * MON", request="code demo: run `echo hi > hello.txt`"
        )
        job = await routines.run_now(engine, routine.id, engine.actor("cli", "alice"))
        job = await settle(engine, job.id)
        await asyncio.sleep(2.2)
        await engine.expire_overdue()
        job = await engine.get(job.id)
        assert job.state is JobState.awaiting_approval
        assert job.approvals[-1].approvers == ["carol"]
        with pytest.raises(Exception, match="escalated to"):
            await engine.approve(job.id, engine.actor("cli", "bob"))
        await asyncio.sleep(2.2)
        await engine.expire_overdue()
        assert (await engine.get(job.id)).state is JobState.rejected
    finally:
        await engine.close()


# --- misfires after downtime ----------------------------------------------------------------


def gaps(firings: list, every_s: float = 1.0) -> list:
    """Due times on the routine's grid that have no record between the first and the last."""
    due = sorted(f.due_at for f in firings if f.instance and not f.instance.startswith("manual:"))
    return [(a, b) for a, b in itertools.pairwise(due) if (b - a).total_seconds() > every_s]


@pytest.mark.parametrize("rule", ["skip", "run_once"])
async def test_misfire_after_downtime_follows_the_routine_rule(engine, rule) -> None:
    routine = await approved_routine(engine, f"every 1s misfire={rule}")
    await run_scheduler(engine, 1.5)
    before = len(await scheduled_jobs(engine))
    await asyncio.sleep(4)  # the service is down: about four runs come due
    await run_scheduler(engine, 0.6)
    after = await scheduled_jobs(engine)
    firings = await routines.history(engine, routine.id, limit=500)
    missed = [f for f in firings if f.outcome == "missed"]
    fired = [f for f in firings if f.outcome == "submitted"]
    assert not gaps(firings), "a due time ended with no record"
    assert len({f.due_at for f in firings}) == len(firings)
    assert len(fired) == len(after), "each firing is one job"
    if rule == "skip":
        assert len(missed) >= 2
        assert all("misfire rule: skip" in f.detail for f in missed)
        assert len(after) - before <= 2  # only runs due within the grace, none of the missed
    else:
        late = [f for f in fired if "coalesced" in f.detail]
        assert len(late) == 1 and len(missed) >= 2
        assert all("coalesced into the run due at" in f.detail for f in missed)
        assert all(f.due_at < late[0].due_at for f in missed)
        assert 1 <= len(after) - before <= 2  # the coalesced run, and maybe the next on time


async def test_runs_late_within_the_grace_all_fire_once(tmp_path, db_url) -> None:
    """skip with a grace longer than the downtime: every run that came due fires, once (the
    scheduler used to fire only the last of the late runs and lose the others)."""
    engine = await open_engine(tmp_path, db_url, write_policy(tmp_path / "p", misfire_grace_s=60))
    try:
        routine = await approved_routine(engine, "every 1s")
        await run_scheduler(engine, 1.5)
        await asyncio.sleep(3.5)  # three runs or so come due while no scheduler runs
        await run_scheduler(engine, 0.6)
        firings = await routines.history(engine, routine.id, limit=500)
        assert not gaps(firings), "a late run was neither fired nor recorded"
        assert {f.outcome for f in firings} == {"submitted"}
        assert len(firings) >= 5
        jobs = await scheduled_jobs(engine)
        assert sorted(j.id for j in jobs) == sorted(f.job_id for f in firings)
    finally:
        await engine.close()


async def test_a_firing_interrupted_before_its_job_is_submitted_at_the_next_start(engine) -> None:
    """A crash between the firing's row and its job leaves `firing`; the next scheduler submits
    it under the same request key, so the due time still ends as one job."""
    from sqlalchemy import insert

    from runtime.store.job_store import utcnow
    from runtime.store.models import RoutineFiringRow

    routine = await approved_routine(engine, "0 9 * * MON")
    due = utcnow().replace(microsecond=0)
    async with engine.db.begin() as conn:
        await conn.execute(
            insert(RoutineFiringRow.__table__).values(
                routine_id=routine.id, due_at=due, fired_at=due, outcome="firing", job_id=None,
                detail="", instance="crashed",
            )
        )  # fmt: skip
    await run_scheduler(engine, 0.5)
    [firing] = await routines.history(engine, routine.id)
    assert firing.outcome == "submitted" and firing.job_id is not None
    [job] = await scheduled_jobs(engine)
    assert job.id == firing.job_id


# --- two service instances on one PostgreSQL ---------------------------------------------------


async def test_two_instances_fire_each_run_once_and_the_second_takes_over(tmp_path, pg_url):
    import os
    import signal
    import subprocess

    from tests.support.acp_process import service_env

    policy = write_policy(tmp_path / "policy")
    engine = await open_engine(tmp_path, pg_url, policy)
    procs: list[subprocess.Popen] = []
    try:
        routine = await approved_routine(
            engine, "every 1s", request="sql payments-replica: SELECT 1"
        )
        env = service_env(tmp_path, ACP_DATABASE_URL=pg_url, ACP_POLICY_DIR=str(policy))
        env.pop("PAYMENTS_REPLICA_DSN", None)
        procs += [start_worker(env, tmp_path / f"worker-{name}.log") for name in ("a", "b")]

        async def firings_by(instances: int, count: int, timeout: float) -> list:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                done = [f for f in await routines.history(engine, routine.id, limit=500)
                        if f.outcome == "submitted"]  # fmt: skip
                if len({f.instance for f in done}) >= instances and len(done) >= count:
                    return done
                assert asyncio.get_running_loop().time() < deadline, done
                await asyncio.sleep(0.3)

        first = await firings_by(1, 4, 40)
        [leader] = {f.instance for f in first}  # exactly one instance schedules
        pid = int(leader.split(":")[1])
        assert pid in {p.pid for p in procs}
        os.kill(pid, signal.SIGKILL)  # the leader dies without releasing its lease
        after = await firings_by(2, len(first) + 3, 40)
        assert len({f.instance for f in after}) == 2
        successor = next(f.instance for f in after if f.instance != leader)
        assert int(successor.split(":")[1]) in {p.pid for p in procs if p.pid != pid}

        every = await routines.history(engine, routine.id, limit=500)
        due = [f.due_at for f in every]
        assert len(due) == len(set(due))  # never two firings for one due time
        assert not gaps(every), "a due time around the takeover ended with no record"
        jobs = await scheduled_jobs(engine)
        assert sorted(j.id for j in jobs) == sorted(f.job_id for f in every if f.job_id)
        assert len({j.prompt for j in jobs}) == 1 and len(jobs) == len(set(j.id for j in jobs))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await engine.close()


def start_worker(env: dict[str, str], log: Path):  # -> subprocess.Popen
    """`acp worker` (a worker and the routine scheduler) as its own process."""
    import subprocess
    import sys

    from tests.support.acp_process import ROOT

    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "worker"], env=env, cwd=ROOT, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


async def test_routine_declared_in_the_policy_fires_without_a_proposal(tmp_path, db_url) -> None:
    policy = write_policy(tmp_path / "policy")
    (policy / "routines.yml").write_text(
        "routines:\n  declared:\n"
        "    - name: nightly-check\n      owner: alice\n      schedule: every 1s\n"
        f'      request: "{REQUEST.replace("`", "`")}"\n'
    )
    engine = await open_engine(tmp_path, db_url, policy)
    try:
        await run_scheduler(engine, 2.4)
        [routine] = await routines.routines(engine)
        assert routine.name == "nightly-check" and routine.source == "policy"
        jobs = await scheduled_jobs(engine)
        assert jobs and all(j.spec.requester == "alice" for j in jobs)
        with pytest.raises(Exception, match="declared in the policy"):
            alice = engine.actor("cli", "alice")
            await routines.propose_change(engine, routine.id, alice, "delete")
    finally:
        await engine.close()


async def test_changing_and_deleting_a_routine_are_jobs_the_policy_gates(engine) -> None:
    routine = await approved_routine(engine, "0 9 * * MON")
    alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
    denied = await routines.propose_change(engine, routine.id, engine.actor("cli", "carol"),
                                           "delete")  # fmt: skip
    assert denied.state is JobState.denied and "may not delete R-1" in denied.result["reason"]

    job = await routines.propose_change(engine, routine.id, alice, "change", "0 8 * * TUE")
    job = await settle(engine, job.id)
    assert job.state is JobState.awaiting_approval
    assert job.pending_action.to["expression"] == "0 8 * * TUE"
    assert (await routines.get(engine, routine.id)).schedule.expression == "0 9 * * MON"
    await engine.approve(job.id, bob)
    job = await settle(engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert (await routines.get(engine, routine.id)).schedule.expression == "0 8 * * TUE"

    job = await settle(engine, (await routines.propose_change(engine, routine.id, alice,
                                                               "delete")).id)  # fmt: skip
    assert job.state is JobState.awaiting_approval
    assert (await routines.get(engine, routine.id)).state == "active"  # not before approval
    await engine.approve(job.id, bob)
    assert (await settle(engine, job.id)).state is JobState.succeeded
    assert (await routines.get(engine, routine.id)).state == "deleted"
    assert await routines.routines(engine) == []


async def test_acp_routines_commands(tmp_path, api_thread) -> None:
    from tests.support.acp_process import acp, service_env

    policy = write_policy(tmp_path / "policy")
    db_url = f"sqlite+aiosqlite:///{tmp_path}/acp.db"
    env = service_env(tmp_path, ACP_DATABASE_URL=db_url, ACP_POLICY_DIR=str(policy))
    api_thread(env)
    added = await asyncio.to_thread(
        acp, env, "routines", "add", "--as", "alice", "--tz", "Europe/Paris",
        "0 9 * * MON", REQUEST, "--no-wait",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "J-1" in added.stdout and "schedule" in added.stdout
    engine = await open_engine(tmp_path, db_url, policy)
    try:
        job = await settle(engine, 1)
        assert job.spec.approval_required_for == ["create"]
        await engine.approve(1, engine.actor("cli", "bob"))
        await settle(engine, 1)
    finally:
        await engine.close()
    listed = await asyncio.to_thread(acp, env, "routines", "list")
    assert "R-1" in listed.stdout and "0 9 * * MON (Europe/Paris)" in listed.stdout
    assert "alice" in listed.stdout and "never ran" in listed.stdout
    paused = await asyncio.to_thread(acp, env, "routines", "pause", "R-1", "--as", "alice")
    assert paused.stdout.strip() == "R-1 paused"
    refused = await asyncio.to_thread(acp, env, "routines", "pause", "R-1", "--as", "carol")
    assert refused.returncode != 0 and "may not change R-1" in refused.stderr
    history = await asyncio.to_thread(acp, env, "routines", "history", "R-1")
    assert "R-1 has not fired yet" in history.stdout
    bad = await asyncio.to_thread(acp, env, "routines", "add", "--as", "alice", "61 * * * *",
                                  REQUEST)  # fmt: skip
    assert bad.returncode != 0 and "is not a schedule" in bad.stderr
