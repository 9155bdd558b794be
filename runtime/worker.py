"""The worker: claims queued and approved jobs from the database queue and runs them.

A job interrupted by a crash is never silently lost: a publish is resumed (it is idempotent),
a half-run execution is failed with a reason, because re-running its steps could run them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.engine import LIVE_WORKER_SECONDS, Engine
from runtime.errors import AcpError
from runtime.jobs import JobRecord, JobState, Phase, RunGate
from runtime.kinds import registry
from runtime.kinds.base import JobKind
from runtime.recorder import JobRecorder
from runtime.store import job_store, worker_store
from runtime.store.job_store import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("acp.worker")
SWEEP_S = 5.0
CLAIM_TRIES = 20


class Worker:
    def __init__(self, engine: Engine, *, poll_interval: float = 0.2, heartbeat: float = 2.0):
        self.engine = engine
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat
        self.host = socket.gethostname()
        # A supervised worker takes the identity its supervisor waits for (runtime.supervisor).
        self.id = (
            os.environ.get("ACP_WORKER_ID") or f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.actor = f"worker:{self.id}"

    # --- liveness ------------------------------------------------------------

    async def register(self) -> None:
        # Rows of workers on this host whose process is gone (a crash, a SIGKILL) would
        # count as live until their heartbeat ages out; they are dead now.
        await worker_store.register_worker(
            self.engine.db, self.id, host=self.host, pid=os.getpid(), alive=_pid_alive
        )

    async def beat(self) -> None:
        await worker_store.beat(self.engine.db, self.id)

    async def unregister(self) -> None:
        await worker_store.unregister(self.engine.db, self.id)

    async def _is_dead(self, conn: AsyncConnection, worker_id: str | None) -> bool:
        if worker_id is None:
            return True
        if worker_id == self.id:
            return False
        row = await worker_store.worker_row(conn, worker_id)
        if row is None:
            return True
        if row.host == self.host and not _pid_alive(row.pid):
            return True
        stale = utcnow() - timedelta(seconds=LIVE_WORKER_SECONDS * 2)
        return row.heartbeat_at < stale

    # --- recovery ------------------------------------------------------------

    async def recover(self) -> list[int]:
        """Take over jobs whose worker died: resume what is safe to do again (a publish), and
        end the rest as their kind says (an execution cut short is failed, with the reason)."""
        recovered = []
        for job in await self.engine.jobs(states=[JobState.running.value], limit=1000):
            async with self.engine.db.engine.connect() as conn:
                owner = await job_store.worker_of(conn, job.id)
                if not await self._is_dead(conn, owner):
                    continue
            recovered.append(job.id)
            with self._pinned(job):
                await self._recover_one(job, owner)
        return recovered

    async def _recover_one(self, job: JobRecord, owner: str | None) -> None:
        phase = job.phase or Phase.execute
        try:
            kind = registry.kind_for(job.spec.job_type)
        except AcpError as error:
            await self._fail(job, error.message)
            return
        ctx = self.engine.context(job, self.id, phase=phase)
        if phase in kind.resumable_phases:
            await self.engine.log(
                job.id,
                "job.resumed",
                self.actor,
                {"phase": phase.value, "previous_worker": owner},
            )
            await self._guarded(job, self.engine.run_pass(ctx))
        else:
            await self._guarded(job, self._recover(kind, ctx, phase, owner))

    async def _recover(self, kind: JobKind, ctx, phase: Phase, owner: str | None) -> JobRecord:
        return await self.engine.apply(ctx, await kind.recover(ctx, phase, owner))

    # --- the queue -------------------------------------------------------------

    async def claim(self) -> JobRecord | None:
        # A job decided under an older policy is decided again first; one it denies (or stops
        # at a new gate) is not run, and the next one is tried.
        for _ in range(CLAIM_TRIES):
            async with self.engine.db.begin() as conn:
                # One transaction: the row found (locked on PostgreSQL) and the state change.
                await self.engine.policies.follow(conn)
                job_id = await worker_store.next_claimable_job_id(conn)
                if job_id is None:
                    return None
                job = await job_store.load_job(conn, job_id)
                claimable = job.state
                job = await self.engine.redecide_before_run(conn, job)
                if job.state is claimable:
                    return await self._start(conn, job)
        return None

    async def _start(self, conn: AsyncConnection, job: JobRecord) -> JobRecord:
        phase = Phase.execute
        if job.state is JobState.approved and not isinstance(job.pending_action, RunGate):
            # What an approval starts: a publish, or the kind's approved live action.
            with contextlib.suppress(AcpError):
                phase = registry.kind_for(job.spec.job_type).approved_phase
        return await self.engine.transition(
            conn,
            job,
            JobState.running,
            actor=self.actor,
            kind={Phase.publish: "publish.started", Phase.resume: "job.resumed"}.get(
                phase, "job.started"
            ),
            data={"worker": self.id, "phase": phase.value, "policy_hash": job.policy_hash},
            worker_id=self.id,
            phase=phase,
        )

    def _pinned(self, job: JobRecord):
        """A pass acts under the policy the job records, whatever is reloaded meanwhile."""
        policies = self.engine.policies
        return policies.pinned(policies.version(job.policy_hash))

    async def process(self, job: JobRecord) -> JobRecord:
        with self._pinned(job):
            return await self._process(job)

    async def _process(self, job: JobRecord) -> JobRecord:
        try:
            registry.kind_for(job.spec.job_type)
        except AcpError as error:
            return await self._fail(job, f"{error.message}; {error.hint}")
        ctx = self.engine.context(job, self.id)
        return await self._guarded(job, self.engine.run_pass(ctx))

    async def _guarded(self, job: JobRecord, work) -> JobRecord:
        # Every pass over a job has a deadline, so no job (a hung page, a stuck tool, a
        # provider that never answers) holds this worker and the jobs queued behind it.
        limit = self.engine.policy.limits.job_time_limit_s
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await work
        except AcpError as error:
            return await self._fail(job, error.message)
        except TimeoutError as error:
            if not deadline.expired():
                return await self._fail(job, f"internal error: TimeoutError: {error}")
            return await self._timed_out(job, limit)
        except Exception as error:  # a bug must fail the job visibly, never strand it running
            log.exception("job %s failed with an internal error", job.job_id)
            return await self._fail(job, f"internal error: {type(error).__name__}: {error}")

    async def _timed_out(self, job: JobRecord, limit: float) -> JobRecord:
        fresh = await self.engine.get(job.id)
        phase = fresh.phase or Phase.execute
        log.warning("job %s ran past its time limit of %g s (%s)", job.job_id, limit, phase)
        if phase is Phase.publish:
            reason = (
                f"stopped: publishing ran past the job's time limit of {limit:g} s "
                "(limits.job_time_limit_s) and was cancelled; check the target before "
                "publishing again"
            )
        else:
            with contextlib.suppress(Exception):
                kind = registry.kind_for(job.spec.job_type)
                await kind.discard(self.engine.context(fresh, self.id))
            reason = (
                f"stopped: the job ran past its time limit of {limit:g} s "
                "(limits.job_time_limit_s); its work was cancelled and nothing was published"
            )
        return await self._fail(job, reason)

    async def _fail(self, job: JobRecord, reason: str) -> JobRecord:
        fresh = await self.engine.get(job.id)
        if fresh.state is not JobState.running:
            return fresh
        return await self.engine.finish(
            fresh, JobState.failed, self.actor, "job.failed", reason=reason
        )

    async def run_once(self) -> JobRecord | None:
        job = await self.claim()
        return await self.process(job) if job else None

    async def run(self, stop: asyncio.Event) -> None:
        await self.register()
        try:
            await self.recover()
            beat = asyncio.create_task(self._heartbeat(stop))
            try:
                swept = 0.0
                while not stop.is_set():
                    done = await self.run_once()
                    if done is None:
                        await self.sweep_kinds()
                    if done is None and time.monotonic() - swept > SWEEP_S:
                        # Another worker may have died since we started: take over its jobs.
                        await self.recover()
                        await self.engine.expire_overdue()
                        swept = time.monotonic()
                    if done is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), self.poll_interval)
            finally:
                beat.cancel()
                for kind in registry.kinds():
                    if kind.busy():
                        await kind.shutdown()
        finally:
            await self.unregister()

    async def sweep_kinds(self) -> int:
        """Let kinds holding live resources (paused browsers) release those of ended jobs."""
        return sum(
            [await kind.sweep(_House(self.engine)) for kind in registry.kinds() if kind.busy()]
        )

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.beat()
            except Exception:  # a missed beat is retried; the next one may succeed
                log.warning("heartbeat failed", exc_info=True)


class _House:
    """What a kind's sweep may ask of the runtime (runtime.kinds.base.Housekeeping)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings

    async def job(self, job_id: int) -> JobRecord:
        return await self.engine.get(job_id)

    def recorder(self, job_id: int, actor: str) -> JobRecorder:
        return self.engine.recorder(job_id, actor)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A killed process nobody has reaped yet is a zombie: it exists but runs nothing.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
