"""Routines: a request on a schedule, where every firing is an ordinary job.

A routine is proposed as a `schedule` job (`schedule "0 9 * * MON" sql payments-replica: …`),
decided by the same policy (its owner must be allowed to run the request) and, by default,
approved before it exists; or it is declared in the policy (reviewed as a policy change). Each
firing submits the request with origin `schedule` and the owner as requester, through the same
intake and policy as a person typing it: an owner who left the policy or lost the grant gets a
denied job, reported like any other, and nothing runs. One firing per due time, however many
service instances run: the firing row is unique per (routine, due time) and so is the job's
request key. Only the instance holding the scheduler lease runs APScheduler at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from runtime.errors import BadRequest, InvalidTransition, PolicyDenied, UnknownJob
from runtime.jobs import JobRecord, JobState, Origin
from runtime.schedules import parse_schedule
from runtime.store import lease_store, routine_store
from runtime.store.job_store import utcnow
from runtime.store.routine_store import Firing, Routine, format_routine_id, parse_routine_id

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.identity import Actor

log = logging.getLogger("acp.routines")
LEASE = "scheduler"

__all__ = ["Firing", "Routine", "RoutineScheduler", "format_routine_id", "parse_routine_id"]


# --- reading ------------------------------------------------------------------------------


async def routines(engine: Engine, *, include_deleted: bool = False) -> list[Routine]:
    return await routine_store.list_routines(engine.db, include_deleted=include_deleted)


async def get(engine: Engine, routine_id: int) -> Routine:
    return await routine_store.load_routine(engine.db, routine_id)


async def history(engine: Engine, routine_id: int, limit: int = 50) -> list[Firing]:
    await get(engine, routine_id)
    return await routine_store.firings(engine.db, routine_id, limit)


async def last_result(engine: Engine, routine: Routine) -> str:
    done = await history(engine, routine.id, limit=1)
    if not done:
        return "never ran"
    firing = done[0]
    if firing.job_id is None:
        return f"{firing.outcome} at {firing.due_at:%Y-%m-%d %H:%M:%S} UTC"
    job = await engine.get(firing.job_id)
    return f"{job.job_id} {job.state.value} (due {firing.due_at:%Y-%m-%d %H:%M:%S} UTC)"


# --- changing ------------------------------------------------------------------------


async def propose_change(
    engine: Engine, routine_id: int, actor: Actor, action: str, schedule: str | None = None
) -> JobRecord:
    """Changing or deleting a routine is a job too, decided and gated by the same policy."""
    from runtime.intake import parse_request
    from runtime.jobs import JobSpec, JobType, ModelUse
    from runtime.kinds import registry
    from runtime.policy import approval_gates

    routine = await get(engine, routine_id)
    if routine.source == "policy":
        raise InvalidTransition(
            f"{routine.routine_id} is declared in the policy; change it there (a policy change)"
        )
    if routine.state == "deleted":
        raise InvalidTransition(f"{routine.routine_id} is deleted")
    if action == "change":
        parse_schedule(schedule or "", engine.policy.routines.timezone)  # BadRequest if bad
    try:
        target = parse_request(routine.request, engine.policy).target
    except BadRequest:
        target = None
    decision = _managing(engine, routine, actor, action)
    if decision.effect == "allow":
        gates, rules, why = approval_gates(engine.policy, JobType.schedule, target)
        gates = [g for g in gates if g.action == action]
        decision = decision.model_copy(
            update={
                "reasons": [*decision.reasons, *why],
                "rule_ids": [*decision.rule_ids, *rules],
                "tools_granted": ["scheduler"],
                "approvals": gates,
                "model": "direct",
            }
        )
    prompt = f"{action} {routine.routine_id}" + (f' to "{schedule}"' if schedule else "")
    now = utcnow()
    record = JobRecord(
        id=0,
        state=JobState.received,
        spec=JobSpec(
            job_type=JobType.schedule, target=target, instruction=routine.request,
            tools=decision.tools_granted, approval_required_for=decision.approval_required_for,
            artifact_contract=registry.kind_for(JobType.schedule).artifact_contract,
            schedule=schedule or routine.schedule.expression,
            commands=[action, routine.routine_id], origin=Origin(actor.door),
            requester=actor.person,
        ),
        prompt=prompt,
        tools_granted=decision.tools_granted,
        decision=decision.model_dump(mode="json"),
        policy_hash=engine.loaded.sha256,
        classifier={"method": "command", "confidence": 1.0, "cues": ["routines"]},
        model=ModelUse(),
        created_at=now,
        updated_at=now,
    )  # fmt: skip
    return await engine.submit_decided(record, decision, actor, prompt, Origin(actor.door))


async def set_state(engine: Engine, routine_id: int, actor: Actor, state: str) -> Routine:
    """Pause or resume (changing and deleting are jobs: propose_change); the owner or a person
    allowed to approve routines may."""
    routine = await get(engine, routine_id)
    _require(engine, routine, actor, "change")
    if routine.state == "deleted":
        raise InvalidTransition(f"{routine.routine_id} is deleted")
    if state not in ("paused", "active"):
        raise InvalidTransition(f"a routine is paused or resumed here, not made {state}")
    await routine_store.change(engine.db, routine_id, state=state)
    await engine.log(None, f"routine.{ {'active': 'resumed'}.get(state, state) }", actor.label,
                     {"routine": routine.routine_id})  # fmt: skip
    return await get(engine, routine_id)


def _managing(engine: Engine, routine: Routine, actor: Actor, verb: str) -> Any:
    from runtime.policy import decide_routine_management

    return decide_routine_management(
        engine.policy, person=actor.person, owner=routine.owner, verb=verb,
        routine=routine.routine_id,
    )  # fmt: skip


def _require(engine: Engine, routine: Routine, actor: Actor, verb: str) -> None:
    decision = _managing(engine, routine, actor, verb)
    if decision.effect != "allow":
        raise PolicyDenied(decision.reasons[0], rule_ids=decision.rule_ids)


async def sync_declared(engine: Engine) -> None:
    """Make the routines table hold the policy's declared routines (added, changed, removed)."""
    declared = {d.name: _declared_values(engine, d) for d in engine.policy.routines.declared}
    await routine_store.sync_declared(engine.db, declared)


def _declared_values(engine: Engine, item: Any) -> dict[str, Any]:
    schedule = parse_schedule(
        f"{item.schedule} tz={item.timezone} misfire={item.misfire}",
        engine.policy.routines.timezone,
    )
    reply_to = {"door": "slack", "channel": item.slack_channel} if item.slack_channel else None
    return {
        "owner": item.owner, "schedule": schedule.model_dump_json(),
        "timezone": schedule.timezone, "request": item.request, "misfire": schedule.misfire,
        "reply_to": reply_to,
    }  # fmt: skip


# --- firing -------------------------------------------------------------------------------


async def fire(
    engine: Engine, routine_id: int, due_at: datetime, instance: str, *, note: str = ""
) -> JobRecord | None:
    """Submit the routine's request for the run due at `due_at`, once; None if already done
    (another instance, a retry) or the routine is no longer active."""
    routine = await get(engine, routine_id)
    if routine.state != "active":
        return None
    due_at = due_at.astimezone(UTC)
    if not await routine_store.start_firing(
        engine.db, routine_id, due_at, fired_at=utcnow(), instance=instance, note=note
    ):
        return None  # this run was fired already
    return await _submit_firing(engine, routine, due_at, instance, note)


async def _submit_firing(
    engine: Engine, routine: Routine, due_at: datetime, instance: str, note: str
) -> JobRecord | None:
    """Submit the firing whose row says `firing` and record how it ended. The request key
    makes this safe to repeat after a crash between the row and the job."""
    from runtime.identity import Actor

    actor = Actor(person=routine.owner, door="schedule", identity=routine.routine_id)  # type: ignore[arg-type]
    key = f"routine:{routine.routine_id}:{due_at.isoformat()}"
    try:
        job = await engine.submit(
            routine.request, actor, Origin.schedule, request_key=key, reply_to=routine.reply_to
        )
        outcome = "denied" if job.state is JobState.denied else "submitted"
        detail = "; ".join(job.decision.get("reasons", [])) if outcome == "denied" else note
    except BadRequest as error:  # the request no longer parses under the current policy
        job, outcome, detail = None, "refused", error.message
    except Exception as error:  # recorded, never left half-fired; the next firing still runs
        log.exception("firing %s due %s failed", routine.routine_id, due_at)
        job, outcome, detail = None, "failed", f"could not submit: {type(error).__name__}: {error}"
    await routine_store.settle_firing(
        engine.db, routine.id, due_at, outcome=outcome, job_id=job.id if job else None,
        detail=detail[:2000],
    )  # fmt: skip
    if job is not None:
        await engine.log(job.id, "routine.fired", f"routine:{routine.routine_id}",
                         {"routine": routine.routine_id, "due_at": due_at.isoformat(),
                          "outcome": outcome, "instance": instance, "note": note})  # fmt: skip
    return job


async def finish_interrupted_firings(engine: Engine, instance: str) -> int:
    """Firings left at `firing` by an instance that died between the row and the job: submitted
    now under the same request key (so a job that was made is not made twice)."""
    finished = 0
    for firing in await routine_store.interrupted_firings(engine.db):
        try:
            routine = await get(engine, firing.routine_id)
        except UnknownJob:
            continue
        await _submit_firing(engine, routine, firing.due_at, instance, firing.detail or "")
        finished += 1
    return finished


async def record_missed(
    engine: Engine, routine_id: int, due_at: list[datetime], instance: str, detail: str
) -> int:
    """Runs that will not run (misfire rules): each recorded once, in one transaction; a due
    time another instance already settled is left as it is. Returns how many were new."""
    if not due_at:
        return 0
    wanted = sorted({at.astimezone(UTC) for at in due_at})
    return await routine_store.add_missed(
        engine.db, routine_id, wanted, instance=instance, detail=detail
    )


# --- the scheduler (one instance at a time) -----------------------------------------------


class RoutineScheduler:
    """Holds the scheduler lease while alive; the holder runs APScheduler over the routines.

    APScheduler keeps its jobs in its SQLAlchemy job store on the project's database, so the
    next instance to take the lease starts from the same next-run times and applies each
    routine's misfire rule to what was missed while nobody held it.
    """

    def __init__(
        self, engine: Engine, *, lease_s: float = 6.0, tick_s: float = 1.0, instance: str = ""
    ) -> None:
        self.engine = engine
        self.lease_s = lease_s
        self.tick_s = tick_s
        self.instance = instance or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.scheduler: Any = None
        self.leader = False
        self._tasks: set[asyncio.Task] = set()
        self._declared_under: str | None = None  # the policy the declared routines follow

    # --- the lease ------------------------------------------------------------------------

    async def _take_lease(self) -> bool:
        return await lease_store.take(self.engine.db, LEASE, self.instance, seconds=self.lease_s)

    async def _release_lease(self) -> None:
        await lease_store.release(self.engine.db, LEASE, self.instance)

    # --- running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._sync_declared()
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:  # the loop outlives a database hiccup; the lease lapses
                    log.exception("routine scheduler tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_s)
        finally:
            await self.stop()

    async def _sync_declared(self) -> None:
        """The policy's declared routines, again whenever a new policy is in force."""
        await self.engine.policies.follow()
        if self._declared_under != self.engine.loaded.sha256:
            await sync_declared(self.engine)
            self._declared_under = self.engine.loaded.sha256

    async def tick(self) -> None:
        await self._sync_declared()
        leader = await self._take_lease()
        if leader and not self.leader:
            log.info("%s holds the scheduler lease; starting the scheduler", self.instance)
            await self._start_scheduler()
        elif not leader and self.leader:
            log.warning("%s lost the scheduler lease; stopping its scheduler", self.instance)
            self._stop_scheduler()
        self.leader = leader
        if leader:
            await self._sync_jobs()

    async def stop(self) -> None:
        self._stop_scheduler()
        await asyncio.sleep(0.05)  # events the scheduler's thread handed over just before
        if self.leader:
            with contextlib.suppress(Exception):
                await self._release_lease()
        self.leader = False
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task

    def _store_url(self) -> str:
        url = self.engine.settings.database_url
        return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")

    async def _start_scheduler(self) -> None:
        """APScheduler runs in its own thread (BackgroundScheduler): its job store is
        synchronous, and on SQLite a blocking write from this event loop would wait for a
        lock held by one of this loop's own transactions. Its events come back to the loop.

        APScheduler only says which runs are due: it never coalesces and never drops a late
        run itself (every routine's job has coalesce off and no misfire grace), so each due
        time reaches `_on_due` and ends as exactly one firing, denial or missed record."""
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        loop = asyncio.get_running_loop()
        store = SQLAlchemyJobStore(url=self._store_url(), tablename="apscheduler_jobs")
        scheduler = BackgroundScheduler(jobstores={"default": store}, timezone=UTC)
        scheduler.add_listener(
            lambda event: loop.call_soon_threadsafe(self._on_event, event),
            # MAX_INSTANCES: due times APScheduler did not hand to its executor are still due.
            EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES,
        )
        self.scheduler = scheduler
        # Started paused: the stored jobs (and their next run times) are loaded first, so the
        # sync below keeps them, and what came due during the downtime meets its misfire rule.
        await asyncio.to_thread(scheduler.start, paused=True)
        await finish_interrupted_firings(self.engine, self.instance)
        await self._sync_jobs()
        await asyncio.to_thread(scheduler.resume)

    def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            with contextlib.suppress(Exception):
                self.scheduler.shutdown(wait=False)
            self.scheduler = None

    async def _sync_jobs(self) -> None:
        """APScheduler's jobs follow the routines table: added, rescheduled, removed."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        active = {r.id: r for r in await routines(self.engine) if r.state == "active"}
        await asyncio.to_thread(_apply_routines, scheduler, active)

    def _on_event(self, event: Any) -> None:
        """On the event loop (handed over from the scheduler's thread): runs are due."""
        routine_id = int(event.job_id.removeprefix("routine-"))
        task = asyncio.ensure_future(self._on_due(routine_id, list(event.scheduled_run_times)))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _on_due(self, routine_id: int, due: list[datetime]) -> None:
        """Every due time APScheduler handed over ends as one record, by the misfire rule:
        skip fires the runs within the grace and records the later ones missed; run_once
        fires the last and records the ones before it as coalesced into it."""
        try:
            routine = await get(self.engine, routine_id)
        except UnknownJob:
            return
        due = sorted(at.astimezone(UTC) for at in due)
        if not due or routine.state != "active":
            return
        grace = timedelta(seconds=self.engine.policy.routines.misfire_grace_s)
        now = utcnow()
        if routine.schedule.misfire == "run_once":
            last, earlier = due[-1], due[:-1]
            await record_missed(
                self.engine, routine_id, earlier, self.instance,
                f"coalesced into the run due at {last:%Y-%m-%d %H:%M:%S} UTC; misfire rule: "
                "run_once",
            )  # fmt: skip
            note = ""
            if earlier or now - last > grace:
                note = (
                    f"due since {due[0]:%Y-%m-%d %H:%M:%S} UTC while no scheduler ran; misfire "
                    "rule run_once: the missed runs were coalesced into this one"
                )
            await fire(self.engine, routine_id, last, self.instance, note=note)
            return
        late = [at for at in due if now - at > grace]
        await record_missed(
            self.engine, routine_id, late, self.instance,
            f"not run: it came due while no scheduler ran (or it fell behind) and was more "
            f"than the misfire grace of {grace.total_seconds():.0f} s late; misfire rule: skip",
        )  # fmt: skip
        for at in due:
            if now - at <= grace:
                await fire(self.engine, routine_id, at, self.instance)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("routine firing failed", exc_info=task.exception())


def _apply_routines(scheduler: Any, active: dict[int, Routine]) -> None:
    """In a thread (the job store is synchronous): make the scheduler's jobs match `active`."""
    jobs = {job.id: job for job in scheduler.get_jobs()}
    for job_id, job in jobs.items():
        # Jobs stored by an earlier release let APScheduler coalesce or drop late runs; the
        # change keeps their next run time, so runs missed meanwhile still come to the listener.
        if job.coalesce or job.misfire_grace_time is not None:
            scheduler.modify_job(job_id, coalesce=False, misfire_grace_time=None,
                                 max_instances=1000)  # fmt: skip
    for job_id, job in list(jobs.items()):
        routine = active.get(int(job_id.removeprefix("routine-")))
        if routine is None or job.kwargs.get("schedule") != routine.schedule.model_dump():
            scheduler.remove_job(job_id)
            del jobs[job_id]
    for routine in active.values():
        job_id = f"routine-{routine.id}"
        if job_id in jobs:
            continue
        scheduler.add_job(
            "runtime.routines:_tick", routine.schedule.trigger(), id=job_id,
            kwargs={"routine_id": routine.id, "schedule": routine.schedule.model_dump()},
            # Every due time comes to the listener, which applies the misfire rule itself.
            coalesce=False, max_instances=1000, misfire_grace_time=None,
        )  # fmt: skip


def _tick(routine_id: int, schedule: dict[str, Any]) -> None:
    """APScheduler's job function; the work happens in the SUBMITTED listener, which knows the
    due time(s). Kept trivial and importable by reference for the persistent job store."""


async def run_now(engine: Engine, routine_id: int, actor: Actor) -> JobRecord | None:
    """Fire a routine once, now, through the same path (recorded as a manual firing)."""
    routine = await get(engine, routine_id)
    _require(engine, routine, actor, "run")
    if routine.state != "active":
        raise InvalidTransition(f"{routine.routine_id} is {routine.state}; resume it first")
    return await fire(engine, routine_id, utcnow(), f"manual:{actor.person}",
                      note=f"run now by {actor.person}")  # fmt: skip
