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
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime import audit, outbox
from runtime.approvals import ApprovalGates
from runtime.audit import ArtifactStore, AuditEvent, NewEvent, VerifyReport
from runtime.browser_steps import parse_steps
from runtime.errors import (
    AcpError,
    AlreadyDecided,
    BadRequest,
    InvalidTransition,
    PolicyDenied,
    UnknownJob,
    UnknownPerson,
    UnknownTarget,
)
from runtime.intake import (
    TYPE_ALIASES,
    ParsedRequest,
    extract_commands,
    looks_like_sql,
    parse_request,
    refuse_sql_writes,
    steps_for,
)
from runtime.jobs import (
    ARTIFACT_CONTRACTS,
    TRANSITIONS,
    Clarification,
    JobRecord,
    JobSpec,
    JobState,
    JobType,
    ModelUse,
    Origin,
    format_job_id,
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
from runtime.settings import Settings
from runtime.store import job_store, migrate
from runtime.store.database import Database
from runtime.store.job_store import utcnow
from runtime.store.models import WorkerRow
from runtime.untrusted import escape_text, has_lone_surrogate

T = TypeVar("T")

LIVE_WORKER_SECONDS = 15.0
ENDED_UNPUBLISHED = frozenset(
    {JobState.failed, JobState.cancelled, JobState.denied, JobState.rejected}
)

# Events that are not state changes but that the requester's door should still hear about.
NOTIFY_KINDS = frozenset(
    {
        "tool.shell",
        "tool.refused",
        "approval.invalidated",
        "browser.mutation_sent",
        "browser.session_closed",
    }
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


def _explicit_sql(parsed: ParsedRequest) -> bool:
    """A SQL job runs without a model when it is a statement or a standard diagnostic."""
    if parsed.job_type is not JobType.sql:
        return False
    from runtime.tools.sql import match_diagnostic

    return looks_like_sql(parsed.instruction) or match_diagnostic(parsed.instruction) is not None


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
        updated = job.model_copy(update={"state": to, **changes})
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
        async with self.db.begin() as conn:
            event = await self._event(conn, kind, actor, job_id, data, event_artifacts)
            if kind in NOTIFY_KINDS:
                reply_to = await job_store.reply_to_of(conn, job_id)
                if reply_to:
                    await outbox.enqueue(conn, reply_to["door"], job_id, kind, {"seq": event.seq})
            return event

    async def log_model_call(
        self,
        job_id: int,
        actor: str,
        data: dict[str, Any],
        event_artifacts: tuple[str, ...],
        usage: ModelUse,
    ) -> None:
        """A model call's event and the job's new usage totals, in one transaction."""
        async with self.db.begin() as conn:
            await self._event(conn, "model.call", actor, job_id, data, event_artifacts)
            await job_store.save_model_use(conn, job_id, usage.model_dump(mode="json"))

    async def team_spend_today(self, team: str | None, *, excluding: int) -> float:
        start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        async with self.db.engine.connect() as conn:
            return await job_store.team_spend_since(conn, team, start, excluding=excluding)

    async def save_progress(self, job: JobRecord, **changes: Any) -> JobRecord:
        async def body(conn: AsyncConnection, fresh: JobRecord) -> JobRecord:
            updated = fresh.model_copy(update=changes)
            return await job_store.save_job(conn, updated, expected_state=fresh.state)

        return await self.locked(job.id, body)

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
        async with self.db.engine.connect() as conn:
            found = await conn.execute(select(WorkerRow.id).where(WorkerRow.id == worker_id))
            return found.first() is not None

    async def live_workers(self) -> int:
        cutoff = utcnow() - timedelta(seconds=LIVE_WORKER_SECONDS)
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(WorkerRow.heartbeat_at))).scalars().all()
        return sum(1 for at in rows if job_store._aware(at) >= cutoff)

    # --- deciding ----------------------------------------------------------

    def _facts(self, person: str, parsed: ParsedRequest, origin: Origin) -> RequestFacts:
        return RequestFacts(
            person=person,
            job_type=parsed.job_type,
            target=parsed.target,
            origin=origin,
            confidence=parsed.confidence,
            has_explicit_steps=bool(parsed.commands) or _explicit_sql(parsed),
        )

    def _decide(self, person: str, parsed: ParsedRequest, origin: Origin) -> Decision:
        facts = self._facts(person, parsed, origin)
        if parsed.schedule:  # a routine: may this person run the request, and who reviews it
            return decide_routine(self.policy, facts)
        return decide(self.policy, facts)

    def _spec(
        self, person: str, parsed: ParsedRequest, origin: Origin, decision: Decision
    ) -> JobSpec:
        if parsed.schedule:
            return JobSpec(
                job_type=JobType.schedule,
                target=parsed.target,
                instruction=parsed.scheduled_request or parsed.instruction,
                tools=decision.tools_granted,
                approval_required_for=decision.approval_required_for,
                artifact_contract=ARTIFACT_CONTRACTS[JobType.schedule],
                schedule=parsed.schedule,
                origin=origin,
                requester=person,
            )
        job_type = parsed.job_type
        site = (
            self.policy.targets.sites.get(parsed.target or "")
            if job_type is JobType.browser
            else None
        )
        database = self.policy.targets.databases.get(parsed.target or "")
        return JobSpec(
            job_type=job_type or JobType.code,
            target=parsed.target,
            instruction=parsed.instruction,
            tools=decision.tools_granted,
            approval_required_for=decision.approval_required_for,
            artifact_contract=ARTIFACT_CONTRACTS[job_type] if job_type else "",
            filesystem_scope=["worktree"] if job_type in (JobType.code, JobType.doc) else [],
            network_scope="allowlist" if site else "none",
            browser_domains=list(site.domains) if site else [],
            credential_refs=(
                [database.dsn_env]
                if database and job_type is JobType.sql
                else sorted(site.credentials.values())
                if site
                else []
            ),
            commands=parsed.commands,
            schedule=parsed.schedule,
            origin=origin,
            requester=person,
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
            pending = {
                "action": "run",
                "job_type": job.spec.job_type.value,
                "target": job.spec.target,
                "instruction": job.spec.instruction,
                "commands": job.spec.commands,
            }
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
                    "pending": pending,
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
            chosen = TYPE_ALIASES.get(answer.lower())
            if chosen is None:
                options = ", ".join(job.clarification.options)
                raise BadRequest(f"'{answer}' is not a job type", hint=f"answer one of: {options}")
            return parsed.model_copy(update={"job_type": chosen})
        if field == "target":
            job_type = parsed.job_type or JobType.code
            if answer not in self.policy.targets_for(job_type):
                names = ", ".join(sorted(self.policy.targets_for(job_type)))
                raise UnknownTarget(
                    f"unknown {job_type.value} target '{answer}'",
                    hint=f"known {job_type.value} targets: {names}",
                )
            return parsed.model_copy(update={"target": answer})
        if field == "commands" and parsed.job_type is JobType.sql:
            # A SQL job's answer is its statement (or diagnostic), refused now if it writes.
            statement = answer.strip().strip("`").strip()
            refuse_sql_writes(statement, self.policy, parsed.target)
            return parsed.model_copy(update={"instruction": statement})
        if field == "commands":
            if parsed.job_type in (JobType.browser, JobType.doc):
                lines = [ln.strip().strip("`") for ln in answer.splitlines() if ln.strip()]
                commands = steps_for(parsed.job_type, answer) or lines
                if parsed.job_type is JobType.browser:
                    parse_steps(commands)
            else:
                commands = extract_commands(answer) or [answer.strip("`").strip()]
            return parsed.model_copy(update={"commands": commands})
        return parsed

    # --- rollback --------------------------------------------------------------

    async def rollback(self, job_id: int, actor: Actor) -> JobRecord:
        from runtime import code_jobs

        job = await self.get(job_id)
        if job.state is not JobState.succeeded or not job.result.get("published_commit"):
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
        revert = await code_jobs.rollback(self, job)

        async def body(conn: AsyncConnection, fresh: JobRecord) -> JobRecord:
            return await self.transition(
                conn,
                fresh,
                JobState.rolled_back,
                actor=actor.label,
                kind="publish.rolled_back",
                data={"reverted": fresh.result.get("published_commit"), "revert_commit": revert},
                result={**fresh.result, "revert_commit": revert},
            )

        return await self.locked(job_id, body)
