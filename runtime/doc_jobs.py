"""Doc jobs: documents made or changed in the job's worktree and reviewed as format-aware diffs.

A doc job runs like a code job (a worktree of a docs repository, explicit steps or a model,
a commit, an approval gate, a merge), with two differences: its steps are template renders
(and sandboxed commands when granted), and its review is per document: a text diff for
Markdown and CSV, a cell diff for workbooks, a paragraph and table diff for Word documents,
each with a preview. A document that is not what its extension says, is corrupt or is over
the size limit fails the job with the reason, and nothing is published.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from runtime.doc_formats import DocumentError, format_of, size_text
from runtime.errors import SandboxViolation
from runtime.jobs import ArtifactRef
from runtime.sandbox import worktree as wt
from runtime.secrets import redact

if TYPE_CHECKING:
    from runtime.engine import Engine
    from runtime.toolbox import Toolbox

MEDIA_TYPES = {
    "markdown": "text/markdown",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def is_template(command: str) -> bool:
    return command.split()[:1] == ["template"]


async def template_step(toolbox: Toolbox, command: str) -> dict[str, Any]:
    """`template TEMPLATE OUTPUT [DATA.csv ...]` through the job's toolbox (grant: docs)."""
    words = shlex.split(command)
    return await toolbox.call("docs.template", template=words[1], output=words[2], data=words[3:])


@dataclass
class ChangeReview:
    """What a reviewer gets for a doc job: the rendered diffs, previews and the documents."""

    text: str = ""
    preview: str = ""
    summaries: list[str] = field(default_factory=list)
    documents: list[ArtifactRef] = field(default_factory=list)


async def review_change(
    engine: Engine, repo: Path, base_commit: str, head_commit: str, *, keep: bool = True
) -> ChangeReview:
    """Review every document base..head changed; DocumentError for one that cannot be read.
    With keep=False (a replay) the documents themselves are not stored as artifacts."""
    from runtime import doc_diff

    limit = engine.policy.limits.doc_max_bytes
    out = ChangeReview()
    texts, previews = [], []
    for status, path in await wt.changed_files(repo, base_commit, head_commit):
        kind = format_of(path)
        if kind is None:
            continue
        old = None if status == "A" else await _blob(repo, base_commit, path, limit)
        new = None if status == "D" else await _blob(repo, head_commit, path, limit)
        review = await asyncio.to_thread(doc_diff.review, path, old, new, limit)
        if review is None:
            continue
        out.summaries.append(f"{path}: {review.summary}")
        texts.append(review.diff_text.rstrip())
        if review.preview:
            previews.append(f"{path}\n{review.preview.rstrip()}")
        if new is not None and keep:
            out.documents.append(
                engine.artifacts.put(PurePosixPath(path).name, new, MEDIA_TYPES[kind])
            )
    out.text = redact("\n\n".join(texts) + "\n") if texts else ""
    out.preview = redact("\n\n".join(previews) + "\n") if previews else ""
    return out


async def _blob(repo: Path, commit: str, path: str, limit: int) -> bytes | None:
    try:
        return await wt.read_blob(repo, commit, path, limit)
    except ValueError as size:
        raise DocumentError(
            f"{path} is {size_text(int(size.args[0]))}; documents over {size_text(limit)} "
            "are not reviewed or published"
        ) from None


# --- the model's document tools ----------------------------------------------------------

DOC_SYSTEM_PROMPT = (
    "You write and update documents inside a git worktree of the docs repository '{target}'. "
    "Read inputs with read_document or read_file, and write results with write_document "
    "(Markdown or CSV as text; .docx from Markdown; .xlsx from a JSON object of sheets "
    '{{"Sheet": [[cell, ...], ...]}} where a string starting with = is a formula) or change '
    "some cells of an existing workbook with set_cells. Paths are relative to the repository "
    "root. Finish by replying without a tool call, with a short summary of what you wrote. If "
    "the request is ambiguous, call `ask` with one precise question."
)


def doc_tools() -> list[dict[str, Any]]:
    from runtime.agent import function

    return [
        function("read_document", "Read a Markdown, CSV, XLSX or DOCX file.", path="path"),
        function(
            "write_document",
            "Create or replace a document (.md, .csv, .docx from Markdown, .xlsx from JSON).",
            path="path",
            content="the whole content",
        ),
        function(
            "set_cells",
            "Change cells of a workbook, keeping the rest.",
            path="path of the .xlsx",
            sheet="sheet name",
            cells='JSON object of cells, e.g. {"B3": 42, "C9": "=SUM(C2:C8)"}',
        ),
    ]


async def run_doc_tool(toolbox: Toolbox, name: str, args: dict[str, Any]) -> str | None:
    """A document tool call from the model; None when `name` is not one of them."""
    import json

    if name == "read_document":
        return await toolbox.call("docs.read", path=str(args.get("path", "")))
    if name == "write_document":
        done = await toolbox.call(
            "docs.write", path=str(args.get("path", "")), content=str(args.get("content", ""))
        )
        return f"written: {done['path']} ({done['format']}, {done['bytes']} bytes)"
    if name == "set_cells":
        cells = args.get("cells", {})
        if isinstance(cells, str):
            try:
                cells = json.loads(cells)
            except json.JSONDecodeError:
                return 'error: cells must be a JSON object like {"B3": 42}'
        if not isinstance(cells, dict):
            return 'error: cells must be a JSON object like {"B3": 42}'
        done = await toolbox.call(
            "docs.cells", path=str(args.get("path", "")), sheet=str(args.get("sheet", "")),
            cells=cells,
        )  # fmt: skip
        return f"set {done['cells']} cell(s) in {done['path']} sheet {done['sheet']}"
    return None


__all__ = [
    "DOC_SYSTEM_PROMPT",
    "ChangeReview",
    "DocumentError",
    "SandboxViolation",
    "doc_tools",
    "is_template",
    "review_change",
    "run_doc_tool",
    "template_step",
]
