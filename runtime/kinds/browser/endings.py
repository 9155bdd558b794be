"""How a pass over a browser job ends: done (the page sends nothing more by itself), failed
with the step and the reason, or refused. Each ending stops the session and leaves its last
trace part; the engine moves the job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.errors import AcpError, SandboxViolation
from runtime.kinds.base import Failed, JobContext, Outcome, Succeeded
from runtime.kinds.browser import pause
from runtime.secrets import redact
from runtime.tools.browser import MutationPending

if TYPE_CHECKING:
    from runtime.kinds.browser.run import Run


async def complete(run: Run, summary: str, messages: list[dict[str, Any]] | None = None) -> Outcome:
    try:
        await run.session.check_held("end")
    except MutationPending as paused:  # the page itself is about to send something
        await run.record()
        return await pause.pause(run, paused.pending, "wait 0", messages, None,
                                 step_index=len(run.job.spec.commands) - 1)  # fmt: skip
    await run.record()
    await run.save_trace(final=True)
    return Succeeded(
        reason=f"{summary}; {run.mutations} approved mutation(s) sent",
        artifacts=run.artifacts,
        result={"browser": run.progress().stored()},
    )


async def fail_run(run: Run, reason: str) -> Outcome:
    run.session.discard_pending()
    await run.save_trace(final=True)
    return Failed(
        reason=reason, artifacts=run.artifacts, result={"browser": run.progress().stored()}
    )


async def refused(run: Run, refusal: SandboxViolation) -> Outcome:
    await run.record()
    return await fail_run(run, refusal.message)


async def failed(
    run: Run, step_line: str, error: Exception, *, index: int | None = None
) -> Outcome:
    await run.record()
    message = error.message if isinstance(error, AcpError) else str(error).splitlines()[0]
    where = f"step {index + 1} " if index is not None else "step "
    return await fail_run(run, f"{where}`{step_line}` failed: {redact(message)}")


async def refuse_job(ctx: JobContext, reason: str) -> Outcome:
    await ctx.recorder.log("tool.refused", {"tool": "browser", "reason": reason})
    return Failed(reason=reason)
