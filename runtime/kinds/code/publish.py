"""Publishing a code (or doc) job's approved change, asking again when it moved, rolling back.

Only the approved commits are merged or pushed (the engine has checked the approval's hash);
a branch that moved after review goes back for review with the change as it is now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.errors import ApprovalMismatch, PublishConflict
from runtime.kinds.base import Failed, JobContext, NeedsApproval, Outcome, Succeeded
from runtime.kinds.code.pending import CodeChange
from runtime.kinds.code.repo import ensure_named_repo, ensure_repo
from runtime.sandbox import worktree as wt
from runtime.secrets import redact

if TYPE_CHECKING:
    from pathlib import Path

    from runtime.kinds.code.kind import CodeKind


async def publish(kind: CodeKind, ctx: JobContext, pending: CodeChange) -> Outcome:
    """Merge (or push) exactly the change that was approved."""
    job = ctx.job
    target = ctx.policy.targets.repos[pending.repo]
    path = await ensure_repo(ctx.settings, target)
    message = f"Merge {pending.job_branch} ({job.job_id}): {job.spec.instruction[:60]}"
    try:
        if target.publish == "push":
            commit = await wt.publish_push(
                path,
                target.remote or "origin",
                pending.job_branch,
                target.remote_branch or pending.job_branch,
                pending.head_commit,
            )
        else:
            commit = await wt.publish_merge(
                path, target.base_branch, pending.job_branch, pending.head_commit, message
            )
    except ApprovalMismatch as moved:
        approved = next((g for g in reversed(job.approvals) if g.decision == "approved"), None)
        await ctx.recorder.log(
            "approval.invalidated",
            {"reason": moved.message, "approved_hash": approved.action_hash if approved else None},
        )
        return await rerequest(kind, ctx, path, pending)
    except PublishConflict as conflict:
        return Failed(reason=conflict.message, event="publish.failed")
    return Succeeded(
        reason=f"published as {commit[:12]} on {target.base_branch}",
        event="publish.merged" if target.publish == "merge" else "publish.pushed",
        result={"published_commit": commit},
    )


async def rerequest(kind: CodeKind, ctx: JobContext, path: Path, old: CodeChange) -> Outcome:
    """The branch moved after review: show the change as it is now and ask again."""
    head = await wt.branch_head(path, old.job_branch)
    diff = await wt.diff_range(path, old.base_commit, head)
    ref = ctx.recorder.put("diff.patch", redact(diff.patch).encode(), "text/x-diff")
    artifacts = [ref]
    reviewed = await kind.review(ctx, path, old.base_commit, head, artifacts)
    if isinstance(reviewed, Failed):
        return reviewed
    changes: dict[str, Any] = {
        **old.canonical(),
        "head_commit": head,
        "diff_sha256": ref.sha256,
        "stat": diff.stat.model_dump(),
        **reviewed,
    }
    return NeedsApproval(
        CodeChange.model_validate(changes),
        artifacts=artifacts,
        event_artifacts=(ref.sha256,),
        reason="the change differs from what was approved",
    )


async def discard_checkout(ctx: JobContext) -> bool:
    """Remove the checkout a crashed run left behind; the job branch stays for the record."""
    job = ctx.job
    if job.spec.target not in ctx.policy.targets.repos:
        return False
    path = await ensure_named_repo(ctx.settings, ctx.policy, job.spec.target)
    return await wt.discard_worktree(path, ctx.settings.worktrees_dir, job.job_id)


async def rollback(ctx: JobContext) -> dict[str, Any]:
    job = ctx.job
    repo = job.spec.target or getattr(job.pending_action, "repo", "")
    target = ctx.policy.targets.repos[repo]
    path = await ensure_repo(ctx.settings, target)
    revert = await wt.revert_merge(
        path,
        target.base_branch,
        job.result["published_commit"],
        f"Revert {job.job_id}: {job.spec.instruction[:60]}",
    )
    return {"revert_commit": revert}
