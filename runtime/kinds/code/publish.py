"""Publishing a code (or doc) job's approved change to its target, asking again when it moved,
and rolling it back, in each of the target's modes:

- merge: the approved commit merged onto the remote's base branch (fetched first), pushed
  with a compare-and-swap on the tip it was merged onto;
- push: the approved commit pushed as the job's branch (or the target's remote_branch);
- pull_request: pushed as the job's branch, and a pull request opened on the forge.

Only the approved tree is published (the engine has checked the approval's hash): the commit
pushed is the approved one made again with its Approved-by trailers, and it is checked to hold
exactly the approved tree. A branch that moved after review goes back for review.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from runtime.errors import AcpError, ApprovalMismatch, GitCommandFailed, PublishConflict
from runtime.kinds.base import Failed, JobContext, NeedsApproval, Outcome, Succeeded
from runtime.kinds.code import commits
from runtime.kinds.code.pending import CodeChange
from runtime.kinds.code.repo import mirror_of, repo_url, token
from runtime.policy import RepoTarget
from runtime.sandbox import mirror as mirrors
from runtime.sandbox import worktree as wt
from runtime.secrets import redact

if TYPE_CHECKING:
    from pathlib import Path

    from runtime.kinds.code.kind import CodeKind

ATTEMPTS = 3  # a base branch that moves under each attempt fails the publish after this many


class _Remote:
    """One target's remote as a publish or rollback reaches it."""

    def __init__(self, ctx: JobContext, name: str, target: RepoTarget, mirror: Path) -> None:
        self.name, self.target, self.mirror = name, target, mirror
        self.url = repo_url(ctx.settings, target)
        self.where = mirrors.display(self.url)
        self.token = token(target)

    async def fetch(self, branch: str) -> str:
        return await mirrors.fetch(self.mirror, self.url, branch, self.token)

    async def tip(self, branch: str) -> str | None:
        """The remote branch's tip, fetched (None: it does not exist)."""
        try:
            return await self.fetch(branch)
        except GitCommandFailed as e:
            if "does not exist" in e.message:
                return None
            raise

    async def push(self, commit: str | None, branch: str, *, expect: str | None) -> None:
        await mirrors.push(self.mirror, self.url, commit, branch, expect=expect, token=self.token)


async def publish(kind: CodeKind, ctx: JobContext, pending: CodeChange) -> Outcome:
    """Publish exactly the change that was approved, as the target's mode says."""
    job = ctx.job
    target = ctx.policy.targets.repos[pending.repo]
    mirror = await mirror_of(ctx.settings, pending.repo)
    try:
        remote = _Remote(ctx, pending.repo, target, mirror)
        done = await mirrors.kept(mirror, f"published/{job.job_id}")
        if done is None:
            job_head = await _job_head(remote, pending.job_branch)
            if job_head != pending.head_commit:
                approved = next(
                    (g for g in reversed(job.approvals) if g.decision == "approved"), None
                )
                moved = ApprovalMismatch(
                    "the job branch changed since it was approved",
                    hint=f"{pending.job_branch} is now at {job_head or 'nothing'}, approval was "
                    f"for {pending.head_commit}; review and approve the new change",
                )
                await ctx.recorder.log(
                    "approval.invalidated",
                    {
                        "reason": moved.message,
                        "approved_hash": approved.action_hash if approved else None,
                    },
                )
                if job_head is None:
                    return Failed(reason=f"{moved.message}: {moved.hint}", event="publish.failed")
                return await rerequest(kind, ctx, mirror, pending)
        commit = done or await _approved_commit(ctx, mirror, pending)
        if pending.action == "merge":
            published = done or await _merge(ctx, remote, pending, commit)
            ended = Succeeded(
                reason=f"published as {published[:12]} on {target.base_branch} of {remote.where}",
                event="publish.merged",
                result={"published_commit": published, "published_to": remote.where},
            )
        else:
            branch = target.remote_branch or pending.job_branch
            await _push_branch(remote, branch, commit)
            published = commit
            result: dict[str, Any] = {
                "published_commit": commit,
                "published_branch": branch,
                "published_to": remote.where,
            }
            reason = (
                f"pushed {branch} ({commit[:12]}) to {remote.where}; "
                f"{target.base_branch} there is unchanged"
            )
            event = "publish.pushed"
            if pending.action == "pull_request":
                pr = await _open_pull_request(ctx, target, branch, commit)
                result["pull_request"] = pr
                reason = (
                    f"opened pull request #{pr['number']} ({pr['url']}) to merge {branch} "
                    f"into {target.base_branch}"
                )
                event = "publish.pull_request"
            ended = Succeeded(reason=reason, event=event, result=result)
    except PublishConflict as conflict:
        await _drop_branch(mirror, pending.job_branch)
        hint = f" ({conflict.hint})" if conflict.hint else ""
        return Failed(reason=f"{conflict.message}{hint}", event="publish.failed")
    except AcpError as error:  # an unreachable remote or forge, a token not set: nothing moved
        hint = f" ({error.hint})" if error.hint else ""
        return Failed(reason=f"{error.message}{hint}", event="publish.failed")
    await mirrors.keep(mirror, f"published/{job.job_id}", published)
    # Merge mode publishes the merge, not the branch; the other modes pushed it upstream.
    await _drop_branch(mirror, pending.job_branch)
    return ended


async def _job_head(remote: _Remote, branch: str) -> str | None:
    """The job branch's tip in the mirror. A job approved under a release that kept job
    branches in the repository itself has its branch brought into the mirror (and removed
    from the repository once it is)."""
    if branch in await mirrors.branches(remote.mirror, branch):
        return await wt.branch_head(remote.mirror, branch)
    adopted = await mirrors.adopt_branch(remote.mirror, remote.url, branch, remote.token)
    if adopted is not None:
        with contextlib.suppress(AcpError):
            await remote.push(None, branch, expect=adopted)
    return adopted


async def _drop_branch(mirror: Path, branch: str) -> None:
    await mirrors.delete_branch(mirror, branch)


def _approval_time(ctx: JobContext, action: str) -> str | None:
    gate = next(
        (g for g in reversed(ctx.job.approvals) if g.action == action and g.decided_at), None
    )
    return f"{int(gate.decided_at.timestamp())} +0000" if gate and gate.decided_at else None


async def _approved_commit(ctx: JobContext, mirror: Path, pending: CodeChange) -> str:
    """The approved head made again on the approved base with its Approved-by trailers: same
    tree, same author; the same approval always makes the same commit."""
    name, email, date, message = await wt.commit_info(mirror, pending.head_commit)
    approved_by = commits.approvers(ctx.job, pending.action)
    text = commits.approved_message(message, ctx.job, ctx.policy, approved_by)
    commit = await wt.make_commit(
        mirror,
        pending.head_commit,
        [pending.base_commit],
        text,
        author=(name, email, date),
        committed_at=_approval_time(ctx, pending.action) or date,
    )
    if await wt.tree_of(mirror, commit) != await wt.tree_of(mirror, pending.head_commit):
        raise AcpError("the commit to publish does not hold the approved tree; nothing published")
    return commit


async def _merge(ctx: JobContext, remote: _Remote, pending: CodeChange, commit: str) -> str:
    base = remote.target.base_branch
    name, email = commits.identity(ctx.policy, ctx.job.spec.requester)
    message = commits.merge_message(
        ctx.job, pending.job_branch, ctx.policy, commits.approvers(ctx.job, pending.action)
    )
    for _attempt in range(ATTEMPTS):
        tip = await remote.fetch(base)
        if await wt.is_ancestor(remote.mirror, commit, tip):
            return await wt.merge_that_brought(remote.mirror, tip, commit)  # a retry
        tree = await wt.merged_tree(remote.mirror, tip, commit, pending.job_branch)
        merge = await wt.make_commit(
            remote.mirror, tree, [tip, commit], message, author=(name, email, None)
        )
        try:
            await remote.push(merge, base, expect=tip)
        except mirrors.RemoteMoved:
            continue
        return merge
    raise PublishConflict(f"{base} in {remote.where} kept moving while publishing; try again")


async def _push_branch(remote: _Remote, branch: str, commit: str) -> None:
    """Push commit as branch: created, or moved forward from where it is."""
    for _attempt in range(ATTEMPTS):
        tip = await remote.tip(branch)
        if tip == commit:
            return
        if tip is not None and not await wt.is_ancestor(remote.mirror, tip, commit):
            raise PublishConflict(
                f"{branch} in {remote.where} has commits the job's change does not",
                hint="name another remote_branch, or run the job again from it",
            )
        try:
            await remote.push(commit, branch, expect=tip)
        except mirrors.RemoteMoved:
            continue
        return
    raise PublishConflict(f"{branch} in {remote.where} kept moving while pushing; try again")


async def _open_pull_request(
    ctx: JobContext, target: RepoTarget, branch: str, commit: str
) -> dict[str, Any]:
    from runtime.kinds.code import forge

    previous = ctx.job.result.get("pull_request")
    if previous:  # opened by a pass a crash cut short
        return dict(previous)
    assert target.forge is not None
    job = ctx.job
    subject = commits.job_message(job).splitlines()[0]
    approved_by = commits.approvers(job, "pull_request")
    body = (
        f"Opened by the agent control plane for {job.job_id}, requested by "
        f"{job.spec.requester}{', approved by ' + ', '.join(approved_by) if approved_by else ''}."
        f"\n\n> {redact(job.spec.instruction)}\n\nCommit {commit}."
    )
    pr = await forge.open_pull_request(
        target.forge,
        forge.token_for(target.forge),
        head=branch,
        base=target.base_branch,
        title=subject,
        body=body,
    )
    shown = {"number": pr.number, "url": pr.url}
    await ctx.remember(pull_request=shown)
    return shown


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
    """Remove the checkout and branch a crashed run left behind."""
    job = ctx.job
    if job.spec.target not in ctx.policy.targets.repos:
        return False
    mirror = await mirror_of(ctx.settings, job.spec.target)
    found = await wt.discard_worktree(mirror, ctx.settings.worktrees_dir, job.job_id)
    await _drop_branch(mirror, wt.BRANCH_PREFIX + job.job_id)
    return found


async def drop_job_branch(ctx: JobContext) -> None:
    """The job ended without publishing its branch (rejected, expired, cancelled)."""
    if ctx.job.spec.target in ctx.policy.targets.repos:
        mirror = await mirror_of(ctx.settings, ctx.job.spec.target)
        await _drop_branch(mirror, wt.BRANCH_PREFIX + ctx.job.job_id)


async def rollback(ctx: JobContext) -> dict[str, Any]:
    """Undo a published job in its mode: a revert pushed onto the base branch (merge) or onto
    the pushed branch (push); for a pull request, close it if it is open, or open one that
    reverts it if it was merged."""
    job = ctx.job
    name = job.spec.target or getattr(job.pending_action, "repo", "")
    target = ctx.policy.targets.repos[name]
    mirror = await mirror_of(ctx.settings, name)
    remote = _Remote(ctx, name, target, mirror)
    published = job.result["published_commit"]
    if "pull_request" in job.result:
        return await _rollback_pull_request(ctx, remote, job.result["pull_request"], published)
    branch = job.result.get("published_branch") or target.base_branch
    revert = await _revert_on(ctx, remote, branch, published)
    return {"revert_commit": revert, "reverted_on": branch}


async def _revert_on(ctx: JobContext, remote: _Remote, branch: str, commit: str) -> str:
    actor = ctx.actor.split(" (", 1)[0]
    name, email = commits.identity(ctx.policy, actor)
    message = commits.revert_message(ctx.job, commit, actor, ctx.policy)
    for _attempt in range(ATTEMPTS):
        tip = await remote.tip(branch)
        if tip is None:
            raise AcpError(f"{branch} no longer exists in {remote.where}; nothing to revert")
        if not await wt.is_ancestor(remote.mirror, commit, tip):
            raise AcpError(f"{commit[:12]} is not on {branch} in {remote.where}; nothing to revert")
        tree = await wt.reverted_tree(remote.mirror, tip, commit)
        if tree is None:
            return tip  # undone already
        revert = await wt.make_commit(
            remote.mirror, tree, [tip], message, author=(name, email, None)
        )
        try:
            await remote.push(revert, branch, expect=tip)
        except mirrors.RemoteMoved:
            continue
        return revert
    raise PublishConflict(f"{branch} in {remote.where} kept moving while reverting; try again")


async def _rollback_pull_request(
    ctx: JobContext, remote: _Remote, shown: dict[str, Any], commit: str
) -> dict[str, Any]:
    from runtime.kinds.code import forge

    spec = remote.target.forge
    assert spec is not None
    secret = forge.token_for(spec)
    pr = await forge.get_pull_request(spec, secret, int(shown["number"]))
    branch = ctx.job.result.get("published_branch") or pr.head
    if pr.state != "merged":
        if pr.state == "open":
            await forge.close_pull_request(spec, secret, pr.number)
        tip = await remote.tip(branch)
        if tip is not None:
            await remote.push(None, branch, expect=tip)
        return {"pull_request_closed": pr.number, "branch_deleted": branch}
    if not pr.merge_commit:
        raise AcpError(f"pull request #{pr.number} is merged but the forge names no merge commit")
    revert_branch = f"{branch}-revert"
    base_tip = await remote.fetch(remote.target.base_branch)
    if not await wt.is_ancestor(remote.mirror, pr.merge_commit, base_tip):
        raise AcpError(f"the merge of #{pr.number} is not on {remote.target.base_branch}")
    tree = await wt.reverted_tree(remote.mirror, base_tip, pr.merge_commit)
    if tree is None:
        return {"revert_commit": base_tip, "already_reverted": True}
    actor = ctx.actor.split(" (", 1)[0]
    name, email = commits.identity(ctx.policy, actor)
    message = commits.revert_message(ctx.job, pr.merge_commit, actor, ctx.policy)
    revert = await wt.make_commit(
        remote.mirror, tree, [base_tip], message, author=(name, email, None)
    )
    await remote.push(revert, revert_branch, expect=await remote.tip(revert_branch))
    opened = await forge.open_pull_request(
        spec,
        secret,
        head=revert_branch,
        base=remote.target.base_branch,
        title=message.splitlines()[0],
        body=f"Reverts #{pr.number} ({ctx.job.job_id}), asked for with acp rollback.",
    )
    return {
        "revert_commit": revert,
        "revert_pull_request": {"number": opened.number, "url": opened.url},
    }
