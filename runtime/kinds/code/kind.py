"""Code jobs: explicit steps or a model in a sandboxed worktree of a repository, a diff for
review, and the approved commits merged or pushed.

The kind's run is in run.py, its publish and rollback in publish.py, its replay in replay.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from runtime.agent import SYSTEM_PROMPT
from runtime.errors import ApprovalMismatch
from runtime.jobs import (
    ArtifactRef,
    Attachment,
    Evidence,
    EvidenceLine,
    JobRecord,
    JobType,
    PendingAction,
    Phase,
)
from runtime.kinds.base import Failed, Housekeeping, JobContext, JobKind, Outcome
from runtime.kinds.code.pending import CodeChange
from runtime.tools.base import Tool

BRANCH_SWEEP_S = 60.0


class CodeKind(JobKind):
    job_type = JobType.code
    aliases = ("code",)
    # fmt: off
    keywords = (
        "fix", "bug", "test", "tests", "refactor", "function", "typo", "readme", "commit",
        "build", "lint", "code", "compile", "failing", "flaky", "repo", "branch", "module",
    )
    # fmt: on
    target_section = "repos"
    tools = ("fs.read", "fs.write", "shell", "git.diff")
    artifact_contract = "diff"
    mutating = True
    pending_models = (CodeChange,)
    resumable_phases = frozenset({Phase.publish})
    system_prompt: ClassVar[str] = SYSTEM_PROMPT
    reviews_documents: ClassVar[bool] = False  # a replay compares document diffs too

    def suggestion(self, target: str) -> tuple[str, str] | None:
        return (f"Run the {target} tests", f"code {target}: run the tests and tell me what fails")

    def toolset(self) -> tuple[Tool, ...]:
        from runtime.tools.workspace import WORKSPACE_TOOLS

        return WORKSPACE_TOOLS

    def spec_scopes(self, target: Any) -> dict[str, Any]:
        return {"filesystem_scope": ["worktree"]}

    async def execute(self, ctx: JobContext) -> Outcome:
        from runtime.kinds.code import run

        return await run.execute(self, ctx)

    async def resume(self, ctx: JobContext, approved: PendingAction) -> Outcome:
        from runtime.kinds.code import publish

        if not isinstance(approved, CodeChange):
            raise ApprovalMismatch(f"{ctx.job.job_id}: the approved action is not a change")
        return await publish.publish(self, ctx, approved)

    async def recover(self, ctx: JobContext, phase: Phase, previous_worker: str | None) -> Outcome:
        await self.discard(ctx)
        return await super().recover(ctx, phase, previous_worker)

    async def discard(self, ctx: JobContext) -> None:
        from runtime.kinds.code import publish

        await publish.discard_checkout(ctx)

    def rollbackable(self, job: JobRecord) -> bool:
        return bool(job.result.get("published_commit"))

    # Job branches live in the service's mirrors while their change waits for approval; a job
    # that ended there (rejected, expired, cancelled) has its branch removed by this sweep.
    _swept_at: ClassVar[float] = 0.0

    def busy(self) -> bool:
        import time

        return time.monotonic() - CodeKind._swept_at > BRANCH_SWEEP_S

    async def sweep(self, house: Housekeeping) -> int:
        import time

        from runtime.kinds.code.branches import sweep_job_branches

        CodeKind._swept_at = time.monotonic()
        return await sweep_job_branches(house)

    async def rollback(self, ctx: JobContext) -> dict[str, Any]:
        from runtime.kinds.code import publish

        return await publish.rollback(ctx)

    async def replay(self, ctx: JobContext, *, on_base: str | None = None):
        from runtime.kinds.code import replay

        return await replay.replay(self, ctx, on_base=on_base)

    # -- the steps the kind takes, and how its change is reviewed (doc jobs differ) --------

    async def run_step(self, toolbox: Any, index: int, command: str) -> str | None:
        """One direct-mode step; why it failed, or None."""
        from runtime.kinds.code.run import shell_step

        return await shell_step(toolbox, index, command)

    async def review(
        self, ctx: JobContext, repo: Path, base: str, head: str, artifacts: list[ArtifactRef]
    ) -> dict[str, Any] | Failed:
        """What the pending change carries beyond its diff; Failed when it cannot be reviewed.
        New artifacts are appended to `artifacts`."""
        return {}

    async def review_text(self, ctx: JobContext, repo: Path, base: str, head: str) -> str | Failed:
        """The review a replay compares (doc jobs: the document diff)."""
        return ""

    # -- showing ---------------------------------------------------------------------------

    def evidence(self, job: JobRecord) -> Evidence:
        """The change waiting for approval: its size and files, and the diff to read (a doc
        job's document diff and preview instead: git's patch of a binary says nothing)."""
        pending = job.pending_action
        if not isinstance(pending, CodeChange):
            return Evidence()
        stat = pending.stat
        files = ", ".join(stat.get("files", [])[:10])
        lines = [
            EvidenceLine(
                label="change",
                text=f"{stat.get('files_changed', 0)} file(s), +{stat.get('insertions', 0)} "
                f"-{stat.get('deletions', 0)} ({files}); {pending.action} {pending.job_branch} "
                f"into {pending.base_branch}",
            )
        ]
        lines += [EvidenceLine(label="document", text=line) for line in pending.documents]
        documents = [d for d in (pending.document_diff_sha256, pending.preview_sha256) if d]
        return Evidence(lines=lines, read=documents or [pending.diff_sha256])

    def results(self, job: JobRecord) -> Evidence:
        """An ended job: its latest review (what was published), and the documents it
        published."""
        shown = self.evidence(job)
        pending = job.pending_action
        if not shown.read:
            latest = next((a for a in reversed(job.artifacts) if a.name == "diff.patch"), None)
            shown.read = [latest.sha256] if latest else []
        if job.state.value == "succeeded" and isinstance(pending, CodeChange):
            shown.attach = [
                Attachment(
                    sha256=digest, filename=name, title=f"{name}, as published by {job.job_id}"
                )
                for name, digest in pending.document_sha256.items()
            ]
        return shown
