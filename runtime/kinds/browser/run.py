"""Browser jobs: steps in a fresh, governed browser context, paused before anything mutates.

Direct mode runs the request's steps (runtime.browser_steps); with a model, the model picks the
same steps from the page's accessibility tree. Every step leaves a screenshot on the chain; a
pause leaves the highlighted page, the trace so far and the pending action, to which the
approval is bound. On Approve the worker continues in the same browser context; if that
context is gone (a restart, another worker), the steps before the pause are taken again in a
fresh one, and the action goes ahead only if the page is exactly the approved one, otherwise
a fresh checkpoint is raised. On Reject the held action is dropped: nothing is sent.

A pass over a job never leaves a browser context open behind it: unless the job paused on it
(then it is in _live, closed when the approval is decided), it is closed when the pass ends,
also when the pass fails or is cancelled (the worker's deadline).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError

from runtime.agent import function, opening_messages, tool_result
from runtime.approvals import pending_hash
from runtime.browser_steps import BrowserStep, parse_step, parse_steps
from runtime.code_jobs import ask_approval, gated_action, transcript_artifact
from runtime.errors import (
    AcpError,
    ApprovalMismatch,
    BudgetExceeded,
    ModelUnavailable,
    SandboxViolation,
)
from runtime.jobs import ArtifactRef, Clarification, JobRecord, JobState
from runtime.policy import SiteTarget
from runtime.secrets import redact
from runtime.tools.browser import (
    BrowserGrant,
    BrowserSession,
    MutationPending,
    PageChanged,
    PendingAction,
)

if TYPE_CHECKING:
    from runtime.engine import Engine

log = logging.getLogger("acp.browser")
ACTION = "mutate"  # the approval action every browser mutation stops at


@dataclass
class Live:
    """A paused job's browser, kept open in this worker until the approval is decided."""

    session: BrowserSession
    pending: PendingAction
    messages: list[dict[str, Any]] | None = None  # model mode: the conversation so far
    call_id: str | None = None  # model mode: the tool call that paused


_live: dict[int, Live] = {}
# The sessions a pass over a job opened or took over (see _closing).
_opened: contextvars.ContextVar[list[BrowserSession]] = contextvars.ContextVar("opened")


@dataclass
class Run:
    """One worker's pass over a job: where it is, what it has left on the chain."""

    engine: Engine
    job: JobRecord
    actor: str
    site: SiteTarget
    session: BrowserSession
    secrets: dict[str, str]
    artifacts: list[ArtifactRef] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # step lines taken, in order
    recorded: int = 0  # session.steps already logged
    segment: int = 1  # trace part number
    mutations: int = 0
    landed: list[str] = field(default_factory=list)  # the URL after each step taken

    def took(self, line: str) -> None:
        self.done.append(line)
        self.landed.append(self.session.page.url)

    def progress(self) -> dict[str, Any]:
        return {"done": self.done, "landed": self.landed, "mutations": self.mutations}


# --- entry points (the worker calls these) ----------------------------------------------


async def execute(engine: Engine, job: JobRecord, worker_id: str) -> JobRecord:
    actor = f"worker:{worker_id}"
    site = engine.policy.targets.sites[job.spec.target or ""]
    if "browser" not in job.tools_granted:
        return await _refuse_job(engine, job, actor, f"{job.job_id} may not use the browser tool")
    steps, then_model = _plan(job)
    try:
        secrets = _secrets_for(site, job.spec.target or "", steps)
    except AcpError as error:
        return await engine.finish(job, JobState.failed, actor, "job.failed", reason=error.message)
    return await _closing(job.id, _execute(engine, job, actor, site, secrets, steps, then_model))


async def _execute(
    engine: Engine,
    job: JobRecord,
    actor: str,
    site: SiteTarget,
    secrets: dict[str, str],
    steps: list[BrowserStep],
    then_model: bool,
) -> JobRecord:
    run = await _start(engine, job, actor, site, secrets)
    return await _run_steps(run, steps, 0, then_model=then_model)


async def _closing(job_id: int, work: Awaitable[JobRecord]) -> JobRecord:
    """Run one pass over a job; then close every session it opened or took over, except the
    one the job paused on, whatever ended the pass (a failure, a cancellation)."""
    opened: list[BrowserSession] = []
    token = _opened.set(opened)
    try:
        return await work
    except BaseException:
        live = _live.get(job_id)
        if live is not None and live.session in opened:  # paused, but the pass did not end well
            del _live[job_id]
        raise
    finally:
        _opened.reset(token)
        live = _live.get(job_id)
        for session in opened:
            if live is None or session is not live.session:
                await session.close()


async def resume(engine: Engine, job: JobRecord, worker_id: str) -> JobRecord:
    """The pending action was approved: take it, then go on with the rest of the job."""
    return await _closing(job.id, _resume(engine, job, f"worker:{worker_id}"))


async def _resume(engine: Engine, job: JobRecord, actor: str) -> JobRecord:
    pending = job.pending_action or {}
    approved = next((g for g in reversed(job.approvals) if g.decision == "approved"), None)
    if approved is None or approved.action_hash != pending_hash(pending):
        raise ApprovalMismatch(f"{job.job_id}: the approved action is not the pending one")
    state = job.result.get("browser", {})
    site = engine.policy.targets.sites[job.spec.target or ""]
    live = _live.pop(job.id, None)
    if live is not None:
        _opened.get().append(live.session)  # this pass owns it now
    if live is not None and live.pending.binding() != pending["binding"]:
        await live.session.stop()
        live = None
    step_lines = [*state.get("done", []), state["pending_step"]]
    secrets = _secrets_for(site, job.spec.target or "", parse_steps(step_lines))
    if live is None:
        run = await _restore(engine, job, actor, site, secrets, state)
        if isinstance(run, JobRecord):
            return run
        live_pending = run.session.pending
        assert live_pending is not None
        messages = _load_messages(engine, state)
        call_id = state.get("call_id")
        if live_pending.binding() != pending["binding"]:
            await engine.log(
                job.id,
                "approval.invalidated",
                actor,
                {
                    "reason": "the page is not the one that was approved",
                    "approved": approved.action_hash,
                },
            )
            return await _pause(run, live_pending, state["pending_step"], messages, call_id,
                                reason="the page changed since the approval")  # fmt: skip
    else:
        run = Run(engine, job, actor, site, live.session, secrets,
                  artifacts=list(job.artifacts), done=list(state.get("done", [])),
                  landed=list(state.get("landed", [])), recorded=len(live.session.steps),
                  segment=state.get("segment", 1), mutations=state.get("mutations", 0))  # fmt: skip
        live_pending, messages, call_id = live.pending, live.messages, live.call_id
    sent_before = len(run.session.mutations_sent)
    try:
        await run.session.perform_pending(live_pending)
    except PageChanged as changed:
        await _record(run)
        await engine.log(job.id, "approval.invalidated", actor, {"reason": changed.message})
        return await _checkpoint_again(run, state["pending_step"], messages, call_id)
    except MutationPending as again:  # the approved action led straight to another one
        await _record(run)
        run.took(state["pending_step"])
        run.mutations += 1
        await _log_sent(run, live_pending, approved, sent_before)
        # What the page goes on sending by itself is asked about as the page's own ("wait 0").
        line = "wait 0" if again.pending.kind == "request" else state["pending_step"]
        return await _pause(run, again.pending, line, messages, call_id)
    except SandboxViolation as refusal:
        return await _refused(run, refusal)
    except (AcpError, PlaywrightError) as error:
        return await _failed(run, state["pending_step"], error)
    await _record(run)
    run.took(state["pending_step"])
    run.mutations += 1
    await _log_sent(run, live_pending, approved, sent_before)
    said = "approved and done."
    if state.get("before_step"):
        said = (
            "the page's own request was approved and sent; the action you asked for was not "
            "taken yet: take it again if it is still needed."
        )
    return await _go_on(run, messages, call_id, said)


async def _log_sent(run: Run, pending: PendingAction, approved: Any, sent_before: int) -> None:
    await run.engine.log(
        run.job.id,
        "browser.mutation_sent",
        run.actor,
        {
            "description": redact(run.session.scrub(pending.description)),
            "approved_hash": approved.action_hash,
            "approved_by": approved.decided_by,
            "requests": run.session.mutations_sent[sent_before:],
            "dialogs": run.session.dialogs[-3:],
        },
    )


async def sweep(engine: Engine) -> int:
    """Close the browsers of paused jobs that were rejected, expired or cancelled meanwhile."""
    closed = 0
    for job_id in list(_live):
        job = await engine.get(job_id)
        if job.state in (JobState.awaiting_approval, JobState.approved, JobState.running):
            continue
        live = _live.pop(job_id)
        dropped = live.session.discard_pending()
        await live.session.stop()
        await engine.log(
            job_id,
            "browser.session_closed",
            "runtime",
            {"reason": job.state.value, "held_requests_dropped": dropped, "sent": False},
        )
        closed += 1
    return closed


def live_jobs() -> list[int]:
    return list(_live)


async def close_all() -> None:
    """The worker is stopping: its paused browsers go (an approval later starts afresh)."""
    for job_id in list(_live):
        live = _live.pop(job_id)
        live.session.discard_pending()
        try:
            await live.session.stop()
        except PlaywrightError:
            log.warning("closing the browser of job %s failed", job_id, exc_info=True)


# --- running steps ----------------------------------------------------------------------


async def _start(
    engine: Engine, job: JobRecord, actor: str, site: SiteTarget, secrets: dict[str, str]
) -> Run:
    grant = BrowserGrant(domains=site.domains, allow_downloads=site.allow_downloads)
    session = await BrowserSession.start(
        grant,
        trace_dir=engine.settings.home / "browser" / job.job_id,
        step_timeout_s=engine.policy.limits.browser_step_timeout_s,
    )
    opened = _opened.get(None)
    if opened is not None:
        opened.append(session)
    await engine.log(
        job.id,
        "browser.session_started",
        actor,
        {"site": job.spec.target, "domains": site.domains, "start_url": site.start_url(),
         "downloads": site.allow_downloads, "credentials": sorted(secrets)},
    )  # fmt: skip
    return Run(engine, job, actor, site, session, secrets, artifacts=list(job.artifacts))


async def _run_steps(
    run: Run, steps: list[BrowserStep], start: int, *, then_model: bool = False
) -> JobRecord:
    for index in range(start, len(steps)):
        step = steps[index]
        try:
            await _take(run, step)
        except MutationPending as paused:
            await _record(run)
            if paused.before_step:  # the page's own request, before this step: it comes after
                return await _pause(run, paused.pending, "wait 0", None, None,
                                    step_index=index - 1, before_step=True)  # fmt: skip
            return await _pause(run, paused.pending, step.text(), None, None, step_index=index)
        except SandboxViolation as refusal:
            return await _refused(run, refusal)
        except (AcpError, PlaywrightError) as error:
            return await _failed(run, step.text(), error, index=index)
        await _record(run)
        run.took(step.text())
    if then_model:
        return await _run_model(run, _opening(run.job, run.site))
    return await _complete(run, f"{len(steps)} step(s) taken")


async def _take(run: Run, step: BrowserStep) -> None:
    session, args = run.session, step.args
    if step.verb == "goto":
        await session.goto(_url(run.site, args[0]))
    elif step.verb == "click":
        await session.click(args[0])
    elif step.verb == "fill" and step.secret is not None:
        await session.fill_secret(args[0], run.secrets[step.secret])
    elif step.verb == "fill":
        await session.fill(args[0], args[1])
    elif step.verb == "select":
        await session.select(args[0], args[1])
    elif step.verb == "wait":
        await session.wait(float(args[0]) if args[0].isdigit() else args[0])
    elif step.verb == "expect":
        await session.expect(args[0], args[1] if len(args) > 1 else None)
    else:
        await session.screenshot()


def _url(site: SiteTarget, where: str) -> str:
    if "://" in where or where.startswith(("data:", "javascript:", "about:", "blob:")):
        return where  # the session refuses what the grant does not allow
    return site.start_url() + "/" + where.lstrip("/")


async def _record(run: Run) -> None:
    """Log each step the session took since the last call, with its screenshot."""
    session = run.session

    def clean(text: str) -> str:
        return redact(session.scrub(text))

    for result in session.steps[run.recorded :]:
        shot = session.screenshot_bytes.pop(result.screenshot_sha256 or "", None)
        refs: tuple[str, ...] = ()
        if shot is not None:
            ref = run.engine.artifacts.put(
                f"step-{result.index + 1:02d}-{result.action}.png", shot, "image/png"
            )
            run.artifacts.append(ref)
            refs = (ref.sha256,)
        await run.engine.log(
            run.job.id,
            "browser.step",
            run.actor,
            {"index": result.index + 1, "action": result.action,
             "target": clean(result.target or "")[:500], "url": clean(result.url)[:500],
             "ok": result.ok, "detail": clean(result.detail)[:1000]},
            event_artifacts=refs,
        )  # fmt: skip
    run.recorded = len(session.steps)
    for refusal in session.refused:
        if refusal.get("logged"):
            continue
        refusal["logged"] = True
        await run.engine.log(
            run.job.id,
            "tool.refused",
            run.actor,
            {"tool": "browser", "kind": refusal["kind"], "url": clean(refusal["url"])[:500],
             "reason": refusal["reason"]},
        )  # fmt: skip


async def _pause(
    run: Run,
    pending: PendingAction,
    step_line: str,
    messages: list[dict[str, Any]] | None,
    call_id: str | None,
    *,
    step_index: int | None = None,
    reason: str | None = None,
    before_step: bool = False,
) -> JobRecord:
    engine, job = run.engine, run.job
    if gated_action(job, ACTION) is None:
        dropped = run.session.discard_pending()
        await _save_trace(run, final=True)
        return await engine.finish(
            job,
            JobState.failed,
            run.actor,
            "job.failed",
            reason=f"the page is about to mutate ({pending.description}), and no approval rule "
            f"in the policy covers browser mutations on '{job.spec.target}' (action "
            f"'{ACTION}'), so nothing was sent"
            + (f"; {dropped} held request(s) dropped" if dropped else ""),
            artifacts=run.artifacts,
        )
    shot = engine.artifacts.put(f"pending-{run.mutations + 1}.png", pending.screenshot, "image/png")
    trace = await _save_trace(run, final=False)
    run.artifacts.append(shot)
    state = {
        "step": step_index if step_index is not None else job.result.get("browser", {}).get("step"),
        "pending_step": step_line,
        **run.progress(),
        "segment": run.segment,
        "call_id": call_id,
        "before_step": before_step,
    }
    if messages is not None:
        ref = transcript_artifact(engine, messages)
        run.artifacts.append(ref)
        state["transcript_sha256"] = ref.sha256
    binding = pending.binding()
    action = {
        "action": ACTION,
        "site": job.spec.target,
        "kind": pending.kind,
        "description": redact(run.session.scrub(pending.description)),
        "step": redact(step_line),
        "url": redact(run.session.scrub(pending.url)),
        "screenshot_sha256": shot.sha256,
        "trace_sha256": trace.sha256,
        "binding": binding,
    }
    job = await engine.save_progress(job, result={**job.result, "browser": state})
    _live[job.id] = Live(run.session, pending, messages, call_id)
    return await ask_approval(
        engine,
        job,
        action,
        run.actor,
        artifacts=run.artifacts,
        event_artifacts=(shot.sha256, trace.sha256),
        reason=reason,
    )


async def _checkpoint_again(
    run: Run, step_line: str, messages: list[dict[str, Any]] | None, call_id: str | None
) -> JobRecord:
    """The page changed under an approval: take the step again and ask about what it is now."""
    step = parse_step(step_line)
    try:
        await _take(run, step)
        await run.session.check_held()
    except MutationPending as paused:
        await _record(run)
        return await _pause(run, paused.pending, step_line, messages, call_id,
                            reason="the page changed since the approval")  # fmt: skip
    except SandboxViolation as refusal:
        return await _refused(run, refusal)
    except (AcpError, PlaywrightError) as error:
        return await _failed(run, step_line, error)
    # Taken again, the step no longer mutates: it is done, and the job goes on.
    await _record(run)
    run.took(step_line)
    return await _go_on(run, messages, call_id, "done (no approval needed).")


def _plan(job: JobRecord) -> tuple[list[BrowserStep], bool]:
    """The steps the runtime takes itself, and whether the model takes over after them
    (with a model, the runtime first opens the site's start page for it)."""
    steps = parse_steps(job.spec.commands)
    if job.model.model == "direct":
        return steps, False
    return [parse_step("goto /"), *steps], True


async def _go_on(
    run: Run, messages: list[dict[str, Any]] | None, call_id: str | None, said: str
) -> JobRecord:
    """After the paused action: back to the model that asked for it, or the next step."""
    if messages is not None:
        observation = await run.session.observe()
        return await _run_model(run, _after_action(messages, call_id, said, observation))
    steps, then_model = _plan(run.job)
    index = run.job.result.get("browser", {}).get("step")
    start = len(steps) if index is None else index + 1
    return await _run_steps(run, steps, start, then_model=then_model)


async def _restore(
    engine: Engine,
    job: JobRecord,
    actor: str,
    site: SiteTarget,
    secrets: dict[str, str],
    state: dict[str, Any],
) -> Run | JobRecord:
    """A fresh context brought back to the pause by taking the steps before it again."""
    if state.get("mutations", 0):
        return await engine.finish(
            job,
            JobState.failed,
            actor,
            "job.failed",
            reason="the browser session holding this job's approved action is gone (the "
            "service restarted), and steps before it already changed the site, so they "
            "cannot be taken again safely; nothing more was sent. Check the site and submit "
            "the remaining steps as a new job.",
        )
    reason = "the paused browser is not in this worker"
    data = {"reason": reason, "steps": len(state.get("done", []))}
    await engine.log(job.id, "browser.session_restored", actor, data)
    run = await _start(engine, job, actor, site, secrets)
    run.segment = state.get("segment", 1) + 1
    line = ""
    try:
        for line in [*state.get("done", []), state["pending_step"]]:
            await _take(run, parse_step(line))
            run.took(line)
        await run.session.check_held()
    except MutationPending:
        await _record(run)
        if len(run.done) == len(state.get("done", [])):
            return run
        return await _fail_run(
            run, f"taken again after a restart, the earlier step `{line}` now needs approval; "
            "nothing was sent"
        )  # fmt: skip
    except SandboxViolation as refusal:
        return await _refused(run, refusal)
    except (AcpError, PlaywrightError) as error:
        return await _failed(run, state["pending_step"], error)
    await _record(run)
    return await _fail_run(
        run, "taken again after a restart, the steps no longer reach the approved action; "
        "nothing was sent"
    )  # fmt: skip


# --- endings ----------------------------------------------------------------------------


async def _save_trace(run: Run, *, final: bool) -> ArtifactRef:
    name = f"trace-{run.segment}.zip"
    if final and run.segment == 1:
        name = "trace.zip"
    path = await (run.session.stop(name) if final else run.session.save_trace(name))
    ref = run.engine.artifacts.put(name, path.read_bytes(), "application/zip")
    path.unlink(missing_ok=True)
    run.artifacts.append(ref)
    run.segment += 1
    await run.engine.log(
        run.job.id,
        "artifact.created",
        run.actor,
        {"name": name, "kind": "playwright-trace", "open_with": "playwright show-trace"},
        event_artifacts=(ref.sha256,),
    )
    return ref


async def _complete(
    run: Run, summary: str, messages: list[dict[str, Any]] | None = None
) -> JobRecord:
    try:
        await run.session.check_held("end")
    except MutationPending as paused:  # the page itself is about to send something
        await _record(run)
        return await _pause(run, paused.pending, "wait 0", messages, None,
                            step_index=len(run.job.spec.commands) - 1)  # fmt: skip
    await _record(run)
    await _save_trace(run, final=True)
    return await run.engine.finish(
        run.job,
        JobState.succeeded,
        run.actor,
        "job.succeeded",
        reason=f"{summary}; {run.mutations} approved mutation(s) sent",
        artifacts=run.artifacts,
        browser={**run.job.result.get("browser", {}), **run.progress()},
    )


async def _fail_run(run: Run, reason: str) -> JobRecord:
    run.session.discard_pending()
    await _save_trace(run, final=True)
    return await run.engine.finish(
        run.job,
        JobState.failed,
        run.actor,
        "job.failed",
        reason=reason,
        artifacts=run.artifacts,
        browser={**run.job.result.get("browser", {}), **run.progress()},
    )


async def _refused(run: Run, refusal: SandboxViolation) -> JobRecord:
    await _record(run)
    return await _fail_run(run, refusal.message)


async def _failed(
    run: Run, step_line: str, error: Exception, *, index: int | None = None
) -> JobRecord:
    await _record(run)
    message = error.message if isinstance(error, AcpError) else str(error).splitlines()[0]
    where = f"step {index + 1} " if index is not None else "step "
    return await _fail_run(run, f"{where}`{step_line}` failed: {redact(message)}")


async def _refuse_job(engine: Engine, job: JobRecord, actor: str, reason: str) -> JobRecord:
    await engine.log(job.id, "tool.refused", actor, {"tool": "browser", "reason": reason})
    return await engine.finish(job, JobState.failed, actor, "job.failed", reason=reason)


def _secrets_for(site: SiteTarget, name: str, steps: list[BrowserStep]) -> dict[str, str]:
    """The credential values the steps fill, read from the environment the policy names."""
    values: dict[str, str] = {}
    for step in steps:
        secret = step.secret
        if secret is None or secret in values:
            continue
        env = site.credentials.get(secret)
        if env is None:
            known = ", ".join(sorted(site.credentials)) or "none"
            raise AcpError(
                f"site '{name}' has no credential named '{secret}' (known: {known})",
                hint="the policy's targets.sites.<site>.credentials lists them",
            )
        value = os.environ.get(env)
        if not value:
            raise AcpError(
                f"the credential '{secret}' for '{name}' is not set: the service needs the "
                f"environment variable {env}"
            )
        values[secret] = value
    return values


# --- model mode -------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You operate a web browser for the site '{target}' ({start}). You see pages as accessibility "
    "trees. Act with the tools, one step at a time; selectors are Playwright selectors, best "
    'taken from the tree, e.g. role=button[name="Save"] or text=User 42. Paths may be '
    "relative to the site. The runtime pauses any action that changes data until a person "
    "approves it; you do not need to ask first. Fill credentials only with fill_secret and a "
    "credential name ({credentials}); you never see their values. Finish by replying without "
    "a tool call, with a short report of what you found or did. If the request is ambiguous, "
    "call `ask` with one precise question."
)


TOOLS = [
    function("goto", "Open a URL or a path of the site.", url="path or http(s) URL"),
    function("click", "Click an element.", selector="Playwright selector"),
    function(
        "fill", "Type a value into a field.", selector="Playwright selector", value="the text"
    ),
    function(
        "fill_secret", "Fill a credential the runtime holds.", selector="selector", name="name"
    ),
    function("select", "Choose an option.", selector="Playwright selector", value="option value"),
    function("wait_for", "Wait for an element to appear.", selector="Playwright selector"),
    function("snapshot", "Read the current page again (its accessibility tree)."),
    function("ask", "Ask the requester one clarifying question and stop.", question="the question"),
]


def _opening(job: JobRecord, site: SiteTarget) -> list[dict[str, Any]]:
    return opening_messages(
        job.spec.target or "",
        job.spec.instruction,
        job.result.get("answers", []),
        SYSTEM_PROMPT,
        start=site.start_url(),
        credentials=", ".join(sorted(site.credentials)) or "none",
    )


def _load_messages(engine: Engine, state: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The conversation saved at the pause (None: the model had not started yet)."""
    digest = state.get("transcript_sha256")
    return json.loads(engine.artifacts.read(digest)) if digest else None


def _step_of(name: str, args: dict[str, Any]) -> BrowserStep:
    """A model's tool call as a browser step (the same grammar a person writes)."""
    text = {k: str(v) for k, v in args.items()}
    if name == "goto":
        return BrowserStep(verb="goto", args=[text.get("url", "")])
    if name == "click":
        return BrowserStep(verb="click", args=[text.get("selector", "")])
    if name == "fill":
        value = text.get("value", "")
        if value.startswith("secret:"):
            raise AcpError("credentials are filled with fill_secret, by name")
        return BrowserStep(verb="fill", args=[text.get("selector", ""), value])
    if name == "fill_secret":
        secret = "secret:" + text.get("name", "")
        return BrowserStep(verb="fill", args=[text.get("selector", ""), secret])
    if name == "select":
        return BrowserStep(verb="select", args=[text.get("selector", ""), text.get("value", "")])
    if name == "wait_for":
        return BrowserStep(verb="wait", args=[text.get("selector", "")])
    raise AcpError(f"there is no tool named '{name}'")


def _after_action(
    messages: list[dict[str, Any]], call_id: str | None, said: str, observation: str
) -> list[dict[str, Any]]:
    """The model hears how its paused action ended (a tool result, or a note if no call)."""
    if call_id:
        messages.append(tool_result(call_id, f"{said}\n{observation}"))
    else:
        messages.append({"role": "user", "content": f"The runtime: {said}\n{observation}"})
    return messages


async def _run_model(run: Run, messages: list[dict[str, Any]]) -> JobRecord:
    from runtime.models import ModelClient, load_litellm

    engine, job = run.engine, run.job
    limits = engine.policy.limits
    client = ModelClient(engine, job, actor=run.actor)
    await load_litellm()  # in a thread: the first import would stall this worker's browsers
    if len(messages) == 2 + len(job.result.get("answers", [])):
        messages.append({"role": "user", "content": await run.session.observe()})
    steps_used = sum(1 for m in messages if m.get("role") == "assistant")
    for _ in range(steps_used, limits.agent_max_steps):
        try:
            reply = await client.complete(messages, TOOLS)
        except (BudgetExceeded, ModelUnavailable) as error:
            return await _fail_run(run, error.message)
        messages.append(reply.message)
        if not reply.tool_calls:
            await _transcript(run, messages)
            said = f"the model finished: {(reply.content or '')[:500]}"
            return await _complete(run, said, messages)
        for call in reply.tool_calls:
            try:
                args = json.loads(call.arguments or "{}")
                if not isinstance(args, dict):
                    raise ValueError
            except ValueError:
                messages.append(tool_result(call.id, "error: the arguments are not a JSON object"))
                continue
            if call.name == "ask":
                return await _model_asks(run, messages, call.id, str(args.get("question", "")))
            if call.name == "snapshot":
                messages.append(tool_result(call.id, await run.session.observe()))
                continue
            try:
                step = _step_of(call.name, args)
                if step.secret is not None:
                    run.secrets.update(_secrets_for(run.site, job.spec.target or "", [step]))
                await _take(run, step)
            except MutationPending as paused:
                await _record(run)
                line = "wait 0" if paused.before_step else step.text()
                return await _pause(run, paused.pending, line, messages, call.id,
                                    before_step=paused.before_step)  # fmt: skip
            except SandboxViolation as refusal:
                await _record(run)
                said = refusal.message
                messages.append(tool_result(call.id, said if said.startswith("refused")
                                            else f"refused: {said}"))  # fmt: skip
                continue
            except (AcpError, PlaywrightError) as error:
                await _record(run)
                text = error.message if isinstance(error, AcpError) else str(error).splitlines()[0]
                messages.append(tool_result(call.id, f"error: {redact(text)}"))
                continue
            await _record(run)
            run.took(step.text())
            messages.append(tool_result(call.id, f"done.\n{await run.session.observe()}"))
    await _transcript(run, messages)
    return await _fail_run(
        run, f"the agent stopped: step limit of {limits.agent_max_steps} reached"
    )


async def _transcript(run: Run, messages: list[dict[str, Any]]) -> None:
    ref = transcript_artifact(run.engine, messages)
    run.artifacts.append(ref)
    await run.engine.log(run.job.id, "agent.transcript", run.actor, {"messages": len(messages)},
                         event_artifacts=(ref.sha256,))  # fmt: skip


async def _model_asks(
    run: Run, messages: list[dict[str, Any]], call_id: str, question: str
) -> JobRecord:
    messages.append(tool_result(call_id, "asked the requester; waiting"))
    await _transcript(run, messages)
    run.session.discard_pending()
    await _save_trace(run, final=True)
    engine = run.engine
    question = question[:2000] or "Please clarify."

    async def body(conn, fresh: JobRecord) -> JobRecord:
        return await engine.transition(
            conn,
            fresh,
            JobState.needs_clarification,
            actor=run.actor,
            kind="job.clarification_requested",
            data={"question": question, "options": [], "by": "model"},
            clarification=Clarification(question=question, field="agent"),
            artifacts=run.artifacts,
        )

    return await engine.locked(run.job.id, body)
