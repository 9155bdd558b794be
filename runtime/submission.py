"""Submitting and answering: a request becomes a job, decided by the policy, recorded with its
first events; an answer to its question decides it again. Part of the Engine (mixed in).

The job's kind reads the request (steps, what is explicit, what an answer means); the policy
decides (runtime.policy.decide); the engine writes (transition, in one transaction with the
events). Files a door attaches (inputs) are checked like every document and stored by hash.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runtime.agent import CONTEXT_PREFIX
from runtime.doc_formats import MEDIA_TYPES, DocumentError, read_as, read_as_text
from runtime.errors import AlreadyDecided, BadRequest, PolicyDenied, UnknownJob, UnknownTarget
from runtime.identity import Actor
from runtime.intake import ParsedRequest, parse_request
from runtime.jobs import (
    INPUT_PREFIX,
    Clarification,
    ContextItem,
    InputFile,
    JobRecord,
    JobSpec,
    JobState,
    JobType,
    ModelUse,
    Origin,
    RunGate,
    input_name,
)
from runtime.kinds import registry
from runtime.policy import Decision, Policy, RequestFacts, decide, decide_routine
from runtime.policy.history import slack_channel
from runtime.store import job_store
from runtime.store.job_store import DuplicateRequest, utcnow
from runtime.untrusted import escape_text, has_lone_surrogate

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


class PolicyCheck(BaseModel):
    """What would happen to a request; `acp policy check` prints it and runs nothing."""

    person: str
    parsed: dict[str, Any]
    decision: Decision
    policy_hash: str


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


def facts_of_request(
    person: str, parsed: ParsedRequest, origin: Origin, channel: str | None = None
) -> RequestFacts:
    """What the policy is asked about a parsed request (and the Slack channel it came from)."""
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
        channel=channel,
    )


def decide_parsed(
    policy: Policy, person: str, parsed: ParsedRequest, origin: Origin, channel: str | None = None
) -> Decision:
    """The policy's decision on a parsed request (a routine: may this person run the request,
    and who reviews the routine). Pure: the same for a submission, a check and an example."""
    facts = facts_of_request(person, parsed, origin, channel)
    if parsed.schedule:
        return decide_routine(policy, facts)
    return decide(policy, facts)


def inputs_refusal(parsed: ParsedRequest, names: list[str]) -> BadRequest | None:
    """Why a request cannot take attached files (only a kind that places inputs in its
    workspace can: doc jobs), or None."""
    kind = None
    if parsed.job_type is not None and not parsed.schedule:
        kind = registry.kind_for(parsed.job_type)
    if getattr(kind, "inputs_context", None) is not None:
        return None
    takers = [k.job_type for k in registry.kinds() if getattr(k, "inputs_context", None)]
    what = (
        "a routine" if parsed.schedule
        else f"a {parsed.job_type} job" if parsed.job_type
        else "a request that names no kind of job"
    )  # fmt: skip
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return BadRequest(
        f"{shown} attached, but files are inputs of {' and '.join(takers) or 'no'} jobs and "
        f"this is {what}; nothing was submitted",
        hint="ask for a doc job with the file attached, e.g. `doc reports: weekly summary "
        "`template templates/weekly.md.j2 out/weekly.md inputs/incidents.csv``",
    )


class Submissions:
    # Needs the Engine's policy, loaded, db, transition, locked, record_refusal, _event, new_gate.

    # --- deciding ----------------------------------------------------------

    def _decide(
        self, person: str, parsed: ParsedRequest, origin: Origin, channel: str | None = None
    ) -> Decision:
        return decide_parsed(self.policy, person, parsed, origin, channel)

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
        scopes = kind.spec_scopes(target) if target is not None else {}
        if decision.network_granted:  # the grant's hosts, reached through the egress proxy
            scopes["network_scope"] = "allowlist"
            refs = {*scopes.get("credential_refs", []), *decision.credentials_granted.values()}
            scopes["credential_refs"] = sorted(refs)
        return JobSpec(
            job_type=kind.job_type,
            instruction=parsed.instruction,
            artifact_contract=kind.artifact_contract,
            commands=parsed.commands,
            **scopes,
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

    def inputs_refusal(self, text: str, names: list[str]) -> BadRequest | None:
        """Why this request could not take attached files (named `names`), or None: asked by
        a door before it downloads any. A request that does not parse: why it does not."""
        try:
            parsed = parse_request(text, self.policy)
        except BadRequest as error:
            return error
        return inputs_refusal(parsed, names)

    # --- submit and answer -------------------------------------------------

    async def submit(
        self,
        text: str,
        actor: Actor,
        origin: Origin = Origin.cli,
        *,
        request_key: str | None = None,
        reply_to: dict[str, Any] | None = None,
        context: list[ContextItem] | None = None,
        inputs: list[InputFile] | None = None,
    ) -> JobRecord:
        """Turn a request into a job and decide it. The same request_key never makes two jobs.
        Parsed, decided and recorded under one policy, whatever is reloaded meanwhile. Context
        (a Slack thread) is stored on the chain and given to the model as untrusted data.
        Inputs (attached files) are checked like every document (size, type by extension and
        content) and stored by hash; their kind places them where its steps read them. A
        request that cannot take them, or one that fails a check, is refused: no job."""
        with self.policies.pinned():  # type: ignore[attr-defined]
            return await self._submit(
                text, actor, origin, request_key, reply_to, context or [], inputs or []
            )

    async def _submit(
        self,
        text: str,
        actor: Actor,
        origin: Origin,
        request_key: str | None,
        reply_to: dict[str, Any] | None,
        context: list[ContextItem],
        inputs: list[InputFile],
    ) -> JobRecord:
        if request_key:
            async with self.db.engine.connect() as conn:
                existing = await job_store.job_for_request(conn, request_key)
            if existing:
                return existing
        try:
            _refuse_unencodable(text, "request")
            parsed = parse_request(text, self.policy)
            attached = await self._checked_inputs(parsed, inputs)
        except (BadRequest, DocumentError) as error:
            files = {"files": [f.name for f in inputs]} if inputs else {}
            await self.record_refusal(
                "request.refused", actor.label, error, request=request_digest(text or ""), **files
            )
            raise
        if attached:  # the model is told which inputs it has, and where its kind put them
            kind = registry.kind_for(parsed.job_type)  # type: ignore[arg-type]
            context = [*context, kind.inputs_context([data for data, _ in attached])]  # type: ignore[attr-defined]
        decision = self._decide(actor.person, parsed, origin, slack_channel(reply_to))
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
            artifacts=[
                *(
                    self.artifacts.put(f"{CONTEXT_PREFIX}{item.name}", item.text.encode())  # type: ignore[attr-defined]
                    for item in context
                ),
                *(
                    self.artifacts.put(f"{INPUT_PREFIX}{data['name']}", content, data["media_type"])  # type: ignore[attr-defined]
                    for data, content in attached
                ),
            ],
            created_at=now,
            updated_at=now,
        )
        try:
            return await self._insert_and_decide(
                record, decision, actor, text, origin, request_key, context,
                [data for data, _ in attached],
            )  # fmt: skip
        except DuplicateRequest:
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
        context: list[ContextItem] = (),  # type: ignore[assignment]
        inputs: list[dict[str, Any]] = (),  # type: ignore[assignment]
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
            for item, ref in zip(context, job.artifacts, strict=False):
                await self._event(
                    conn, "context.attached", actor.label, job.id,
                    {"name": ref.name, "source": item.source, "bytes": ref.size, **item.facts},
                    (ref.sha256,),
                )  # fmt: skip
            # What the job was given, byte for byte: the chain holds each input's hash.
            for data in inputs:
                await self._event(
                    conn, "input.attached", actor.label, job.id, data, (data["sha256"],)
                )
            job = await self._apply_decision(conn, job, decision, actor.label)
        return job

    async def _checked_inputs(
        self, parsed: ParsedRequest, inputs: list[InputFile]
    ) -> list[tuple[dict[str, Any], bytes]]:
        """Each input checked and read (DocumentError names the file), under a name
        safe in a workspace: its input.attached event data and its bytes."""
        if not inputs:
            return []
        refused = inputs_refusal(parsed, [f.name for f in inputs])
        if refused is not None:
            raise refused
        limit = self.policy.limits.doc_max_bytes
        taken: set[str] = set()
        attached = []
        for file in inputs:
            facts = await asyncio.to_thread(read_as, file.name, file.content, limit)
            name = input_name(file.name, taken)
            taken.add(name)
            data: dict[str, Any] = {
                "name": name,
                "sha256": hashlib.sha256(file.content).hexdigest(),
                "bytes": len(file.content),
                "media_type": MEDIA_TYPES[facts["format"]],
                "source": file.source,
                "read_as": facts,
                "read_as_text": read_as_text(facts),
            }
            if name != file.name:
                data["filename"] = file.name
            if file.media_type and file.media_type != data["media_type"]:
                data["declared_media_type"] = file.media_type
            attached.append((data, file.content))
        return attached

    async def _apply_decision(
        self, conn: AsyncConnection, job: JobRecord, decision: Decision, actor: str
    ) -> JobRecord:
        data = {
            "effect": decision.effect,
            "reasons": decision.reasons,
            "rule_ids": decision.rule_ids,
            "tools_granted": decision.tools_granted,
            "network_granted": decision.network_granted,
            "credentials_granted": decision.credentials_granted,
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
            decision = self._decide(
                job.spec.requester, parsed, job.spec.origin, slack_channel(job.reply_to)
            )
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
                    # A job type answered is known from now on: the next answer (a target, a
                    # statement) is read by that kind, not by the code kind's steps.
                    "classifier": {
                        **job.classifier,
                        "job_type_known": parsed.job_type is not None,
                    },
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
            with self.policies.pinned():  # type: ignore[attr-defined]
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
            result={**job.result, "answers": [*job.answers, qa]},
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
            # What intake refuses for this kind (a SQL write) is refused once the kind is known.
            chosen.check_request(parsed.instruction, parsed.target, self.policy)
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
