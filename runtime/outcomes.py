"""Running a job's kind and applying what it returns: the context a kind gets (never the
Engine), the outcome turned into the job's next state, rollback and replay through the kind.
Part of the Engine (mixed in): with intake, the only code that writes a job's state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.approvals import pending_hash
from runtime.errors import ApprovalMismatch, InvalidTransition, PolicyDenied
from runtime.identity import Actor
from runtime.jobs import ArtifactRef, Clarification, JobRecord, JobState, PendingAction, Phase
from runtime.kinds import registry
from runtime.kinds.base import (
    Failed,
    JobContext,
    NeedsAnswer,
    NeedsApproval,
    Outcome,
    Succeeded,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


def _merged(existing: list[ArtifactRef], new: list[ArtifactRef]) -> list[ArtifactRef]:
    """The job's artifacts and a pass's new ones, each once, in the order they were made."""
    seen = {(a.name, a.sha256) for a in existing}
    out = list(existing)
    for ref in new:
        if (ref.name, ref.sha256) not in seen:
            seen.add((ref.name, ref.sha256))
            out.append(ref)
    return out


# How often an action no policy gates is taken again in one pass when taking it changed it
# (a branch that moved under a merge): then the job fails rather than loop.
UNGATED_RETRIES = 3


class Outcomes:
    # Needs the Engine's policy, settings, recorder, save_progress, locked, transition, get,
    # log, record_refusal and new_gate.

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
        loaded = self.loaded  # one version for the whole context
        targets = loaded.policy.targets_for(kind.job_type) if kind.target_section else {}

        async def remember(result: dict[str, Any]) -> JobRecord:
            return await self.save_progress(job.id, result=result)

        return JobContext(
            job=job,
            target=targets.get(job.spec.target or ""),
            policy=loaded.policy,
            settings=self.settings,
            recorder=self.recorder(job.id, actor or f"worker:{worker_id}", keeps=keeps),
            worker_id=worker_id,
            phase=phase or job.phase or Phase.execute,
            db=self.db,
            remember_fn=remember,
            toolbox_fn=_toolbox,
            model_fn=_model_client,
            policy_hash=loaded.sha256,
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
        taken = 0
        while isinstance(outcome, NeedsApproval) and not ctx.gated(outcome.pending.action):
            if taken == UNGATED_RETRIES:  # the action kept changing under the kind: stop asking
                outcome = Failed(
                    reason=f"the {outcome.pending.action} changed {taken} times while it was "
                    "being taken (its target keeps moving); nothing more was tried",
                    artifacts=outcome.artifacts,
                )
                break
            ctx.job = await self.save_progress(
                ctx.job.id,
                pending_action=outcome.pending,
                artifacts=_merged(ctx.job.artifacts, outcome.artifacts),
            )
            outcome = await kind.resume(ctx, outcome.pending)
            taken += 1
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
