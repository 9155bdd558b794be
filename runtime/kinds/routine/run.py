"""Running a routine job: propose the routine (or its change), then create or change exactly
the one that was approved."""

from __future__ import annotations

from runtime.kinds.base import Failed, JobContext, NeedsApproval, Outcome, Succeeded
from runtime.kinds.routine.pending import RoutineChange, RoutineCreate, RoutineProposal
from runtime.schedules import Schedule, parse_schedule
from runtime.store import routine_store
from runtime.store.job_store import utcnow
from runtime.store.routine_store import format_routine_id, parse_routine_id


def proposal(ctx: JobContext) -> RoutineCreate:
    """The routine a `schedule` job proposes: what an approval of it is bound to."""
    job = ctx.job
    schedule = parse_schedule(job.spec.schedule or "", ctx.policy.routines.timezone)
    return RoutineCreate(
        routine=RoutineProposal(
            owner=job.spec.requester,
            schedule=schedule.model_dump(),
            request=job.spec.instruction,
            reply_to=job.reply_to,
        )
    )


def _change_of(ctx: JobContext) -> tuple[str, int] | None:
    """(action, routine id) of a job that changes or deletes a routine; None for a proposal."""
    commands = ctx.job.spec.commands
    if len(commands) == 2 and commands[0] in ("change", "delete"):
        return commands[0], parse_routine_id(commands[1])
    return None


async def execute(ctx: JobContext) -> Outcome:
    """Stop at the routine's approval gate (create, change, delete), or go ahead if no gate
    applies and the policy does not require one."""
    job = ctx.job
    change = _change_of(ctx)
    pending: RoutineCreate | RoutineChange
    if change is None:
        pending = proposal(ctx)
    else:
        action, routine_id = change
        routine = await routine_store.load_routine(ctx.db, routine_id)
        to = None
        if action == "change":
            to = parse_schedule(job.spec.schedule or "", ctx.policy.routines.timezone).model_dump()
        fields = {"action": action, "routine_id": routine_id, "request": routine.request,
                  "from": routine.schedule.model_dump()}  # fmt: skip
        pending = RoutineChange.model_validate({**fields, **({"to": to} if to else {})})
    if ctx.gated(pending.action):
        return NeedsApproval(pending)
    if ctx.policy.routines.require_approval and pending.action != "delete":
        return Failed(
            reason="the policy requires approval of routines (routines.require_approval), "
            "but no approval rule covers `schedule` jobs with action "
            f"'{pending.action}' on '{job.spec.target}'; nothing changed",
        )
    return NeedsApproval(pending)  # no gate: the engine has it published straight away


async def publish(ctx: JobContext, pending: RoutineCreate | RoutineChange) -> Outcome:
    """Create exactly the routine that was approved, or apply the approved change."""
    if isinstance(pending, RoutineChange):
        return await _apply_change(ctx, pending)
    spec = pending.routine
    schedule = Schedule.model_validate(spec.schedule)
    routine_id = await routine_store.create_for_job(
        ctx.db, ctx.job.id, owner=spec.owner, schedule=schedule, request=spec.request,
        reply_to=spec.reply_to,
    )  # fmt: skip
    rid = format_routine_id(routine_id)
    nxt = schedule.next_after(utcnow())
    await ctx.recorder.log(
        "routine.created",
        {"routine": rid, "schedule": schedule.model_dump(), "owner": spec.owner,
         "request": spec.request},
    )  # fmt: skip
    when = f"; next run {nxt:%Y-%m-%d %H:%M:%S %Z}" if nxt else ""
    return Succeeded(
        reason=f"routine {rid} created: {schedule.text()}{when}", result={"routine": rid}
    )


async def _apply_change(ctx: JobContext, pending: RoutineChange) -> Outcome:
    rid = format_routine_id(pending.routine_id)
    if pending.action == "delete":
        await routine_store.change(ctx.db, pending.routine_id, state="deleted")
    else:
        to = Schedule.model_validate(pending.to)
        await routine_store.change(ctx.db, pending.routine_id, schedule=to)
    done = "deleted" if pending.action == "delete" else "changed"
    await ctx.recorder.log(f"routine.{done}", {"routine": rid, **pending.canonical()})
    what = f"now {Schedule.model_validate(pending.to).text()}" if pending.to else ""
    return Succeeded(
        reason=f"routine {rid} {done}" + (f": {what}" if what else ""), result={"routine": rid}
    )
