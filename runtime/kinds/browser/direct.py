"""A browser job's steps, in order: the request's own (direct mode), or, with a model, the
site's start page and then the model's (model.py).

Every step leaves a screenshot on the chain; a step that would change data pauses the job
(pause.py) and the steps after it wait for the approval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.errors import AcpError, SandboxViolation
from runtime.jobs import JobRecord
from runtime.kinds.base import Failed, JobContext, Outcome
from runtime.kinds.browser import endings, live, model, pause
from runtime.kinds.browser.progress import BrowserProgress
from runtime.kinds.browser.run import Run, secrets_for, site_of
from runtime.kinds.browser.steps import BrowserStep, parse_step, parse_steps
from runtime.kinds.browser.tools import Held
from runtime.tools.base import ToolPaused

if TYPE_CHECKING:
    from runtime.policy import SiteTarget


async def execute(ctx: JobContext) -> Outcome:
    """The job's first pass: a fresh context, its steps until they end or one pauses."""
    job = ctx.job
    site = site_of(ctx)
    if "browser" not in job.tools_granted:
        return await endings.refuse_job(ctx, f"{job.job_id} may not use the browser tool")
    steps, then_model = plan(job)
    try:
        secrets = secrets_for(site, job.spec.target or "", steps)
    except AcpError as error:
        return Failed(reason=error.message)
    return await live.closing(job.id, _execute(ctx, site, secrets, steps, then_model))


async def _execute(
    ctx: JobContext,
    site: SiteTarget,
    secrets: dict[str, str],
    steps: list[BrowserStep],
    then_model: bool,
) -> Outcome:
    run = await Run.start(ctx, site, secrets)
    return await run_steps(run, steps, 0, then_model=then_model)


def plan(job: JobRecord) -> tuple[list[BrowserStep], bool]:
    """The steps the runtime takes itself, and whether the model takes over after them
    (with a model, the runtime first opens the site's start page for it)."""
    steps = parse_steps(job.spec.commands)
    if job.model.model == "direct":
        return steps, False
    return [parse_step("goto /"), *steps], True


async def run_steps(
    run: Run, steps: list[BrowserStep], start: int, *, then_model: bool = False
) -> Outcome:
    for index in range(start, len(steps)):
        step = steps[index]
        try:
            await run.toolbox.call("browser.step", step=step.text())
        except ToolPaused as paused:
            held: Held = paused.reason
            if held.before_step:  # the page's own request, before this step: it comes after
                return await pause.pause(run, held.pending, "wait 0", None, None,
                                         step_index=index - 1, before_step=True)  # fmt: skip
            return await pause.pause(run, held.pending, step.text(), None, None,
                                     step_index=index)  # fmt: skip
        except SandboxViolation as refusal:
            return await endings.refused(run, refusal)
        except AcpError as error:
            return await endings.failed(run, step.text(), error, index=index)
    if then_model:
        return await model.run_model(run, model.opening(run.job, run.site, run.ctx.recorder.read))
    return await endings.complete(run, f"{len(steps)} step(s) taken")


async def go_on(
    run: Run, messages: list[dict[str, Any]] | None, call_id: str | None, said: str
) -> Outcome:
    """After the paused action: back to the model that asked for it, or the next step."""
    if messages is not None:
        observation = await run.session.observe()
        return await model.run_model(run, model.after_action(messages, call_id, said, observation))
    steps, then_model = plan(run.job)
    index = BrowserProgress.of(run.job).step
    start = len(steps) if index is None else index + 1
    return await run_steps(run, steps, start, then_model=then_model)
