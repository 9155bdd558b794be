"""Code jobs: run explicit steps in a sandboxed worktree, leave a diff, publish after approval.

Every tool call is authorized against the job's grant here, before it runs; a refusal is an
audit event. The model (later) and the commands are untrusted; git runs outside the sandbox
only with hooks and filters disabled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import ApprovalMismatch, PublishConflict, SandboxViolation
from runtime.jobs import JobRecord, JobState
from runtime.policy import RepoTarget
from runtime.sandbox import worktree as wt
from runtime.secrets import redact
from runtime.settings import SAMPLES_DIR
from runtime.toolbox import Toolbox

if TYPE_CHECKING:
    from runtime.engine import Engine


def repo_path(engine: Engine, target: RepoTarget) -> Path:
    return Path(target.path.replace("{ACP_HOME}", str(engine.settings.home))).expanduser()


async def ensure_repo(engine: Engine, name: str) -> tuple[RepoTarget, Path]:
    """The repo a target names; a bundled sample is created on first use."""
    target = engine.policy.targets.repos[name]
    path = repo_path(engine, target)
    if target.sample and not (path / ".git").exists():
        await wt.init_sample_repo(SAMPLES_DIR / target.sample, path, target.base_branch)
    return target, path


async def execute(engine: Engine, job: JobRecord, worker_id: str) -> JobRecord:
    """Run the job's steps; end awaiting approval, succeeded (no change) or failed."""
    actor = f"worker:{worker_id}"
    target, path = await ensure_repo(engine, job.spec.target or "")
    tree = await wt.create_worktree(
        path, target.base_branch, job.job_id, engine.settings.worktrees_dir
    )
    await engine.log(
        job.id,
        "sandbox.worktree_created",
        actor,
        {"branch": tree.branch, "base_branch": tree.base_branch, "base_commit": tree.base_commit},
    )
    toolbox = Toolbox(engine, job, tree, actor)
    try:
        for index, command in enumerate(job.spec.commands, start=1):
            try:
                result = await toolbox.call("shell", command=command)
            except SandboxViolation as refusal:
                return await engine.finish(
                    job,
                    JobState.failed,
                    actor,
                    "job.failed",
                    reason=refusal.message,
                    artifacts=[*job.artifacts, *toolbox.artifacts],
                )
            if result.exit_code != 0:
                why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
                return await engine.finish(
                    job,
                    JobState.failed,
                    actor,
                    "job.failed",
                    reason=f"step {index} `{command}` {why}; see command-{index}.log",
                    artifacts=[*job.artifacts, *toolbox.artifacts],
                )
        head = await wt.commit_all(
            tree,
            f"{job.job_id}: {job.spec.instruction[:72]}",
            author_name=job.spec.requester,
            author_email=f"{job.spec.requester}@acp.local",
        )
        if head is None:
            return await engine.finish(
                job,
                JobState.succeeded,
                actor,
                "job.succeeded",
                reason="the steps changed no file; nothing to publish",
                artifacts=[*job.artifacts, *toolbox.artifacts],
            )
        diff = await wt.diff(tree)
    finally:
        await wt.remove_worktree(tree)
    ref = engine.artifacts.put("diff.patch", redact(diff.patch).encode(), "text/x-diff")
    artifacts = [*job.artifacts, *toolbox.artifacts, ref]
    stat = diff.stat.model_dump()
    await engine.log(
        job.id,
        "artifact.created",
        actor,
        {"name": "diff.patch", "stat": stat},
        event_artifacts=(ref.sha256,),
    )
    pending = {
        "action": "merge" if target.publish == "merge" else "push",
        "repo": job.spec.target,
        "base_branch": target.base_branch,
        "job_branch": tree.branch,
        "base_commit": diff.base_commit,
        "head_commit": diff.head_commit,
        "diff_sha256": ref.sha256,
        "stat": stat,
    }
    return await request_or_publish(engine, job, pending, artifacts, actor)


def gated_action(job: JobRecord, action: str) -> str | None:
    """The approval gate this publish action stops at: its own, or a general 'publish' one."""
    gated = {gate["action"] for gate in job.decision.get("approvals", [])}
    if action in gated:
        return action
    return "publish" if "publish" in gated else None


async def request_or_publish(
    engine: Engine, job: JobRecord, pending: dict[str, Any], artifacts: list, actor: str
) -> JobRecord:
    if gated_action(job, pending["action"]):
        return await ask_approval(engine, job, pending, actor, artifacts=artifacts)
    job = await engine.save_progress(job, pending_action=pending, artifacts=artifacts)
    return await publish(engine, job, actor)


async def ask_approval(
    engine: Engine,
    job: JobRecord,
    pending: dict[str, Any],
    actor: str,
    *,
    artifacts: list,
    event_artifacts: tuple[str, ...] = (),
    reason: str | None = None,
) -> JobRecord:
    """Pause the job on an approval request bound to the hash of exactly `pending`."""
    gate = engine.new_gate(job, gated_action(job, pending["action"]) or "publish", pending)

    async def body(conn, fresh: JobRecord) -> JobRecord:
        return await engine.transition(
            conn,
            fresh,
            JobState.awaiting_approval,
            actor=actor,
            kind="approval.requested",
            data={
                "action": gate.action,
                "action_hash": gate.action_hash,
                "pending": pending,
                "approvers": gate.approvers,
                "four_eyes": gate.four_eyes,
                "expires_at": gate.expires_at.isoformat() if gate.expires_at else None,
                "reason": reason,
            },
            event_artifacts=event_artifacts,
            pending_action=pending,
            approvals=[*fresh.approvals, gate],
            artifacts=artifacts,
        )

    return await engine.locked(job.id, body)


async def publish(engine: Engine, job: JobRecord, actor: str) -> JobRecord:
    """Merge (or push) exactly the change that was approved; anything else goes back for review."""
    pending = job.pending_action or {}
    approved = next((g for g in reversed(job.approvals) if g.decision == "approved"), None)
    if approved is not None:
        from runtime.engine import pending_hash

        if approved.action_hash != pending_hash(pending):
            raise ApprovalMismatch(f"{job.job_id}: the approved change is not the pending one")
    target, path = await ensure_repo(engine, pending["repo"])
    message = f"Merge {pending['job_branch']} ({job.job_id}): {job.spec.instruction[:60]}"
    try:
        if target.publish == "push":
            commit = await wt.publish_push(
                path,
                target.remote or "origin",
                pending["job_branch"],
                target.remote_branch or pending["job_branch"],
                pending["head_commit"],
            )
        else:
            async with publish_lock(path, target.base_branch):
                commit = await wt.publish_merge(
                    path, target.base_branch, pending["job_branch"], pending["head_commit"], message
                )
    except ApprovalMismatch as moved:
        await engine.log(
            job.id,
            "approval.invalidated",
            actor,
            {"reason": moved.message, "approved_hash": approved.action_hash if approved else None},
        )
        return await rerequest(engine, job, path, pending, actor)
    except PublishConflict as conflict:
        return await engine.finish(
            job, JobState.failed, actor, "publish.failed", reason=conflict.message
        )
    return await engine.finish(
        job,
        JobState.succeeded,
        actor,
        "publish.merged" if target.publish == "merge" else "publish.pushed",
        reason=f"published as {commit[:12]} on {target.base_branch}",
        published_commit=commit,
    )


def publish_lock(path: Path, base_branch: str):
    """In-process serialisation on top of the cross-process file lock in publish_merge."""
    key = (str(path), base_branch)
    lock = _LOCKS.setdefault(key, asyncio.Lock())
    return lock


_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


async def rerequest(
    engine: Engine, job: JobRecord, path: Path, old: dict[str, Any], actor: str
) -> JobRecord:
    """The branch moved after review: show the change as it is now and ask again."""
    head = await wt.branch_head(path, old["job_branch"])
    diff = await wt.diff_range(path, old["base_commit"], head)
    ref = engine.artifacts.put("diff.patch", redact(diff.patch).encode(), "text/x-diff")
    pending = {
        **old,
        "head_commit": head,
        "diff_sha256": ref.sha256,
        "stat": diff.stat.model_dump(),
    }
    return await ask_approval(
        engine,
        job,
        pending,
        actor,
        artifacts=[*job.artifacts, ref],
        event_artifacts=(ref.sha256,),
        reason="the change differs from what was approved",
    )


async def discard_checkout(engine: Engine, job: JobRecord) -> bool:
    """Remove the checkout a crashed run left behind; the job branch stays for the record."""
    if job.spec.target not in engine.policy.targets.repos:
        return False
    _, path = await ensure_repo(engine, job.spec.target)
    return await wt.discard_worktree(path, engine.settings.worktrees_dir, job.job_id)


async def rollback(engine: Engine, job: JobRecord) -> str:
    pending = job.pending_action or {}
    target, path = await ensure_repo(engine, job.spec.target or pending.get("repo", ""))
    async with publish_lock(path, target.base_branch):
        return await wt.revert_merge(
            path,
            target.base_branch,
            job.result["published_commit"],
            f"Revert {job.job_id}: {job.spec.instruction[:60]}",
        )
