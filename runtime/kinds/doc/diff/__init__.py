"""Format-aware diffs of documents, as a reviewer reads them before a doc job is published.

- `diff_xlsx` compares two workbooks cell by cell: sheets added and removed, rows inserted and
  deleted (aligned, so a row inserted in the middle is reported once, not as a change to every
  row below it), and changed cells with their old and new A1 addresses.
- `diff_docx` compares two DOCX bodies: paragraphs changed, added and removed, and for tables
  cells changed and rows added or removed.
- `diff_text` is a unified diff for Markdown and CSV.
- `render_workbook_diff` / `render_document_diff` turn a diff into plain text for a terminal or
  a Slack code block (capped at a number of lines; the diff objects keep everything), and
  `preview_workbook` / `preview_document` / `preview_text` give a short look at a file.
- `review` is the dispatcher: bytes of the old and new version in, a `Review` out. It is the
  only function here that calls runtime.doc_formats (to check and load); everything else takes
  loaded data and does no I/O.

Modules, each importing only the ones before it: model (the diff types), wording, align (rows
and blocks), formulas (when rows move), workbook, document, text, summary, render, preview,
dispatch. This package only re-exports.
"""

from runtime.kinds.doc.diff.dispatch import review
from runtime.kinds.doc.diff.document import diff_docx
from runtime.kinds.doc.diff.model import (
    CellChange,
    DocumentDiff,
    ParagraphChange,
    Review,
    RowHunk,
    SheetDiff,
    TableCellChange,
    TableChange,
    TableRow,
    WorkbookDiff,
)
from runtime.kinds.doc.diff.preview import preview_document, preview_text, preview_workbook
from runtime.kinds.doc.diff.render import MAX_LINES, render_document_diff, render_workbook_diff
from runtime.kinds.doc.diff.summary import summarize_document, summarize_workbook
from runtime.kinds.doc.diff.text import diff_text
from runtime.kinds.doc.diff.workbook import diff_xlsx

__all__ = [
    "MAX_LINES",
    "CellChange",
    "DocumentDiff",
    "ParagraphChange",
    "Review",
    "RowHunk",
    "SheetDiff",
    "TableCellChange",
    "TableChange",
    "TableRow",
    "WorkbookDiff",
    "diff_docx",
    "diff_text",
    "diff_xlsx",
    "preview_document",
    "preview_text",
    "preview_workbook",
    "render_document_diff",
    "render_workbook_diff",
    "review",
    "summarize_document",
    "summarize_workbook",
]
