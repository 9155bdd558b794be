"""Code jobs: run explicit steps in a sandboxed worktree, leave a diff, publish after approval.

Every tool call is authorized against the job's grant here, before it runs; a refusal is an
audit event. The model (later) and the commands are untrusted; git runs outside the sandbox
only with hooks and filters disabled.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runtime import doc_jobs
from runtime.agent import SYSTEM_PROMPT, AgentOutcome, opening_messages, run_agent
from runtime.approvals import pending_hash
from runtime.errors import (
    ApprovalMismatch,
    BudgetExceeded,
    InvalidTransition,
    ModelUnavailable,
    PublishConflict,
    SandboxViolation,
)
from runtime.jobs import ArtifactRef, Clarification, JobRecord, JobState, JobType
from runtime.models import ModelClient, load_litellm
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
        run = _run_steps if job.model.model == "direct" else _run_model
        ended = await run(engine, job, toolbox, actor)
        if ended is not None:
            return ended
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
    extra: dict[str, Any] = {}
    if job.spec.job_type is JobType.doc:
        try:
            review = await doc_jobs.review_change(engine, path, diff.base_commit, diff.head_commit)
        except doc_jobs.DocumentError as error:
            await engine.log(job.id, "document.refused", actor, {"reason": error.message})
            return await engine.finish(
                job,
                JobState.failed,
                actor,
                "job.failed",
                reason=f"{error.message}; nothing was published",
                artifacts=artifacts,
            )
        extra = await _document_artifacts(engine, job, actor, review, artifacts)
    pending = {
        "action": "merge" if target.publish == "merge" else "push",
        "repo": job.spec.target,
        "base_branch": target.base_branch,
        "job_branch": tree.branch,
        "base_commit": diff.base_commit,
        "head_commit": diff.head_commit,
        "diff_sha256": ref.sha256,
        "stat": stat,
        **extra,
    }
    return await request_or_publish(engine, job, pending, artifacts, actor)


async def _document_artifacts(
    engine: Engine, job: JobRecord, actor: str, review: doc_jobs.ChangeReview, artifacts: list
) -> dict[str, Any]:
    """The document diff, the preview and the documents themselves, on the chain."""
    refs = []
    if review.text:
        refs.append(engine.artifacts.put("document-diff.txt", review.text.encode()))
    if review.preview:
        refs.append(engine.artifacts.put("preview.txt", review.preview.encode()))
    refs.extend(review.documents)
    artifacts.extend(refs)
    await engine.log(
        job.id,
        "artifact.created",
        actor,
        {"name": "document-diff.txt", "documents": review.summaries},
        event_artifacts=tuple(r.sha256 for r in refs),
    )
    return {
        "document_diff_sha256": refs[0].sha256 if review.text else None,
        "preview_sha256": next((r.sha256 for r in refs if r.name == "preview.txt"), None),
        "documents": review.summaries,
        "document_sha256": {d.name: d.sha256 for d in review.documents},
    }


async def _fail(
    engine: Engine, job: JobRecord, toolbox: Toolbox, actor: str, reason: str
) -> JobRecord:
    """End a running job as failed, keeping what its tools left for review."""
    return await engine.finish(
        job,
        JobState.failed,
        actor,
        "job.failed",
        reason=reason,
        artifacts=[*job.artifacts, *toolbox.artifacts],
    )


async def _run_steps(
    engine: Engine, job: JobRecord, toolbox: Toolbox, actor: str
) -> JobRecord | None:
    """Direct mode: the job's explicit steps, in order; None when every step succeeded."""
    for index, command in enumerate(job.spec.commands, start=1):
        if job.spec.job_type is JobType.doc and doc_jobs.is_template(command):
            try:
                await doc_jobs.template_step(toolbox, command)
            except (SandboxViolation, doc_jobs.DocumentError) as error:
                return await _fail(engine, job, toolbox, actor, f"step {index}: {error.message}")
            except FileNotFoundError as missing:
                reason = f"step {index} `{command}`: {missing.filename or missing} does not exist"
                return await _fail(engine, job, toolbox, actor, reason)
            continue
        try:
            result = await toolbox.call("shell", command=command)
        except SandboxViolation as refusal:
            return await _fail(engine, job, toolbox, actor, refusal.message)
        if result.exit_code != 0:
            why = "timed out" if result.timed_out else f"exited with {result.exit_code}"
            return await _fail(
                engine,
                job,
                toolbox,
                actor,
                f"step {index} `{command}` {why}; see command-{index}.log",
            )
    return None


@dataclass(frozen=True)
class ModelLoop:
    """What a kind's model loop is given: its system prompt, and whether it has the document
    tools (a doc job's change is then also reviewed, and replayed, as a document diff)."""

    system_prompt: str
    documents: bool = False


# The kinds whose model loop runs in a worktree here. A run and its replay both take the
# prompt and the tools from this table (agent_loop), so a replay has what its run had.
MODEL_LOOPS = {
    JobType.code: ModelLoop(SYSTEM_PROMPT),
    JobType.doc: ModelLoop(doc_jobs.DOC_SYSTEM_PROMPT, documents=True),
}


async def agent_loop(
    job: JobRecord, toolbox: Toolbox, client: ModelClient, *, max_steps: int, time_limit_s: float
) -> AgentOutcome:
    """The job's model loop, with its kind's prompt and tools and the requester's answers."""
    loop = MODEL_LOOPS[job.spec.job_type]
    messages = opening_messages(
        job.spec.target or "",
        job.spec.instruction,
        job.result.get("answers", []),
        loop.system_prompt,
    )
    return await run_agent(
        toolbox,
        client,
        messages,
        max_steps=max_steps,
        time_limit_s=time_limit_s,
        documents=loop.documents,
    )


async def _run_model(
    engine: Engine, job: JobRecord, toolbox: Toolbox, actor: str
) -> JobRecord | None:
    """The agent loop for a job with a model route; None when it finished and left a change."""
    limits = engine.policy.limits
    client = ModelClient(engine, job, actor=actor)
    await load_litellm()  # before the agent's deadline starts: the first import takes seconds
    try:
        outcome = await agent_loop(
            job,
            toolbox,
            client,
            max_steps=limits.agent_max_steps,
            time_limit_s=limits.agent_time_limit_s,
        )
    except (BudgetExceeded, ModelUnavailable) as error:
        return await _fail(engine, job, toolbox, actor, error.message)
    transcript = transcript_artifact(engine, outcome.transcript)
    toolbox.artifacts.append(transcript)
    await engine.log(
        job.id,
        f"agent.{outcome.kind}",
        actor,
        {"summary": outcome.summary, "steps": outcome.steps, "question": outcome.question},
        event_artifacts=(transcript.sha256,),
    )
    if outcome.kind == "asked":

        async def body(conn, fresh: JobRecord) -> JobRecord:
            return await engine.transition(
                conn,
                fresh,
                JobState.needs_clarification,
                actor=actor,
                kind="job.clarification_requested",
                data={"question": outcome.question, "options": [], "by": "model"},
                clarification=Clarification(question=outcome.question or "", field="agent"),
                artifacts=[*fresh.artifacts, *toolbox.artifacts],
            )

        return await engine.locked(job.id, body)
    if outcome.kind == "stopped":
        return await _fail(engine, job, toolbox, actor, f"stopped: {outcome.summary}")
    return None


def transcript_artifact(engine: Engine, messages: list[dict[str, Any]]) -> ArtifactRef:
    """A model conversation (every tool result included), secrets redacted, on the chain."""
    text = redact(json.dumps(messages, default=str))
    return engine.artifacts.put("transcript.json", text.encode(), "application/json")


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
    if approved is not None and approved.action_hash != pending_hash(pending):
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


async def rerequest(
    engine: Engine, job: JobRecord, path: Path, old: dict[str, Any], actor: str
) -> JobRecord:
    """The branch moved after review: show the change as it is now and ask again."""
    head = await wt.branch_head(path, old["job_branch"])
    diff = await wt.diff_range(path, old["base_commit"], head)
    ref = engine.artifacts.put("diff.patch", redact(diff.patch).encode(), "text/x-diff")
    artifacts = [*job.artifacts, ref]
    extra: dict[str, Any] = {}
    if job.spec.job_type is JobType.doc:  # the documents are reviewed again as they are now
        try:
            review = await doc_jobs.review_change(engine, path, old["base_commit"], head)
        except doc_jobs.DocumentError as error:
            return await engine.finish(
                job, JobState.failed, actor, "job.failed",
                reason=f"{error.message}; nothing was published", artifacts=artifacts,
            )  # fmt: skip
        extra = await _document_artifacts(engine, job, actor, review, artifacts)
    pending = {
        **old,
        "head_commit": head,
        "diff_sha256": ref.sha256,
        "stat": diff.stat.model_dump(),
        **extra,
    }
    return await ask_approval(
        engine,
        job,
        pending,
        actor,
        artifacts=artifacts,
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
    return await wt.revert_merge(
        path,
        target.base_branch,
        job.result["published_commit"],
        f"Revert {job.job_id}: {job.spec.instruction[:60]}",
    )


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


async def replay(engine: Engine, job: JobRecord, *, on_base: str | None = None) -> ReplayReport:
    """Re-run a model job in a fresh sandbox, feeding the recorded model responses."""
    loop = MODEL_LOOPS.get(job.spec.job_type)
    if loop is None:
        kinds = " and ".join(t.value for t in MODEL_LOOPS)
        raise InvalidTransition(
            f"{job.job_id} is a {job.spec.job_type.value} job; replay re-runs the model loop of "
            f"{kinds} jobs in a worktree and compares their diffs"
        )
    events = await engine.events(job.id)
    created = [e for e in events if e.kind == "sandbox.worktree_created"]
    if not created:
        raise InvalidTransition(f"{job.job_id} never ran; there is nothing to replay")
    # Each run starts from a fresh checkout (a run the model paused with a question left
    # nothing behind), so the last run alone made the change: replay it, with every answer.
    last_run = [e for e in events if e.seq > created[-1].seq]
    responses = [
        json.loads(engine.artifacts.read(e.artifacts[1]))
        for e in last_run
        if e.kind == "model.call" and len(e.artifacts) == 2
    ]
    if not responses:
        raise InvalidTransition(f"{job.job_id} made no model call; there is nothing to replay")
    target, path = await ensure_repo(engine, job.spec.target or "")
    start = None if on_base else created[-1].data["base_commit"]
    runs = sum(1 for e in events if e.kind == "replay.finished") + 1
    tree = await wt.create_worktree(
        path,
        on_base or target.base_branch,
        f"{job.job_id}-replay-{runs}",
        engine.settings.worktrees_dir,
        start_commit=start,
    )
    actor = "replay"
    toolbox = Toolbox(engine, job, tree, actor, record=False)
    client = ModelClient(engine, job, actor=actor, replay=responses)
    replayed_review, replayed_review_sha = "", None
    try:
        await agent_loop(
            job,
            toolbox,
            client,
            max_steps=len(responses),
            time_limit_s=engine.policy.limits.agent_time_limit_s,
        )
        head = await wt.commit_all(
            tree, f"replay of {job.job_id}", "acp replay", "replay@acp.local"
        )
        patch = (await wt.diff(tree)).patch if head else ""
        if loop.documents and head:
            try:
                review = await doc_jobs.review_change(
                    engine, path, tree.base_commit, head, keep=False
                )
                replayed_review, replayed_review_sha = review.text, _sha256(review.text)
            except doc_jobs.DocumentError as error:
                replayed_review = _refused(error.message)
    finally:
        await wt.remove_worktree(tree, delete_branch=True)
    recorded_sha = _recorded(job, "diff.patch")
    recorded = engine.artifacts.read(recorded_sha).decode() if recorded_sha else ""
    replayed = redact(patch)
    replayed_sha = _sha256(replayed)
    identical = _diff_body(recorded) == _diff_body(replayed)
    difference = _difference(identical, recorded, replayed, "diff.patch")
    documents: dict[str, Any] = {}
    if loop.documents:
        # What the recorded run's reviewer got: its document diff, or why there was none.
        recorded_review_sha = _recorded(job, "document-diff.txt")
        refused = [e for e in last_run if e.kind == "document.refused"]
        if refused:
            recorded_review_sha, recorded_review = None, _refused(refused[-1].data["reason"])
        elif recorded_review_sha:
            recorded_review = engine.artifacts.read(recorded_review_sha).decode()
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
    report = ReplayReport(
        identical=identical,
        base_commit=tree.base_commit,
        recorded_diff_sha256=recorded_sha,
        replayed_diff_sha256=replayed_sha,
        model_responses=len(responses),
        difference=difference,
        **documents,
    )
    await engine.log(job.id, "replay.finished", "replay", report.model_dump(exclude={"difference"}))
    return report


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
