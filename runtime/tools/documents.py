"""The document tools over a job's worktree: read a document, write one, change cells of a
workbook, render a template. Parsing a workbook is CPU: each runs in a thread."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from runtime.tools import fs
from runtime.tools.base import tool

if TYPE_CHECKING:
    from runtime.toolbox import ToolUse


def _grant(use: ToolUse, *, writable: bool) -> fs.FsGrant:
    return fs.FsGrant(root=use.workspace.path, writable=writable)


@tool("docs.read", grant="fs.read", model_name="read_document")
async def read_document(use: ToolUse, path: str) -> str:
    """Read a Markdown, CSV, XLSX or DOCX file.

    Args:
        path: path
    """
    from runtime.tools import docs

    limit = use.limits.doc_max_bytes
    text = await asyncio.to_thread(docs.read_document, _grant(use, writable=False), path, limit)
    await use.record({"path": path, "chars": len(text)})
    return text


def _written(done: dict[str, Any]) -> str:
    return f"written: {done['path']} ({done['format']}, {done['bytes']} bytes)"


@tool("docs.write", grant="docs", model_name="write_document", text=_written)
async def write_document(use: ToolUse, path: str, content: str) -> dict[str, Any]:
    """Create or replace a document (.md, .csv, .docx from Markdown, .xlsx from JSON).

    Args:
        path: path
        content: the whole content
    """
    from runtime.tools import docs

    limit = use.limits.doc_max_bytes
    done = await asyncio.to_thread(
        docs.write_document, _grant(use, writable=True), path, content, limit
    )
    await use.record(done)
    return done


def _cells_set(done: dict[str, Any]) -> str:
    return f"set {done['cells']} cell(s) in {done['path']} sheet {done['sheet']}"


@tool("docs.cells", grant="docs", model_name="set_cells", text=_cells_set)
async def set_cells(use: ToolUse, path: str, sheet: str, cells: str | dict) -> dict[str, Any]:
    """Change cells of a workbook, keeping the rest.

    Args:
        path: path of the .xlsx
        sheet: sheet name
        cells: JSON object of cells, e.g. {"B3": 42, "C9": "=SUM(C2:C8)"}
    """
    from runtime.tools import docs

    if isinstance(cells, str):
        try:
            cells = json.loads(cells)
        except json.JSONDecodeError:
            raise ValueError('cells must be a JSON object like {"B3": 42}') from None
    if not isinstance(cells, dict):
        raise ValueError('cells must be a JSON object like {"B3": 42}')
    limit = use.limits.doc_max_bytes
    done = await asyncio.to_thread(
        docs.set_cells, _grant(use, writable=True), path, sheet, dict(cells), limit
    )
    await use.record(done)
    return done


@tool("docs.template", grant="docs")
async def render_template(
    use: ToolUse, template: str, output: str, data: list | None = None
) -> dict[str, Any]:
    """Render a Jinja template with CSV data into a document.

    Args:
        template: path of the template
        output: path of the document to write
        data: paths of CSV files the template reads
    """
    from runtime.tools import docs

    limit = use.limits.doc_max_bytes
    done = await asyncio.to_thread(
        docs.render_template, _grant(use, writable=True), template, output, list(data or []),
        limit,
    )  # fmt: skip
    await use.record(done)
    return done


DOCUMENT_TOOLS = (read_document, write_document, set_cells, render_template)
