"""What an approval of a paused browser job does: the worker takes the approved action in the
same browser context; if that context is gone (a restart, another worker), the steps before
the pause are taken again in a fresh one, and the action goes ahead only if the page is
exactly the approved one, otherwise a fresh checkpoint is raised. On Reject the held action
is dropped and nothing is sent (live.sweep)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError

from runtime.errors import AcpError, ApprovalMismatch, SandboxViolation
from runtime.jobs import ApprovalRequest
from runtime.kinds.base import Failed, JobContext, Outcome
from runtime.kinds.browser import direct, endings, live, model
from runtime.kinds.browser.pause import pause
from runtime.kinds.browser.pending import BrowserMutation
from runtime.kinds.browser.progress import BrowserProgress
from runtime.kinds.browser.run import Run, secrets_for, site_of
from runtime.kinds.browser.steps import parse_step, parse_steps
from runtime.secrets import redact
from runtime.tools.browser import MutationPending, PageChanged

if TYPE_CHECKING:
    from runtime.policy import SiteTarget
    from runtime.tools.browser import HeldAction


async def resume(ctx: JobContext, approved: BrowserMutation) -> Outcome:
    """The pending action was approved: take it, then go on with the rest of the job."""
    return await live.closing(ctx.job.id, _resume(ctx, approved))


async def _resume(ctx: JobContext, pending: BrowserMutation) -> Outcome:
    job = ctx.job
    approved = next((g for g in reversed(job.approvals) if g.decision == "approved"), None)
    if approved is None:
        raise ApprovalMismatch(f"{job.job_id}: the approved action is not the pending one")
    state = BrowserProgress.of(job)
    if state.pending_step is None:
        raise ApprovalMismatch(f"{job.job_id} has no paused step to take")
    pending_step = state.pending_step
    site = site_of(ctx)
    kept = live.take(job.id)  # this pass owns it now
    if kept is not None and kept.pending.binding() != pending.binding:
        await kept.session.stop()
        kept = None
    secrets = secrets_for(site, job.spec.target or "", parse_steps([*state.done, pending_step]))
    if kept is None:
        run = await restore(ctx, site, secrets, state)
        if not isinstance(run, Run):
            return run
        held = run.session.pending
        assert held is not None
        messages = model.load_messages(ctx, state)
        call_id = state.call_id
        if held.binding() != pending.binding:
            await ctx.recorder.log(
                "approval.invalidated",
                {"reason": "the page is not the one that was approved",
                 "approved": approved.action_hash},
            )  # fmt: skip
            return await pause(run, held, pending_step, messages, call_id,
                               reason="the page changed since the approval")  # fmt: skip
    else:
        run = Run(ctx, site, kept.session, secrets,
                  artifacts=list(job.artifacts), done=list(state.done),
                  landed=list(state.landed), recorded=len(kept.session.steps),
                  segment=state.segment, mutations=state.mutations)  # fmt: skip
        held, messages, call_id = kept.pending, kept.messages, kept.call_id
    sent_before = len(run.session.mutations_sent)
    try:
        await run.session.perform_pending(held)
    except PageChanged as changed:
        await run.record()
        await ctx.recorder.log("approval.invalidated", {"reason": changed.message})
        return await checkpoint_again(run, pending_step, messages, call_id)
    except MutationPending as again:  # the approved action led straight to another one
        await run.record()
        run.took(pending_step)
        run.mutations += 1
        await log_sent(run, held, approved, sent_before)
        # What the page goes on sending by itself is asked about as the page's own ("wait 0").
        line = "wait 0" if again.pending.kind == "request" else pending_step
        return await pause(run, again.pending, line, messages, call_id)
    except SandboxViolation as refusal:
        return await endings.refused(run, refusal)
    except (AcpError, PlaywrightError) as error:
        return await endings.failed(run, pending_step, error)
    await run.record()
    run.took(pending_step)
    run.mutations += 1
    await log_sent(run, held, approved, sent_before)
    said = "approved and done."
    if state.before_step:
        said = (
            "the page's own request was approved and sent; the action you asked for was not "
            "taken yet: take it again if it is still needed."
        )
    return await direct.go_on(run, messages, call_id, said)


async def log_sent(run: Run, held: HeldAction, approved: ApprovalRequest, sent_before: int) -> None:
    await run.ctx.recorder.log(
        "browser.mutation_sent",
        {
            "description": redact(run.session.scrub(held.description)),
            "approved_hash": approved.action_hash,
            "approved_by": approved.decided_by,
            "requests": run.session.mutations_sent[sent_before:],
            "dialogs": run.session.dialogs[-3:],
        },
    )


async def checkpoint_again(
    run: Run, step_line: str, messages: list[dict[str, Any]] | None, call_id: str | None
) -> Outcome:
    """The page changed under an approval: take the step again and ask about what it is now."""
    step = parse_step(step_line)
    try:
        await run.take(step)
        await run.session.check_held()
    except MutationPending as paused:
        await run.record()
        return await pause(run, paused.pending, step_line, messages, call_id,
                           reason="the page changed since the approval")  # fmt: skip
    except SandboxViolation as refusal:
        return await endings.refused(run, refusal)
    except (AcpError, PlaywrightError) as error:
        return await endings.failed(run, step_line, error)
    # Taken again, the step no longer mutates: it is done, and the job goes on.
    await run.record()
    run.took(step_line)
    return await direct.go_on(run, messages, call_id, "done (no approval needed).")


async def restore(
    ctx: JobContext, site: SiteTarget, secrets: dict[str, str], state: BrowserProgress
) -> Run | Outcome:
    """A fresh context brought back to the pause by taking the steps before it again."""
    if state.mutations:
        return Failed(
            reason="the browser session holding this job's approved action is gone (the "
            "service restarted), and steps before it already changed the site, so they "
            "cannot be taken again safely; nothing more was sent. Check the site and submit "
            "the remaining steps as a new job.",
        )
    reason = "the paused browser is not in this worker"
    await ctx.recorder.log("browser.session_restored", {"reason": reason, "steps": len(state.done)})
    run = await Run.start(ctx, site, secrets)
    run.segment = state.segment + 1
    line = ""
    try:
        for line in [*state.done, state.pending_step or ""]:
            await run.take(parse_step(line))
            run.took(line)
        await run.session.check_held()
    except MutationPending:
        await run.record()
        if len(run.done) == len(state.done):
            return run
        return await endings.fail_run(
            run, f"taken again after a restart, the earlier step `{line}` now needs approval; "
            "nothing was sent"
        )  # fmt: skip
    except SandboxViolation as refusal:
        return await endings.refused(run, refusal)
    except (AcpError, PlaywrightError) as error:
        return await endings.failed(run, state.pending_step or "", error)
    await run.record()
    return await endings.fail_run(
        run, "taken again after a restart, the steps no longer reach the approved action; "
        "nothing was sent"
    )  # fmt: skip
