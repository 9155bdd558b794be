"""The job state machine: the one facade every front door calls.

Submit, answer, approve, reject, rollback and read jobs. Every state change is written in the
same transaction as its audit event. Front doors pass identities; the engine asks the policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime import audit
from runtime.approvals import ApprovalGates, pending_hash
from runtime.audit import ArtifactStore, AuditEvent, NewEvent, VerifyReport
from runtime.errors import (
    AcpError,
    AlreadyDecided,
    ApprovalMismatch,
    BadRequest,
    InvalidTransition,
    PolicyDenied,
    UnknownJob,
    UnknownPerson,
    UnknownTarget,
)
from runtime.intake import ParsedRequest, parse_request
from runtime.jobs import (
    TRANSITIONS,
    ArtifactRef,
    Clarification,
    JobRecord,
    JobSpec,
    JobState,
    JobType,
    ModelUse,
    Origin,
    PendingAction,
    Phase,
    RunGate,
    format_job_id,
)
from runtime.kinds import registry
from runtime.kinds.base import (
    Failed,
    JobContext,
    NeedsAnswer,
    NeedsApproval,
    Outcome,
    Succeeded,
)
from runtime.policy import (
    Decision,
    Door,
    LoadedPolicy,
    RequestFacts,
    decide,
    decide_routine,
    load_policy,
)
from runtime.recorder import JobRecorder, log_event
from runtime.settings import Settings
from runtime.store import job_store, migrate, outbox, worker_store
from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.untrusted import escape_text, has_lone_surrogate

T = TypeVar("T")

LIVE_WORKER_SECONDS = 15.0
ENDED_UNPUBLISHED = frozenset(
    {JobState.failed, JobState.cancelled, JobState.denied, JobState.rejected}
)


@dataclass(frozen=True)
class Actor:
    """A person from the policy, and the door and identity they came through."""

    person: str
    door: Door
    identity: str

    @property
    def label(self) -> str:
        return f"{self.person} ({self.door}:{self.identity})"


class PolicyCheck(BaseModel):
    """What would happen to a request; `acp policy check` prints it and runs nothing."""

    person: str
    parsed: dict[str, Any]
    decision: Decision
    policy_hash: str


def _merged(existing: list[ArtifactRef], new: list[ArtifactRef]) -> list[ArtifactRef]:
    """The job's artifacts and a pass's new ones, each once, in the order they were made."""
    seen = {(a.name, a.sha256) for a in existing}
    out = list(existing)
    for ref in new:
        if (ref.name, ref.sha256) not in seen:
            seen.add((ref.name, ref.sha256))
            out.append(ref)
    return out


def _refuse_unencodable(text: str, what: str) -> None:
    """A request or an answer with a lone surrogate (invalid UTF-8 from a terminal, "\\ud800"
    in JSON) cannot be stored or run as sent; say so rather than change it silently."""
    if has_lone_surrogate(text):
        at = next(i for i, c in enumerate(text) if has_lone_surrogate(c))
        raise BadRequest(
            f"the {what} is not valid text: character {at + 1} "
            f"({escape_text(text[at])}) is a lone surrogate, which UTF-8 cannot carry",
            hint="send the text as UTF-8; a terminal with a non-UTF-8 locale can cause this",
        )


def request_digest(text: str) -> dict[str, Any]:
    """How refusals refer to a request: its hash and size, never a 100 KB copy of it."""
    return {"sha256": hashlib.sha256(text.encode(errors="replace")).hexdigest(), "chars": len(text)}


class Engine(ApprovalGates):
    """The runtime's facade. Create with `await Engine.open(settings)`."""

    def __init__(self, settings: Settings, db: Database, policy: LoadedPolicy) -> None:
        self.settings = settings
        self.db = db
        self.loaded = policy
        self.artifacts = ArtifactStore(settings.artifacts_dir)
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
        loaded = load_policy(settings.policy_dir)
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        try:
            changed = await migrate.prepare(db, may_upgrade=upgrade, actor=actor)
        except BaseException:
            await db.close()
            raise
        engine = cls(settings, db, loaded)
        engine.schema_found = changed
        return engine

    async def close(self) -> None:
        await self.db.close()

    @property
    def policy(self):
        return self.loaded.policy

    # --- identity --------------------------------------------------------

    def actor(self, door: Door, identity: str) -> Actor:
        person = self.policy.person_for(door, identity)
        if person is None:
            known = ", ".join(sorted(self.policy.people)) or "nobody"
            raise UnknownPerson(
                f"{door} identity '{identity}' is not a person in the policy",
                hint=f"people in the policy: {known} (pass --as NAME, or add the identity "
                f"under people.<name>.identities.{door})",
            )
        return Actor(person=person, door=door, identity=identity)

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

    # --- running kinds: the context a kind gets, and the outcome it returns -----------------

    def context(
        self,
        job: JobRecord,
        worker_id: str,
        *,
        phase: Phase | None = None,
        actor: str | None = None,
        keeps: bool = True,
    ) -> JobContext:
        """What a kind gets for one pass over `job`: never this Engine, nothing that writes the
        job's state. A context that does not keep (a replay) leaves the job's record alone."""
        kind = registry.kind_for(job.spec.job_type)
        targets = self.policy.targets_for(kind.job_type) if kind.target_section else {}

        async def remember(result: dict[str, Any]) -> JobRecord:
            return await self.save_progress(job.id, result=result)

        return JobContext(
            job=job,
            target=targets.get(job.spec.target or ""),
            policy=self.policy,
            settings=self.settings,
            recorder=self.recorder(job.id, actor or f"worker:{worker_id}", keeps=keeps),
            worker_id=worker_id,
            phase=phase or job.phase or Phase.execute,
            db=self.db,
            remember_fn=remember,
            toolbox_fn=_toolbox,
            model_fn=_model_client,
        )

    def approved_action(self, job: JobRecord) -> PendingAction:
        """The pending action an approval of `job` applies to; ApprovalMismatch if the action
        waiting is not exactly the one approved."""
        pending = job.pending_action
        if pending is None:
            raise ApprovalMismatch(f"{job.job_id} has no pending action to take")
        approved = next((g for g in reversed(job.approvals) if g.decision == "approved"), None)
        if approved is not None and approved.action_hash != pending_hash(pending):
            raise ApprovalMismatch(f"{job.job_id}: the approved action is not the pending one")
        return pending

    async def run_pass(self, ctx: JobContext) -> JobRecord:
        """The kind's pass for the job's phase, and its outcome applied."""
        kind = registry.kind_for(ctx.job.spec.job_type)
        if ctx.phase is Phase.execute:
            outcome = await kind.execute(ctx)
        else:
            outcome = await kind.resume(ctx, self.approved_action(ctx.job))
        return await self.apply(ctx, outcome)

    async def apply(self, ctx: JobContext, outcome: Outcome) -> JobRecord:
        """The one writer of job state after intake: move the job as the kind's outcome says.

        An action the policy does not gate is taken at once (the kind's resume), and its
        outcome applied in turn; one it gates opens an approval bound to the action's hash.
        """
        kind = registry.kind_for(ctx.job.spec.job_type)
        while isinstance(outcome, NeedsApproval) and not ctx.gated(outcome.pending.action):
            ctx.job = await self.save_progress(
                ctx.job.id,
                pending_action=outcome.pending,
                artifacts=_merged(ctx.job.artifacts, outcome.artifacts),
            )
            outcome = await kind.resume(ctx, outcome.pending)
        actor = ctx.actor

        async def body(conn: AsyncConnection, fresh: JobRecord) -> JobRecord:
            if isinstance(outcome, Succeeded | Failed):
                state = JobState.succeeded if isinstance(outcome, Succeeded) else JobState.failed
                return await self.transition(
                    conn,
                    fresh,
                    state,
                    actor=actor,
                    kind=outcome.event,
                    data={"reason": outcome.reason, **outcome.result},
                    result={**fresh.result, "reason": outcome.reason, **outcome.result},
                    artifacts=_merged(fresh.artifacts, outcome.artifacts),
                )
            if isinstance(outcome, NeedsAnswer):
                return await self.transition(
                    conn,
                    fresh,
                    JobState.needs_clarification,
                    actor=actor,
                    kind="job.clarification_requested",
                    data={"question": outcome.question, "options": [], "by": "model"},
                    clarification=Clarification(question=outcome.question, field="agent"),
                    artifacts=_merged(fresh.artifacts, outcome.artifacts),
                )
            pending = outcome.pending
            gate = self.new_gate(fresh, ctx.gated(pending.action) or "publish", pending)
            return await self.transition(
                conn,
                fresh,
                JobState.awaiting_approval,
                actor=actor,
                kind="approval.requested",
                data={
                    "action": gate.action,
                    "action_hash": gate.action_hash,
                    "pending": pending.canonical(),
                    "approvers": gate.approvers,
                    "four_eyes": gate.four_eyes,
                    "expires_at": gate.expires_at.isoformat() if gate.expires_at else None,
                    "reason": outcome.reason,
                },
                event_artifacts=outcome.event_artifacts,
                pending_action=pending,
                approvals=[*fresh.approvals, gate],
                artifacts=_merged(fresh.artifacts, outcome.artifacts),
            )

        ctx.job = await self.locked(ctx.job.id, body)
        return ctx.job

    # --- reading -----------------------------------------------------------

    async def get(self, job_id: int) -> JobRecord:
        async with self.db.engine.connect() as conn:
            return await job_store.load_job(conn, job_id)

    async def jobs(
        self, *, requester: str | None = None, states: list[str] | None = None, limit: int = 50
    ) -> list[JobRecord]:
        async with self.db.engine.connect() as conn:
            return await job_store.list_jobs(conn, requester=requester, states=states, limit=limit)

    async def events(self, job_id: int | None = None) -> list[AuditEvent]:
        if job_id is not None:
            await self.get(job_id)
        return await audit.events_for(self.db, job_id)

    async def verify_audit(self) -> VerifyReport:
        return await audit.verify(self.db, self.artifacts)

    async def worker_registered(self, worker_id: str) -> bool:
        """Whether the worker with this identity has registered (and not yet left)."""
        return await worker_store.is_registered(self.db, worker_id)

    async def live_workers(self) -> int:
        cutoff = utcnow() - timedelta(seconds=LIVE_WORKER_SECONDS)
        return sum(1 for at in await worker_store.heartbeats(self.db) if at >= cutoff)

    # --- deciding ----------------------------------------------------------

    def _facts(self, person: str, parsed: ParsedRequest, origin: Origin) -> RequestFacts:
        explicit = bool(parsed.commands)
        if parsed.job_type is not None:
            kind = registry.kind_for(parsed.job_type)
            explicit = kind.has_explicit_steps(parsed.instruction, parsed.commands)
        return RequestFacts(
            person=person,
            job_type=parsed.job_type,
            target=parsed.target,
            origin=origin,
            confidence=parsed.confidence,
            has_explicit_steps=explicit,
        )

    def _decide(self, person: str, parsed: ParsedRequest, origin: Origin) -> Decision:
        facts = self._facts(person, parsed, origin)
        if parsed.schedule:  # a routine: may this person run the request, and who reviews it
            return decide_routine(self.policy, facts)
        return decide(self.policy, facts)

    def _spec(
        self, person: str, parsed: ParsedRequest, origin: Origin, decision: Decision
    ) -> JobSpec:
        common = {
            "target": parsed.target,
            "tools": decision.tools_granted,
            "approval_required_for": decision.approval_required_for,
            "schedule": parsed.schedule,
            "origin": origin,
            "requester": person,
        }
        if parsed.schedule:  # a routine: the kind that schedules requests holds it
            routine = registry.kind_for(JobType.schedule)
            return JobSpec(
                job_type=routine.job_type,
                instruction=parsed.scheduled_request or parsed.instruction,
                artifact_contract=routine.artifact_contract,
                **common,
            )
        if parsed.job_type is None:  # asked what kind of job it is; a code job until answered
            return JobSpec(
                job_type=JobType.code, instruction=parsed.instruction, commands=parsed.commands,
                **common,
            )  # fmt: skip
        kind = registry.kind_for(parsed.job_type)
        target = self.policy.targets_for(kind.job_type).get(parsed.target or "")
        return JobSpec(
            job_type=kind.job_type,
            instruction=parsed.instruction,
            artifact_contract=kind.artifact_contract,
            commands=parsed.commands,
            **(kind.spec_scopes(target) if target is not None else {}),
            **common,
        )

    def check(self, text: str, actor: Actor, origin: Origin = Origin.cli) -> PolicyCheck:
        """Parse and decide without writing anything."""
        parsed = parse_request(text, self.policy)
        decision = self._decide(actor.person, parsed, origin)
        return PolicyCheck(
            person=actor.person,
            parsed=parsed.model_dump(mode="json"),
            decision=decision,
            policy_hash=self.loaded.sha256,
        )

    # --- submit and answer -------------------------------------------------

    async def submit(
        self,
        text: str,
        actor: Actor,
        origin: Origin = Origin.cli,
        *,
        request_key: str | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> JobRecord:
        """Turn a request into a job and decide it. The same request_key never makes two jobs."""
        if request_key:
            async with self.db.engine.connect() as conn:
                existing = await job_store.job_for_request(conn, request_key)
            if existing:
                return existing
        try:
            _refuse_unencodable(text, "request")
            parsed = parse_request(text, self.policy)
        except BadRequest as error:
            await self.record_refusal(
                "request.refused", actor.label, error, request=request_digest(text or "")
            )
            raise
        decision = self._decide(actor.person, parsed, origin)
        now = utcnow()
        job_type_known = parsed.job_type is not None
        record = JobRecord(
            id=0,
            state=JobState.received,
            spec=self._spec(actor.person, parsed, origin, decision),
            prompt=text,
            tools_granted=decision.tools_granted,
            decision=decision.model_dump(mode="json"),
            policy_hash=self.loaded.sha256,
            classifier={
                "method": parsed.method,
                "confidence": parsed.confidence,
                "cues": parsed.cues,
                "job_type_known": job_type_known,
            },
            model=ModelUse(model=decision.model or "direct", route_rule=decision.model_rule),
            reply_to=reply_to,
            created_at=now,
            updated_at=now,
        )
        try:
            return await self._insert_and_decide(record, decision, actor, text, origin, request_key)
        except IntegrityError:
            # The same request arrived twice at once (a door's retry); the first one won.
            async with self.db.engine.connect() as conn:
                existing = await job_store.job_for_request(conn, request_key or "")
            if existing is None:
                raise
            return existing

    async def submit_decided(
        self, record: JobRecord, decision: Decision, actor: Actor, text: str, origin: Origin
    ) -> JobRecord:
        """Record a job a runtime module built and decided itself (a routine change), with
        the same events, state and outbox as a submitted request."""
        return await self._insert_and_decide(record, decision, actor, text, origin, None)

    async def _insert_and_decide(
        self,
        record: JobRecord,
        decision: Decision,
        actor: Actor,
        text: str,
        origin: Origin,
        request_key: str | None,
    ) -> JobRecord:
        async with self.db.begin() as conn:
            # A routine's owner may have left the policy: the job is still recorded (denied).
            person = self.policy.people.get(actor.person)
            team = person.team if person else None
            job = await job_store.insert_job(conn, record, request_key, team)
            await self._event(
                conn,
                "job.received",
                actor.label,
                job.id,
                {
                    "prompt": text,
                    "origin": origin.value,
                    "spec": job.spec.model_dump(mode="json"),
                    "classifier": job.classifier,
                    "policy_hash": self.loaded.sha256,
                },
            )
            job = await self._apply_decision(conn, job, decision, actor.label)
        return job

    async def _apply_decision(
        self, conn: AsyncConnection, job: JobRecord, decision: Decision, actor: str
    ) -> JobRecord:
        data = {
            "effect": decision.effect,
            "reasons": decision.reasons,
            "rule_ids": decision.rule_ids,
            "tools_granted": decision.tools_granted,
            "approval_required_for": decision.approval_required_for,
            "model": decision.model,
            "model_rule": decision.model_rule,
            "policy_hash": self.loaded.sha256,
        }
        if decision.effect == "deny":
            return await self.transition(
                conn,
                job,
                JobState.denied,
                actor="policy",
                kind="policy.denied",
                data=data,
                result={"reason": "; ".join(decision.reasons)},
            )
        if decision.effect == "needs_clarification":
            question = Clarification(
                question=decision.question or "Please clarify the request.",
                options=decision.options,
                field=decision.clarify_field or "confirm",
            )
            return await self.transition(
                conn,
                job,
                JobState.needs_clarification,
                actor="policy",
                kind="job.clarification_requested",
                data={**data, "question": question.question, "options": question.options},
                clarification=question,
            )
        if "run" in decision.approval_required_for:
            # The policy wants a person to agree before this job runs at all.
            pending = RunGate(
                job_type=job.spec.job_type.value,
                target=job.spec.target,
                instruction=job.spec.instruction,
                commands=job.spec.commands,
            )
            decided = job.model_copy(update={"decision": decision.model_dump(mode="json")})
            gate = self.new_gate(decided, "run", pending)
            return await self.transition(
                conn,
                job,
                JobState.awaiting_approval,
                actor="policy",
                kind="approval.requested",
                data={
                    **data,
                    "action": "run",
                    "action_hash": gate.action_hash,
                    "pending": pending.canonical(),
                    "approvers": gate.approvers,
                },
                clarification=None,
                pending_action=pending,
                approvals=[*job.approvals, gate],
            )
        return await self.transition(
            conn,
            job,
            JobState.queued,
            actor="policy",
            kind="job.queued",
            data=data,
            clarification=None,
        )

    async def answer(self, job_id: int, actor: Actor, answer: str) -> JobRecord:
        async def body(conn: AsyncConnection, job: JobRecord) -> JobRecord:
            if job.state is not JobState.needs_clarification or job.clarification is None:
                raise AlreadyDecided(
                    f"{job.job_id} is {job.state.value} and is not waiting for an answer; "
                    "nothing changed"
                )
            if actor.person != job.spec.requester:
                raise PolicyDenied(
                    f"only {job.spec.requester}, who requested {job.job_id}, "
                    "may answer its question",
                    rule_ids=["clarification.requester_only"],
                )
            if job.clarification.field == "agent":
                return await self._answer_model(conn, job, actor, answer.strip())
            parsed = self._parsed_with_answer(job, answer.strip())
            decision = self._decide(job.spec.requester, parsed, job.spec.origin)
            spec = self._spec(job.spec.requester, parsed, job.spec.origin, decision)
            await self._event(
                conn,
                "job.answered",
                actor.label,
                job.id,
                {"field": job.clarification.field, "answer": answer.strip()},
            )
            updated = job.model_copy(
                update={
                    "spec": spec,
                    "tools_granted": decision.tools_granted,
                    "decision": decision.model_dump(mode="json"),
                    "policy_hash": self.loaded.sha256,
                    "model": ModelUse(
                        model=decision.model or "direct", route_rule=decision.model_rule
                    ),
                }
            )
            return await self._apply_decision(conn, updated, decision, actor.label)

        try:
            _refuse_unencodable(answer, "answer")
            return await self.locked(job_id, body)
        except (BadRequest, PolicyDenied, UnknownJob) as error:
            await self.record_refusal("answer.refused", actor.label, error, job_id=job_id)
            raise

    async def _answer_model(
        self, conn: AsyncConnection, job: JobRecord, actor: Actor, answer: str
    ) -> JobRecord:
        """The model asked; the answer joins the conversation and the job runs again."""
        assert job.clarification is not None
        if not answer:
            raise BadRequest("the answer is empty", hint=job.clarification.question)
        qa = {"question": job.clarification.question, "answer": answer}
        await self._event(conn, "job.answered", actor.label, job.id, {"field": "agent", **qa})
        return await self.transition(
            conn,
            job,
            JobState.queued,
            actor=actor.label,
            kind="job.queued",
            data={"reason": "answered the model's question"},
            clarification=None,
            result={**job.result, "answers": [*job.result.get("answers", []), qa]},
        )

    def _parsed_with_answer(self, job: JobRecord, answer: str) -> ParsedRequest:
        assert job.clarification is not None
        spec = job.spec
        known_type = job.classifier.get("job_type_known", True)
        parsed = ParsedRequest(
            job_type=spec.job_type if known_type else None,
            target=spec.target,
            instruction=spec.instruction,
            commands=spec.commands,
            schedule=spec.schedule,
            confidence=1.0,
            method="grammar",
            cues=["answer"],
        )
        field = job.clarification.field
        if not answer:
            raise BadRequest("the answer is empty", hint=job.clarification.question)
        if field == "job_type":
            chosen = registry.by_alias(answer)
            if chosen is None or not chosen.requestable:
                options = ", ".join(job.clarification.options)
                raise BadRequest(f"'{answer}' is not a job type", hint=f"answer one of: {options}")
            return parsed.model_copy(update={"job_type": chosen.job_type})
        if field == "target":
            job_type = parsed.job_type or JobType.code
            if answer not in self.policy.targets_for(job_type):
                names = ", ".join(sorted(self.policy.targets_for(job_type)))
                raise UnknownTarget(
                    f"unknown {job_type.value} target '{answer}'",
                    hint=f"known {job_type.value} targets: {names}",
                )
            return parsed.model_copy(update={"target": answer})
        if field == "commands":
            kind = registry.kind_for(parsed.job_type or JobType.code)
            return parsed.model_copy(update=kind.answer(answer, self.policy, parsed.target))
        return parsed

    # --- rollback --------------------------------------------------------------

    async def rollback(self, job_id: int, actor: Actor) -> JobRecord:
        job = await self.get(job_id)
        kind = registry.kind_for(job.spec.job_type)
        if job.state is not JobState.succeeded or not kind.rollbackable(job):
            raise InvalidTransition(
                f"{job.job_id} is {job.state.value} and has no published change to roll back"
            )
        allowed = {job.spec.requester, *(p for g in job.approvals for p in g.approvers)}
        if actor.person not in allowed:
            error = PolicyDenied(
                f"{actor.person} may not roll back {job.job_id}; "
                "the requester and its approvers may",
                rule_ids=["rollback.not_allowed"],
            )
            await self.record_refusal("rollback.refused", actor.label, error, job_id=job_id)
            raise error
        undone = await kind.rollback(self.context(job, "rollback", actor=actor.label))

        async def body(conn: AsyncConnection, fresh: JobRecord) -> JobRecord:
            return await self.transition(
                conn,
                fresh,
                JobState.rolled_back,
                actor=actor.label,
                kind="publish.rolled_back",
                data={"reverted": fresh.result.get("published_commit"), **undone},
                result={**fresh.result, **undone},
            )

        return await self.locked(job_id, body)

    async def replay(self, job_id: int, *, on_base: str | None = None) -> Any:
        """Re-run a model job with its recorded model responses; the report is logged."""
        job = await self.get(job_id)
        kind = registry.kind_for(job.spec.job_type)
        replay = getattr(kind, "replay", None)
        if replay is None:
            able = " and ".join(k.job_type for k in registry.kinds() if hasattr(k, "replay"))
            raise InvalidTransition(
                f"{job.job_id} is a {job.spec.job_type.value} job; replay re-runs the model loop "
                f"of {able} jobs in a worktree and compares their diffs"
            )
        report = await replay(self.context(job, "replay", actor="replay", keeps=False),
                              on_base=on_base)  # fmt: skip
        await self.log(
            job.id, "replay.finished", "replay", report.model_dump(exclude={"difference"})
        )
        return report


def _toolbox(ctx: JobContext, workspace: Any, **options: Any) -> Any:
    from runtime.toolbox import Toolbox

    tools = registry.kind_for(ctx.job.spec.job_type).toolset()
    return Toolbox(
        ctx.recorder, ctx.job, workspace, ctx.limits, tools, target=ctx.target, **options
    )


def _model_client(ctx: JobContext, **options: Any) -> Any:
    from runtime.models import ModelClient

    return ModelClient(ctx.recorder, ctx.policy, ctx.job, **options)
