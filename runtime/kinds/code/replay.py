"""Replaying a model job: its recorded model responses fed again, in a fresh sandbox, with the
same prompt and tools its run had, and the diffs (and document diffs) compared."""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runtime.errors import InvalidTransition
from runtime.jobs import JobRecord
from runtime.kinds.base import Failed, JobContext
from runtime.kinds.code.plan import sandbox_plan
from runtime.kinds.code.repo import mirror_of, repo_url, token
from runtime.kinds.code.run import agent_loop
from runtime.sandbox import mirror as mirrors
from runtime.sandbox import worktree as wt
from runtime.secrets import redact

if TYPE_CHECKING:
    from runtime.kinds.code.kind import CodeKind


class ReplayReport(BaseModel):
    identical: bool
    base_commit: str
    recorded_diff_sha256: str | None
    replayed_diff_sha256: str | None
    model_responses: int
    difference: str = ""
    # A doc job's documents are binary to git: their document diffs are compared too.
    recorded_document_diff_sha256: str | None = None
    replayed_document_diff_sha256: str | None = None


async def replay(kind: CodeKind, ctx: JobContext, *, on_base: str | None = None) -> ReplayReport:
    """Re-run a model job in a fresh sandbox, feeding the recorded model responses. `ctx` has a
    recorder that keeps nothing (the job's record is left alone) but `replay.finished`."""
    job = ctx.job
    events = await ctx.recorder.events()
    created = [e for e in events if e.kind == "sandbox.worktree_created"]
    if not created:
        raise InvalidTransition(f"{job.job_id} never ran; there is nothing to replay")
    # Each run starts from a fresh checkout (a run the model paused with a question left
    # nothing behind), so the last run alone made the change: replay it, with every answer.
    last_run = [e for e in events if e.seq > created[-1].seq]
    responses = [
        json.loads(ctx.recorder.read(e.artifacts[1]))
        for e in last_run
        if e.kind == "model.call" and len(e.artifacts) == 2
    ]
    if not responses:
        raise InvalidTransition(f"{job.job_id} made no model call; there is nothing to replay")
    target = ctx.target
    path = await mirror_of(ctx.settings, ctx.job.spec.target or "")
    if on_base:
        url = repo_url(ctx.settings, target)
        start = await mirrors.fetch(path, url, on_base, token(target))
    else:
        start = created[-1].data["base_commit"]
    runs = sum(1 for e in events if e.kind == "replay.finished") + 1
    tree = await wt.create_worktree(
        path,
        on_base or target.base_branch,
        f"{job.job_id}-replay-{runs}",
        ctx.settings.worktrees_dir,
        start_commit=start,
    )
    toolbox = ctx.toolbox(tree, sandbox=(await sandbox_plan(ctx, path, tree.base_commit))[0])
    client = ctx.model(replay=responses)
    replayed_review, replayed_review_sha = "", None
    try:
        await agent_loop(
            kind,
            job,
            toolbox,
            client,
            max_steps=len(responses),
            time_limit_s=ctx.limits.agent_time_limit_s,
        )
        head = await wt.commit_all(
            tree, f"replay of {job.job_id}", "acp replay", "replay@acp.local"
        )
        patch = (await wt.diff(tree)).patch if head else ""
        if kind.reviews_documents and head:
            reviewed = await kind.review_text(ctx, path, tree.base_commit, head)
            if isinstance(reviewed, Failed):
                replayed_review = _refused(reviewed.reason)
            else:
                replayed_review, replayed_review_sha = reviewed, _sha256(reviewed)
    finally:
        await wt.remove_worktree(tree, delete_branch=True)
    recorded_sha = _recorded(job, "diff.patch")
    recorded = ctx.recorder.read(recorded_sha).decode() if recorded_sha else ""
    replayed = redact(patch)
    replayed_sha = _sha256(replayed)
    identical = _diff_body(recorded) == _diff_body(replayed)
    difference = _difference(identical, recorded, replayed, "diff.patch")
    documents: dict[str, Any] = {}
    if kind.reviews_documents:
        # What the recorded run's reviewer got: its document diff, or why there was none.
        recorded_review_sha = _recorded(job, "document-diff.txt")
        refused = [e for e in last_run if e.kind == "document.refused"]
        if refused:
            recorded_review_sha, recorded_review = None, _refused(refused[-1].data["reason"])
        elif recorded_review_sha:
            recorded_review = ctx.recorder.read(recorded_review_sha).decode()
        else:
            recorded_review = ""
        same_documents = recorded_review == replayed_review
        identical = identical and same_documents
        difference += _difference(
            same_documents, recorded_review, replayed_review, "document-diff.txt"
        )
        documents = {
            "recorded_document_diff_sha256": recorded_review_sha,
            "replayed_document_diff_sha256": replayed_review_sha,
        }
    return ReplayReport(
        identical=identical,
        base_commit=tree.base_commit,
        recorded_diff_sha256=recorded_sha,
        replayed_diff_sha256=replayed_sha,
        model_responses=len(responses),
        difference=difference,
        **documents,
    )


def _recorded(job: JobRecord, name: str) -> str | None:
    """The hash of the job's latest artifact of that name (what its reviewer saw last)."""
    return next((a.sha256 for a in reversed(job.artifacts) if a.name == name), None)


def _refused(reason: str) -> str:
    return f"refused: {reason}\n"


def _sha256(text: str) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def _difference(same: bool, recorded: str, replayed: str, name: str) -> str:
    if same:
        return ""
    return "".join(
        difflib.unified_diff(
            recorded.splitlines(True),
            replayed.splitlines(True),
            f"recorded/{name}",
            f"replayed/{name}",
        )
    )


def _diff_body(patch: str) -> list[str]:
    """A patch without its `index` lines, which name blob ids that depend on the base."""
    return [line for line in patch.splitlines() if not line.startswith("index ")]
