"""Routine jobs: a request put on a schedule (or a routine changed or deleted), decided by the
same policy and, by default, approved before the routine exists. The firings are ordinary jobs
(runtime.routines); this kind only proposes and publishes the routine itself."""

from __future__ import annotations

from runtime.errors import ApprovalMismatch
from runtime.jobs import Evidence, EvidenceLine, JobRecord, JobType, PendingAction, Phase
from runtime.kinds.base import JobContext, JobKind, Outcome
from runtime.kinds.routine.pending import RoutineChange, RoutineCreate


class RoutineKind(JobKind):
    job_type = JobType.schedule
    aliases = ("schedule",)
    requestable = False  # a routine is asked for with `schedule "CRON" <request>`
    target_section = None  # its target is the scheduled request's
    tools = ("scheduler",)
    artifact_contract = "routine_definition"
    mutating = True
    pending_models = (RoutineCreate, RoutineChange)
    resumable_phases = frozenset({Phase.publish})

    async def execute(self, ctx: JobContext) -> Outcome:
        from runtime.kinds.routine.run import execute

        return await execute(ctx)

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        from runtime.kinds.routine.run import publish

        if not isinstance(approved, RoutineCreate | RoutineChange):
            raise ApprovalMismatch(f"{ctx.job.job_id}: the approved routine is not the pending one")
        return await publish(ctx, approved)

    def evidence(self, job: JobRecord) -> Evidence:
        """The routine that approving creates, or the change to one."""
        pending = job.pending_action
        if isinstance(pending, RoutineCreate):
            when = pending.routine.schedule.get("expression", "")
            text = f"{pending.routine.request} ({when}, owner {pending.routine.owner})"
            return Evidence(lines=[EvidenceLine(label="routine", text=text)])
        if isinstance(pending, RoutineChange):
            to = f" to {pending.to.get('expression', '')}" if pending.to else ""
            text = f"{pending.action} R-{pending.routine_id}{to}: {pending.request}"
            return Evidence(lines=[EvidenceLine(label="routine", text=text)])
        return Evidence()
