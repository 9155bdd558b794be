"""Doc jobs: documents made or changed in a worktree of a docs repository, reviewed per
document as format-aware diffs with previews, and merged after approval.

A doc job runs like a code job (runtime.kinds.code), with two differences: its steps are
template renders (and sandboxed commands when granted), and its review is per document
(review.py, over the diff package). A document that cannot be reviewed fails the job with the
reason, and nothing is published. Files attached to the request are its inputs (inputs.py):
placed at inputs/<name> before any step, listed for the model and first in the review. Its
evidence attaches the pictures of the change (picture/) while it waits for approval.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runtime.errors import BadRequest
from runtime.jobs import (
    ArtifactRef,
    Attachment,
    ContextItem,
    Evidence,
    EvidenceLine,
    JobRecord,
    JobType,
)
from runtime.kinds.base import Failed, JobContext, Outcome
from runtime.kinds.code.kind import CodeKind
from runtime.kinds.code.pending import CodeChange
from runtime.tools.base import Tool

DOC_SYSTEM_PROMPT = (
    "You write and update documents inside a git worktree of the docs repository '{target}'. "
    "Read inputs with read_document or read_file, and write results with write_document "
    "(Markdown or CSV as text; .docx from Markdown; .xlsx from a JSON object of sheets "
    '{{"Sheet": [[cell, ...], ...]}} where a string starting with = is a formula) or change '
    "some cells of an existing workbook with set_cells. Paths are relative to the repository "
    "root. Finish by replying without a tool call, with a short summary of what you wrote. If "
    "the request is ambiguous, call `ask` with one precise question."
)

_SPAN = re.compile(r"`([^`\n]+)`")
TEMPLATE_HINT = (
    "template TEMPLATE OUTPUT [DATA.csv ...], e.g. "
    "`template templates/weekly.md.j2 reports/weekly.xlsx incidents.csv`"
)


class DocKind(CodeKind):
    job_type = JobType.doc
    aliases = ("doc", "docs")
    # fmt: off
    keywords = (
        "report", "summary", "summarize", "document", "spreadsheet", "docx", "xlsx", "csv",
        "weekly", "incident", "write-up", "slides",
    )
    # fmt: on
    tools = ("fs.read", "fs.write", "docs", "shell")
    artifact_contract = "document_diff"
    step_question = (
        "Which steps should it take? For example: "
        "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`"
    )
    system_prompt = DOC_SYSTEM_PROMPT
    reviews_documents = True

    def suggestion(self, target: str) -> tuple[str, str] | None:
        return (f"Summarize a file into {target}", f"doc {target}: summarize the attached file")

    def inputs_context(self, attached: list[dict[str, Any]]) -> ContextItem:
        """Doc jobs take attached files as inputs; what the model is told of them (the
        engine keeps it as the job's context)."""
        from runtime.kinds.doc.inputs import context_item

        return context_item(attached)

    async def execute(self, ctx: JobContext) -> Outcome:
        from runtime.kinds.doc.inputs import prepared

        ready = await prepared(ctx)
        return ready if isinstance(ready, Failed) else await super().execute(ready)

    async def replay(self, ctx: JobContext, *, on_base: str | None = None):
        from runtime.errors import InvalidTransition
        from runtime.kinds.doc.inputs import prepared

        ready = await prepared(ctx)
        if isinstance(ready, Failed):
            raise InvalidTransition(f"{ctx.job.job_id} cannot be replayed: {ready.reason}")
        return await super().replay(ready, on_base=on_base)

    def toolset(self) -> tuple[Tool, ...]:
        from runtime.tools.documents import DOCUMENT_TOOLS
        from runtime.tools.workspace import WORKSPACE_TOOLS

        return (*WORKSPACE_TOOLS, *DOCUMENT_TOOLS)

    def steps(self, instruction: str) -> list[str]:
        """`run` spans and fenced commands, and `template ...` spans, in written order."""
        from runtime.commands import commands_at

        found = [(at, c) for at, c in commands_at(instruction) if not c.startswith("template ")]
        found += [
            (m.start(), " ".join(m.group(1).split()))
            for m in _SPAN.finditer(instruction)
            if m.group(1).split()[:1] == ["template"]
        ]
        steps = [c for _, c in sorted(found, key=lambda item: item[0])]
        for step in steps:
            if step.split()[:1] == ["template"] and len(step.split()) < 3:
                raise BadRequest(
                    f"the step `{step}` needs a template and an output", hint=TEMPLATE_HINT
                )
        return steps

    def answer(self, answer: str, policy: Any, target: str | None) -> dict[str, Any]:
        lines = [ln.strip().strip("`") for ln in answer.splitlines() if ln.strip()]
        return {"commands": self.steps(answer) or lines}

    async def run_step(self, toolbox: Any, index: int, command: str) -> str | None:
        from runtime.doc_formats import DocumentError
        from runtime.errors import SandboxViolation
        from runtime.kinds.doc.steps import is_template, template_step

        if not is_template(command):
            return await super().run_step(toolbox, index, command)
        try:
            await template_step(toolbox, command)
        except (SandboxViolation, DocumentError) as error:
            return f"step {index}: {error.message}"
        except FileNotFoundError as missing:
            return f"step {index} `{command}`: {missing.filename or missing} does not exist"
        return None

    def evidence(self, job: JobRecord) -> Evidence:
        """A code change's evidence, with the pictures of the change attached and a line for
        each that could not be made ("picture: not rendered (LibreOffice is not installed)")."""
        shown = super().evidence(job)
        pending = job.pending_action
        if not isinstance(pending, CodeChange):
            return shown
        if pending.pictures:
            count = len(pending.pictures)
            shown.lines.append(
                EvidenceLine(
                    label="picture",
                    text=f"{count} {'picture' if count == 1 else 'pictures'} of the changed "
                    "region, before and after, the changed cells highlighted (was: rose, "
                    "now: yellow)",
                )
            )
        shown.lines += [EvidenceLine(label="picture", text=note) for note in pending.picture_notes]
        shown.attach = [
            Attachment(sha256=p.sha256, filename=p.name, title=p.caption) for p in pending.pictures
        ]
        return shown

    def results(self, job: JobRecord) -> Evidence:
        """An ended job: as a code job's, without the pictures as files (a door attached
        them when the change was put up for approval)."""
        shown = super().results(job)
        pictured = {p.sha256 for p in getattr(job.pending_action, "pictures", ())}
        shown.attach = [a for a in shown.attach if a.sha256 not in pictured]
        return shown

    async def review(
        self, ctx: JobContext, repo: Path, base: str, head: str, artifacts: list[ArtifactRef]
    ) -> dict[str, Any] | Failed:
        """The documents reviewed as document diffs; the job fails when one cannot be read."""
        from runtime.doc_formats import DocumentError
        from runtime.kinds.doc.inputs import attached
        from runtime.kinds.doc.review import document_artifacts, review_change

        try:
            review = await review_change(
                ctx.recorder, ctx.limits.doc_max_bytes, repo, base, head,
                inputs=await attached(ctx.recorder),
            )  # fmt: skip
        except DocumentError as error:
            if ctx.phase.value == "execute":
                await ctx.recorder.log("document.refused", {"reason": error.message})
            return Failed(reason=f"{error.message}; nothing was published", artifacts=artifacts)
        return await document_artifacts(ctx.recorder, review, artifacts)

    async def review_text(self, ctx: JobContext, repo: Path, base: str, head: str) -> str | Failed:
        from runtime.doc_formats import DocumentError
        from runtime.kinds.doc.inputs import attached
        from runtime.kinds.doc.review import review_change

        try:
            review = await review_change(
                ctx.recorder, ctx.limits.doc_max_bytes, repo, base, head, keep=False,
                inputs=await attached(ctx.recorder),
            )  # fmt: skip
        except DocumentError as error:
            return Failed(reason=error.message)
        return review.text
