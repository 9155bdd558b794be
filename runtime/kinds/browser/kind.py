"""Browser jobs: steps in a fresh, governed browser context, paused before anything mutates.

Direct mode runs the request's steps (steps.py, direct.py); with a model, the model picks the
same steps from the page's accessibility tree (model.py). Every step leaves a screenshot on
the chain (run.py); a pause leaves the highlighted page, the trace so far and the pending
action (pending.py), to which the approval is bound; the approved action is taken in the same
browser, or in a fresh one brought back to the same page (resume.py). Every step goes
through the job's toolbox (tools.py). The paused browsers this
worker holds are in live.py; a succeeded job's path exports as a Playwright test (export.py).

Importing this module imports no Playwright and no engine: a job's pass imports its modules.
"""

from __future__ import annotations

from typing import Any, ClassVar

from runtime.errors import ApprovalMismatch
from runtime.jobs import (
    Attachment,
    Evidence,
    EvidenceLine,
    JobRecord,
    JobType,
    PendingAction,
    Phase,
)
from runtime.kinds.base import Failed, Housekeeping, JobContext, JobKind, Outcome
from runtime.kinds.browser.pending import BrowserMutation
from runtime.tools.base import Tool


class BrowserKind(JobKind):
    job_type = JobType.browser
    aliases = ("browse", "browser")
    # fmt: off
    keywords = (
        "click", "page", "website", "browser", "form", "admin", "disable", "login", "navigate",
        "url", "site", "screenshot", "button", "browse",
    )
    # fmt: on
    target_section = "sites"
    tools = ("browser", "playwright")
    artifact_contract = "trace_plus_screenshots"
    mutating = True
    pending_models = (BrowserMutation,)
    approved_phase = Phase.resume
    step_question = (
        "Which steps should it take? For example: `goto /users/42` `click #disable` `screenshot`"
    )

    narration: ClassVar[dict[str, str]] = {
        "job.started": "Running in a fresh browser context, traced.",
        "job.resumed": "Taking the approved action.",
        "approval.invalidated": "The page changed after it was reviewed; it needs a new approval.",
    }

    def suggestion(self, target: str) -> tuple[str, str] | None:
        return (f"Check {target}", f"browser {target}: open the home page and take a screenshot")

    def toolset(self) -> tuple[Tool, ...]:
        from runtime.kinds.browser.tools import BROWSER_TOOLS

        return BROWSER_TOOLS

    # -- intake ------------------------------------------------------------------------

    def steps(self, instruction: str) -> list[str]:
        """The browser steps the request spells out; BadRequest now for a malformed one,
        not a failure later."""
        from runtime.kinds.browser.steps import extract_steps, parse_steps

        steps = extract_steps(instruction)
        parse_steps(steps)
        return steps

    def answer(self, answer: str, policy: Any, target: str | None) -> dict[str, Any]:
        """The steps the requester answered with: spans or a fence, else one step a line."""
        from runtime.kinds.browser.steps import parse_steps

        lines = [ln.strip().strip("`") for ln in answer.splitlines() if ln.strip()]
        commands = self.steps(answer) or lines
        parse_steps(commands)
        return {"commands": commands}

    def spec_scopes(self, site: Any) -> dict[str, Any]:
        return {
            "network_scope": "allowlist",
            "browser_domains": list(site.domains),
            "credential_refs": sorted(site.credentials.values()),
        }

    # -- running -----------------------------------------------------------------------

    async def execute(self, ctx: JobContext) -> Outcome:
        from runtime.kinds.browser.direct import execute

        return await execute(ctx)

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        """Take the approved action in the paused browser (or one brought back to the same
        page), then go on with the job's steps."""
        from runtime.kinds.browser.resume import resume

        if not isinstance(approved, BrowserMutation):
            raise ApprovalMismatch(f"{ctx.job.job_id}: the approved action is not a page action")
        return await resume(ctx, approved)

    async def recover(self, ctx: JobContext, phase: Phase, previous_worker: str | None) -> Outcome:
        """A crash during the approved action leaves unknown whether it reached the site, so
        it is never taken again: the job fails, saying so."""
        if phase is Phase.resume:
            return Failed(
                reason="interrupted: the service stopped while this browser job was taking "
                f"its approved action (worker {previous_worker}); it may or may not have "
                "reached the site. Check the site before submitting it again.",
                event="job.interrupted",
                result={"previous_worker": previous_worker},
            )
        return await super().recover(ctx, phase, previous_worker)

    def export_test(self, job: JobRecord, target: Any) -> tuple[str, str]:
        """The job's path as a Playwright test: (the script, its default file name)."""
        from runtime.kinds.browser.export import default_filename, export_test

        return export_test(job, target), default_filename(job)

    def describe(self, event_kind: str, data: dict[str, Any]) -> tuple[str, str] | None:
        if event_kind == "browser.step":
            mark = "ok" if data["ok"] else "--"
            detail = f" — {data['detail']}" if data.get("detail") else ""
            return (
                f"step {data['index']}",
                f"{mark} {data['action']} {data['target']} @ {data['url']}{detail}",
            )
        if event_kind == "tool.refused" and data.get("url"):
            return "refused", f"{data.get('url', '')} — {data['reason']}"
        return None

    # -- the worker's housekeeping: paused browsers ---------------------------------------

    def busy(self) -> bool:
        from runtime.kinds.browser.live import live_jobs

        return bool(live_jobs())

    async def sweep(self, house: Housekeeping) -> int:
        from runtime.kinds.browser.live import sweep

        return await sweep(house)

    async def shutdown(self) -> None:
        from runtime.kinds.browser.live import close_all

        await close_all()

    # -- showing (file names as a door uploads them: the job's id first) -----------------

    def evidence(self, job: JobRecord) -> Evidence:
        pending = job.pending_action
        if not isinstance(pending, BrowserMutation):
            return Evidence()
        shot, trace = pending.screenshot_sha256, pending.trace_sha256
        return Evidence(
            headline="The browser is about to change data. Approve and the job takes this one "
            "action in the same browser; reject and nothing is sent.",
            lines=[
                EvidenceLine(label="pending", text=pending.description),
                EvidenceLine(label="at step", text=pending.step),
                EvidenceLine(
                    label="evidence",
                    text=f"screenshot {shot[:12]} (element outlined), trace {trace[:12]}",
                ),
            ],
            attach=[
                Attachment(
                    sha256=shot,
                    filename=f"{job.job_id}-pending.png",
                    title="The page now, element outlined",
                ),
                Attachment(
                    sha256=trace,
                    filename=f"{job.job_id}-trace-so-far.zip",
                    title="Trace so far (open with `playwright show-trace`)",
                ),
            ],
        )

    def results(self, job: JobRecord) -> Evidence:
        """The last page and the last trace part (each step's screenshot stays on the chain)."""
        pages = [a for a in job.artifacts if a.name.startswith("step-") and a.name.endswith(".png")]
        traces = [a for a in job.artifacts if a.name.startswith("trace")]
        attach = []
        if pages:
            attach.append(
                Attachment(
                    sha256=pages[-1].sha256,
                    filename=f"{job.job_id}-{pages[-1].name}",
                    title="The last page",
                )
            )
        if traces:
            attach.append(
                Attachment(
                    sha256=traces[-1].sha256,
                    filename=f"{job.job_id}-{traces[-1].name}",
                    title="Trace (open with `playwright show-trace`)",
                )
            )
        return Evidence(attach=attach)
