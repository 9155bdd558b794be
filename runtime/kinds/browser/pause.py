"""A browser job paused before anything mutates: the highlighted page, the trace so far and
the pending action, to which the approval is bound (what the approval does: resume.py).
The session stays open in this worker (live.py) until the approval is decided."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.agent import transcript_artifact
from runtime.kinds.base import Failed, NeedsApproval, Outcome
from runtime.kinds.browser import live
from runtime.kinds.browser.pending import BrowserMutation
from runtime.kinds.browser.progress import BrowserProgress
from runtime.secrets import redact

if TYPE_CHECKING:
    from runtime.kinds.browser.run import Run
    from runtime.tools.browser import HeldAction

ACTION = "mutate"  # the approval action every browser mutation stops at


async def pause(
    run: Run,
    held: HeldAction,
    step_line: str,
    messages: list[dict[str, Any]] | None,
    call_id: str | None,
    *,
    step_index: int | None = None,
    reason: str | None = None,
    before_step: bool = False,
) -> Outcome:
    """Stop before `held`: keep the session open and ask for an approval bound to it (or
    fail, sending nothing, when no approval rule covers browser mutations here)."""
    ctx, job = run.ctx, run.job
    if ctx.gated(ACTION) is None:
        dropped = run.session.discard_pending()
        await run.save_trace(final=True)
        return Failed(
            reason=f"the page is about to mutate ({held.description}), and no approval rule "
            f"in the policy covers browser mutations on '{job.spec.target}' (action "
            f"'{ACTION}'), so nothing was sent"
            + (f"; {dropped} held request(s) dropped" if dropped else ""),
            artifacts=run.artifacts,
        )
    shot = ctx.recorder.put(f"pending-{run.mutations + 1}.png", held.screenshot, "image/png")
    trace = await run.save_trace(final=False)
    run.artifacts.append(shot)
    progress: dict[str, Any] = {
        "step": step_index if step_index is not None else BrowserProgress.of(job).step,
        "pending_step": step_line,
        "done": run.done,
        "landed": run.landed,
        "mutations": run.mutations,
        "segment": run.segment,
        "call_id": call_id,
        "before_step": before_step,
    }
    if messages is not None:
        ref = transcript_artifact(ctx.recorder, messages)
        run.artifacts.append(ref)
        progress["transcript_sha256"] = ref.sha256
    pending = BrowserMutation(
        action=ACTION,
        site=job.spec.target,
        kind=held.kind,
        description=redact(run.session.scrub(held.description)),
        step=redact(step_line),
        url=redact(run.session.scrub(held.url)),
        screenshot_sha256=shot.sha256,
        trace_sha256=trace.sha256,
        binding=held.binding(),
    )
    await ctx.remember(browser=BrowserProgress(**progress).stored())
    live.keep(job.id, live.Live(run.session, held, messages, call_id))
    return NeedsApproval(
        pending,
        artifacts=run.artifacts,
        event_artifacts=(shot.sha256, trace.sha256),
        reason=reason,
    )
