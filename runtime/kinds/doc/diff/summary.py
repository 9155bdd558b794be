"""One-line summaries of a workbook or a document diff ("3 cells changed, 2 rows inserted"),
for a review's summary and the first line of a rendered diff.
"""

from __future__ import annotations

from runtime.kinds.doc.diff.model import DocumentDiff, TableChange, WorkbookDiff
from runtime.kinds.doc.diff.wording import _names, _plural


def summarize_workbook(diff: WorkbookDiff) -> str:
    """One line: "3 cells changed, 2 rows inserted, sheet 'Q4' added"."""
    if diff.status == "unchanged":
        return "no changes"
    if diff.status in ("added", "removed"):
        what = "new workbook" if diff.status == "added" else "workbook deleted"
        cells = diff.change_count
        return f"{what}: {_plural(len(diff.sheets), 'sheet')}, {_plural(cells, 'cell')}"
    parts = [f"{risk.split(':')[0]} (a risk)" for risk in diff.risks]
    changed = [
        p.what for p in diff.parts if not any(r.startswith(f"{p.what} ") for r in diff.risks)
    ]
    if changed:
        parts.append(f"{', '.join(changed)} changed")
    if diff.formulas_shifted:
        across = any(shift.columns for s in diff.sheets for shift in s.shifted)
        cells = "cells" if across else "rows"
        parts.append(f"{_plural(diff.formulas_shifted, 'formula')} now refer to other {cells}")
    if diff.cells_changed:
        parts.append(f"{_plural(diff.cells_changed, 'cell')} changed")
    if diff.rows_inserted:
        parts.append(f"{_plural(diff.rows_inserted, 'row')} inserted")
    if diff.rows_deleted:
        parts.append(f"{_plural(diff.rows_deleted, 'row')} deleted")
    if diff.columns_inserted:
        parts.append(f"{_plural(diff.columns_inserted, 'column')} inserted")
    if diff.columns_deleted:
        parts.append(f"{_plural(diff.columns_deleted, 'column')} deleted")
    if diff.formatted_cells:
        parts.append(f"formatting changed in {_plural(diff.formatted_cells, 'cell')}")
    if features := diff.features_changed:
        parts.append(f"{_plural(len(features), 'sheet feature')} changed")
    for was, now in diff.sheets_renamed:
        parts.append(f"sheet {was!r} renamed to {now!r}")
    for names, verb in ((diff.sheets_added, "added"), (diff.sheets_removed, "removed")):
        if names:
            parts.append(f"{'sheet' if len(names) == 1 else 'sheets'} {_names(names)} {verb}")
    if diff.reordered:
        parts.append("sheets reordered")
    return ", ".join(parts)


def summarize_document(diff: DocumentDiff) -> str:
    """One line: "1 paragraph changed, 2 paragraphs added, 1 table changed (3 cells changed)"."""
    if diff.status == "unchanged":
        return "no changes"
    if diff.status in ("added", "removed"):
        what = "new document" if diff.status == "added" else "document deleted"
        paragraphs = sum(1 for c in diff.changes if c.what == "paragraph")
        tables = len(diff.changes) - paragraphs
        parts = [f"{what}: {_plural(paragraphs, 'paragraph')}", _plural(tables, "table")]
        if diff.headers:
            parts.append(_headers(len(diff.headers)))
        for items, noun in ((diff.comments, "comment"), (diff.images, "picture")):
            if items:
                parts.append(_plural(len(items), noun))
        return ", ".join(parts + _document_warnings(diff))
    parts = _document_warnings(diff)
    for kind in ("changed", "added", "removed"):
        if n := diff._count("paragraph", kind):
            parts.append(f"{_plural(n, 'paragraph')} {kind}")
    for kind in ("changed", "added", "removed"):
        if n := diff._count("table", kind):
            parts.append(f"{_plural(n, 'table')} {kind}")
            if kind == "changed":
                parts[-1] += f" ({_table_details(diff.tables_changed)})"
    for kind in ("changed", "added", "removed"):
        if n := sum(1 for h in diff.headers if h.kind == kind):
            parts.append(f"{_headers(n)} {kind}")
    for kind in ("changed", "added", "removed"):
        if n := sum(1 for i in diff.images if i.kind == kind):
            parts.append(f"{_plural(n, 'picture')} {kind}")
    if n := sum(1 for r in diff.revisions if r.kind == "added"):
        parts.append(f"{_plural(n, 'tracked change')} added")
    if n := sum(1 for r in diff.revisions if r.kind == "removed"):
        parts.append(f"{_plural(n, 'tracked change')} accepted or rejected")
    for kind in ("added", "removed"):
        if n := sum(1 for c in diff.comments if c.kind == kind):
            parts.append(f"{_plural(n, 'comment')} {kind}")
    return ", ".join(parts)


def _headers(n: int) -> str:
    return f"{n} header/footer" if n == 1 else f"{n} headers/footers"


def _document_warnings(diff: DocumentDiff) -> list[str]:
    """What a reviewer must see first: unaccepted tracked changes published, parts not read."""
    warnings = []
    if diff.tracked:
        warnings.append(f"{_plural(diff.tracked, 'unaccepted tracked change')}")
    if diff.unread:
        warnings.append(f"{_plural(len(diff.unread), 'part')} not read")
    return warnings


def _table_details(tables: list[TableChange]) -> str:
    """What changed inside tables, e.g. "3 cells changed, 1 row added"."""
    details = []
    if cells := sum(len(t.cells) for t in tables):
        details.append(f"{_plural(cells, 'cell')} changed")
    if rows := sum(len(t.rows_added) for t in tables):
        details.append(f"{_plural(rows, 'row')} added")
    if rows := sum(len(t.rows_removed) for t in tables):
        details.append(f"{_plural(rows, 'row')} removed")
    if columns := sum(len(t.columns_added) for t in tables):
        details.append(f"{_plural(columns, 'column')} added")
    if columns := sum(len(t.columns_removed) for t in tables):
        details.append(f"{_plural(columns, 'column')} removed")
    return ", ".join(details)
