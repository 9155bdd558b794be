"""Running a code (or doc) job: its steps or its model loop in a sandboxed worktree, then a
commit, a diff and the change proposed for approval.

Every tool call goes through the job's Toolbox, authorized against its grant; a refusal is
an audit event. The commands and the model are untrusted; git runs outside the sandbox only
with hooks and filters disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.agent import (
    AgentOutcome,
    job_context,
    keep_transcript,
    opening_messages,
    run_agent,
)
from runtime.errors import BudgetExceeded, ModelUnavailable, SandboxViolation
from runtime.jobs import JobRecord
from runtime.kinds.base import Failed, JobContext, NeedsAnswer, NeedsApproval, Outcome, Succeeded
from runtime.kinds.code import commits
from runtime.kinds.code.environment import EnvironmentSetupFailed
from runtime.kinds.code.pending import CodeChange
from runtime.kinds.code.plan import sandbox_plan
from runtime.kinds.code.repo import fetched
from runtime.models import ModelClient, load_litellm
from runtime.sandbox import worktree as wt
from runtime.secrets import redact
from runtime.toolbox import Toolbox

if TYPE_CHECKING:
    from runtime.kinds.code.kind import CodeKind


async def execute(kind: CodeKind, ctx: JobContext) -> Outcome:
    """Run the job's steps; propose the change, or end succeeded (no change) or failed."""
    job, target = ctx.job, ctx.target
    if target is None:
        return Failed(
            reason=f"target {job.spec.target!r} is not in the policy this worker runs with; "
            "nothing ran. Restart the worker after adding a target, then submit the job again."
        )
    path, tip = await fetched(ctx.settings, job.spec.target or "", target)
    await ctx.recorder.log("repo.fetched", {"base_branch": target.base_branch, "commit": tip})
    tree = await wt.create_worktree(
        path, target.base_branch, job.job_id, ctx.settings.worktrees_dir, start_commit=tip
    )
    await ctx.recorder.log(
        "sandbox.worktree_created",
        {"branch": tree.branch, "base_branch": tree.base_branch, "base_commit": tree.base_commit},
    )
    proposed = False
    try:
        try:
            plan, made = await sandbox_plan(ctx, path, tree.base_commit)
        except EnvironmentSetupFailed as failed:
            log = ctx.recorder.put("setup.log", failed.log.encode())
            return Failed(reason=failed.message, artifacts=[log])
        toolbox = ctx.toolbox(tree, sandbox=plan)
        toolbox.artifacts.extend(made)
        run = run_steps if job.model.model == "direct" else run_model
        ended = await run(kind, ctx, toolbox)
        if ended is not None:
            return ended
        author_name, author_email = commits.identity(ctx.policy, job.spec.requester)
        head = await wt.commit_all(
            tree, commits.job_message(job), author_name=author_name, author_email=author_email
        )
        if head is None:
            return Succeeded(
                reason="the steps changed no file; nothing to publish", artifacts=toolbox.artifacts
            )
        diff = await wt.diff(tree)
        proposed = True
    finally:
        # The branch stays only while its change waits for approval.
        await wt.remove_worktree(tree, delete_branch=not proposed)
    ref = ctx.recorder.put("diff.patch", redact(diff.patch).encode(), "text/x-diff")
    artifacts = [*toolbox.artifacts, ref]
    stat = diff.stat.model_dump()
    await ctx.recorder.log(
        "artifact.created", {"name": "diff.patch", "stat": stat}, artifacts=(ref.sha256,)
    )
    reviewed = await kind.review(ctx, path, diff.base_commit, diff.head_commit, artifacts)
    if isinstance(reviewed, Failed):
        return reviewed
    pending = CodeChange(
        action=target.publish,
        repo=job.spec.target or "",
        base_branch=target.base_branch,
        job_branch=tree.branch,
        base_commit=diff.base_commit,
        head_commit=diff.head_commit,
        diff_sha256=ref.sha256,
        stat=stat,
        **reviewed,
    )
    return NeedsApproval(pending, artifacts=artifacts)


async def run_steps(kind: CodeKind, ctx: JobContext, toolbox: Toolbox) -> Outcome | None:
    """Direct mode: the job's explicit steps, in order; None when every step succeeded."""
    for index, command in enumerate(ctx.job.spec.commands, start=1):
        failed = await kind.run_step(toolbox, index, command)
        if failed is not None:
            return Failed(reason=failed, artifacts=toolbox.artifacts)
    return None


async def shell_step(toolbox: Toolbox, index: int, command: str) -> str | None:
    """One shell step; why it failed, or None."""
    try:
        result = await toolbox.call("shell", command=command)
    except SandboxViolation as refusal:
        return refusal.message
    if result.exit_code != 0:
        why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
        return f"step {index} `{command}` {why}; see command-{index}.log"
    return None


async def agent_loop(
    kind: CodeKind,
    job: JobRecord,
    toolbox: Toolbox,
    client: ModelClient,
    *,
    max_steps: int,
    time_limit_s: float,
) -> AgentOutcome:
    """The job's model loop, with its kind's prompt and tools and the requester's answers. A
    run and its replay both come through here, so a replay has exactly what its run had."""
    messages = opening_messages(
        job.spec.target or "",
        job.spec.instruction,
        job.answers,
        kind.system_prompt,
        context=job_context(job, toolbox.recorder.read),
    )
    return await run_agent(
        toolbox,
        client,
        messages,
        max_steps=max_steps,
        time_limit_s=time_limit_s,
    )


async def run_model(kind: CodeKind, ctx: JobContext, toolbox: Toolbox) -> Outcome | None:
    """The agent loop for a job with a model route; None when it finished and left a change."""
    limits = ctx.limits
    client = ctx.model()
    await load_litellm()  # before the agent's deadline starts: the first import takes seconds
    try:
        outcome = await agent_loop(
            kind,
            ctx.job,
            toolbox,
            client,
            max_steps=limits.agent_max_steps,
            time_limit_s=limits.agent_time_limit_s,
        )
    except (BudgetExceeded, ModelUnavailable) as error:
        return Failed(reason=error.message, artifacts=toolbox.artifacts)
    await keep_transcript(ctx.recorder, toolbox, outcome)
    if outcome.kind == "asked":
        return NeedsAnswer(question=outcome.question or "", artifacts=toolbox.artifacts)
    if outcome.kind == "stopped":
        return Failed(reason=f"stopped: {outcome.summary}", artifacts=toolbox.artifacts)
    return None
