"""The job state machine: the one facade every front door calls.

Submit and answer (runtime.submission), approve and reject (runtime.approvals), run a kind and
apply its outcome, roll back and replay (runtime.outcomes), and read jobs. Every state change
is written here (transition), in the same transaction as its audit event. Front doors pass
identities; the engine asks the policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from runtime import audit
from runtime.approvals import ApprovalGates
from runtime.audit import ArtifactStore, AuditEvent, NewEvent, VerifyReport
from runtime.errors import (
    AcpError,
    InvalidTransition,
    PolicyDenied,
    PolicyFileError,
    UnknownJob,
    UnknownPerson,
)
from runtime.identity import Actor
from runtime.jobs import (
    TRANSITIONS,
    JobRecord,
    JobState,
    format_job_id,
)
from runtime.outcomes import Outcomes
from runtime.policy import (
    Door,
    LoadedPolicy,
    load_policy,
)
from runtime.policy_live import PolicyInForce, in_force_policy
from runtime.recorder import JobRecorder, log_event
from runtime.redecision import Redecisions
from runtime.settings import Settings
from runtime.store import job_store, migrate, outbox, worker_store
from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.submission import Submissions

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

LIVE_WORKER_SECONDS = 15.0
ENDED_UNPUBLISHED = frozenset(
    {JobState.failed, JobState.cancelled, JobState.denied, JobState.rejected}
)


class Engine(Submissions, Outcomes, ApprovalGates, Redecisions):
    """The runtime's facade. Create with `await Engine.open(settings)`."""

    def __init__(self, settings: Settings, db: Database, policy: LoadedPolicy) -> None:
        self.settings = settings
        self.db = db
        self.artifacts = ArtifactStore(settings.artifacts_dir)
        # The policy in force (reloaded by the service, followed by workers); an operation
        # pins the version it started under (runtime.policy_live).
        self.policies = PolicyInForce(settings, db, self.artifacts, policy)
        # What open() found when it created or upgraded the schema (None: already current).
        self.schema_found: migrate.SchemaStatus | None = None

    @classmethod
    async def open(
        cls, settings: Settings | None = None, *, upgrade: bool = False, actor: str = "acp"
    ) -> Engine:
        """Load the policy and open the database at this code's schema.

        An empty database gets the schema. One that is behind is upgraded only when `upgrade`
        (`acp serve`); otherwise SchemaOutOfDate. One from a newer release: SchemaFromTheFuture.
        """
        settings = settings or Settings.from_env()
        folder_error: PolicyFileError | None = None
        try:
            loaded: LoadedPolicy | None = load_policy(settings.policy_dir)
        except PolicyFileError as error:
            if upgrade:
                raise  # the service starts only on a policy folder it can read
            loaded, folder_error = None, error
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        try:
            changed = await migrate.prepare(db, may_upgrade=upgrade, actor=actor)
            if loaded is None:
                # A worker (re)started while the folder holds a policy the service refused:
                # it works under the policy in force, as the service does.
                loaded = await in_force_policy(settings, db)
                if loaded is None:
                    assert folder_error is not None
                    raise folder_error
        except BaseException:
            await db.close()
            raise
        engine = cls(settings, db, loaded)
        engine.schema_found = changed
        try:
            # The service (the one that may upgrade) records the policy it loaded; any other
            # process adopts the one in force.
            await engine.policies.start(record=upgrade, actor=actor)
        except BaseException:
            await db.close()
            raise
        return engine

    async def close(self) -> None:
        await self.db.close()

    @property
    def loaded(self) -> LoadedPolicy:
        """The policy this operation acts under: the one it pinned, else the one in force."""
        return self.policies.loaded

    @property
    def policy(self):
        return self.loaded.policy

    # --- identity --------------------------------------------------------

    def actor(self, door: Door, identity: str, via: str = "") -> Actor:
        """A door's identity as a person of the policy; `via` says how the door authenticated
        it (runtime.identity builds those for the service API's doors)."""
        person = self.policy.person_for(door, identity)
        if person is None:
            known = ", ".join(sorted(self.policy.people)) or "nobody"
            raise UnknownPerson(
                f"{door} identity '{identity}' is not a person in the policy",
                hint=f"people in the policy: {known} (pass --as NAME, or add the identity "
                f"under people.<name>.identities.{door})",
            )
        return Actor(person=person, door=door, identity=identity, via=via)

    # --- transactions and events -----------------------------------------

    async def _event(
        self,
        conn: AsyncConnection,
        kind: str,
        actor: str,
        job_id: int | None = None,
        data: dict[str, Any] | None = None,
        artifacts: tuple[str, ...] = (),
    ) -> AuditEvent:
        return await audit.append(conn, self.db, NewEvent(kind, actor, job_id, data, artifacts))

    async def record_refusal(
        self, kind: str, actor: str, error: AcpError, job_id: int | None = None, **data: Any
    ) -> None:
        """A refusal leaves one audit event and nothing else."""
        payload = {"error": type(error).__name__, "message": error.message, **data}
        if isinstance(error, PolicyDenied):
            payload["rule_ids"] = error.rule_ids
        if job_id is not None:
            payload["job"] = format_job_id(job_id)
        if isinstance(error, UnknownJob):
            job_id = None  # the event must not point at a job that does not exist
        async with self.db.begin() as conn:
            await self._event(conn, kind, actor, job_id, payload)

    async def transition(
        self,
        conn: AsyncConnection,
        job: JobRecord,
        to: JobState,
        *,
        actor: str,
        kind: str,
        data: dict[str, Any] | None = None,
        event_artifacts: tuple[str, ...] = (),
        worker_id: str | None = None,
        **changes: Any,
    ) -> JobRecord:
        if to not in TRANSITIONS.get(job.state, frozenset()):
            raise InvalidTransition(
                f"{job.job_id} is {job.state.value}; it cannot become {to.value}",
                hint=f"`acp show {job.job_id}` shows what it is waiting for",
            )
        if to in ENDED_UNPUBLISHED:
            # A job that ended without publishing has no pending action: no door may show a
            # stale "merge" for a job that stopped, failed or was cancelled.
            changes["pending_action"] = None
        updated = job.with_changes(state=to, **changes)
        saved = await job_store.save_job(
            conn, updated, expected_state=job.state, worker_id=worker_id
        )
        payload = {"from": job.state.value, "to": to.value, **(data or {})}
        event = await self._event(conn, kind, actor, job.id, payload, event_artifacts)
        if saved.reply_to:
            await outbox.enqueue(conn, saved.reply_to["door"], job.id, kind, {"seq": event.seq})
        return saved

    async def locked(
        self, job_id: int, body: Callable[[AsyncConnection, JobRecord], Awaitable[T]]
    ) -> T:
        async with self.db.begin() as conn:
            job = await job_store.load_job(conn, job_id, for_update=True)
            return await body(conn, job)

    async def log(
        self,
        job_id: int,
        kind: str,
        actor: str,
        data: dict[str, Any] | None = None,
        event_artifacts: tuple[str, ...] = (),
    ) -> AuditEvent:
        """An audit event about a job that does not change its state (a tool call, an artifact)."""
        return await log_event(self.db, job_id, kind, actor, data, event_artifacts)

    def recorder(self, job_id: int, actor: str, *, keeps: bool = True) -> JobRecorder:
        """The recorder a kind, a tool or a model client writes a job's events through."""
        return JobRecorder(self.db, self.artifacts, job_id, actor, keeps=keeps)

    async def save_progress(self, job_id: int, **changes: Any) -> JobRecord:
        """Keep fields of a job without changing its state (a kind's resume state, merged into
        its result; a pending action the policy does not gate)."""

        async def body(conn: AsyncConnection, fresh: JobRecord) -> JobRecord:
            if "result" in changes:
                changes["result"] = {**fresh.result, **changes["result"]}
            updated = fresh.with_changes(**changes)
            return await job_store.save_job(conn, updated, expected_state=fresh.state)

        return await self.locked(job_id, body)

    async def finish(
        self,
        job: JobRecord,
        state: JobState,
        actor: str,
        kind: str,
        *,
        reason: str,
        artifacts: list | None = None,
        **result: Any,
    ) -> JobRecord:
        """Move a running job to its next state with a reason a person can read."""

        async def body(conn: AsyncConnection, fresh: JobRecord) -> JobRecord:
            changes: dict[str, Any] = {"result": {**fresh.result, "reason": reason, **result}}
            if artifacts is not None:
                changes["artifacts"] = artifacts
            return await self.transition(
                conn,
                fresh,
                state,
                actor=actor,
                kind=kind,
                data={"reason": reason, **result},
                **changes,
            )

        return await self.locked(job.id, body)

    # --- cancelling ----------------------------------------------------------

    async def cancel(self, job_id: int, actor: Actor, *, reason: str = "") -> JobRecord:
        """Stop a job that is waiting (queued, for an answer, for approval): its requester or
        an approver of its pending action may. A running job ends at its time limit."""
        from runtime.errors import AlreadyDecided
        from runtime.jobs import TERMINAL_STATES

        waiting = {JobState.needs_clarification, JobState.queued, JobState.awaiting_approval}

        async def body(conn: AsyncConnection, job: JobRecord) -> JobRecord:
            if job.state in TERMINAL_STATES:
                raise AlreadyDecided(f"{job.job_id} is already {job.state.value}; nothing changed")
            if job.state not in waiting:
                raise InvalidTransition(
                    f"{job.job_id} is {job.state.value}; only a waiting job (queued, awaiting "
                    "approval or an answer) can be cancelled",
                    hint="a running job ends at its time limit (limits.job_time_limit_s)",
                )
            approvers = {p for g in job.approvals if g.decision is None for p in g.approvers}
            if actor.person != job.spec.requester and actor.person not in approvers:
                raise PolicyDenied(
                    f"{actor.person} may not cancel {job.job_id}: only its requester "
                    f"({job.spec.requester}) or an approver of its pending action may",
                    rule_ids=["cancel.requester_or_approver"],
                )
            why = f"cancelled by {actor.person}" + (f": {reason}" if reason else "")
            return await self.transition(
                conn, job, JobState.cancelled, actor=actor.label, kind="job.cancelled",
                data={"reason": why}, result={**job.result, "reason": why},
            )  # fmt: skip

        try:
            return await self.locked(job_id, body)
        except (PolicyDenied, InvalidTransition) as error:
            await self.record_refusal("cancel.refused", actor.label, error, job_id=job_id)
            raise

    # --- reading -----------------------------------------------------------

    async def get(self, job_id: int) -> JobRecord:
        async with self.db.engine.connect() as conn:
            return await job_store.load_job(conn, job_id)

    async def jobs(
        self, *, requester: str | None = None, states: list[str] | None = None, limit: int = 50
    ) -> list[JobRecord]:
        async with self.db.engine.connect() as conn:
            return await job_store.list_jobs(conn, requester=requester, states=states, limit=limit)

    async def search(self, where: job_store.JobFilter, limit: int = 50) -> list[JobRecord]:
        """Jobs matching a door's filters (the console's job list), newest first."""
        async with self.db.engine.connect() as conn:
            return await job_store.search_jobs(conn, where, limit)

    async def events(self, job_id: int | None = None) -> list[AuditEvent]:
        if job_id is not None:
            await self.get(job_id)
        return await audit.events_for(self.db, job_id)

    async def verify_audit(self) -> VerifyReport:
        """The chain, its artifacts, and every signed checkpoint this service can read."""
        return await audit.verify(
            self.db, self.artifacts, settings=self.settings, spec=self.policy.audit.checkpoints
        )

    async def worker_registered(self, worker_id: str) -> bool:
        """Whether the worker with this identity has registered (and not yet left)."""
        return await worker_store.is_registered(self.db, worker_id)

    async def live_workers(self) -> int:
        cutoff = utcnow() - timedelta(seconds=LIVE_WORKER_SECONDS)
        return sum(1 for at in await worker_store.heartbeats(self.db) if at >= cutoff)
