"""The console's reading of workbook reviews beyond cells: columns inserted and deleted."""

from __future__ import annotations

import io

from openpyxl import Workbook

from bot.console.evidence.document import read_review
from bot.console.evidence.workbook import WorkbookReview, render_workbook
from runtime.kinds.doc.diff.dispatch import review as review_document


def _book(columns: list[str]) -> bytes:
    made = Workbook()
    made.active.title = "Plan"
    made.active.append(columns)
    for r in range(2, 6):
        made.active.append([f"{name}{r}" for name in columns])
    out = io.BytesIO()
    made.save(out)
    return out.getvalue()


def test_an_inserted_and_a_deleted_column_read_back_and_show_once_each():
    before = _book(["item", "owner", "due", "note"])
    after = _book(["item", "team", "owner", "due"])  # team inserted, note deleted
    done = review_document("plan.xlsx", before, after)
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WorkbookReview) and not block.unread
    (sheet,) = block.diff.sheets
    assert [(c.kind, c.label, len(c.changes)) for c in sheet.columns] == [
        ("inserted", "column B", 5),
        ("deleted", "column D", 5),
    ]
    assert sheet.columns == done.diff.sheets[0].columns
    html = str(render_workbook(block))
    assert "Plan: column B inserted" in html and "Plan: column D deleted" in html
    assert html.count('class="ev-cell ev-cell-added"') == 5  # B1..B5, nothing else changed
    assert html.count('class="ev-cell ev-cell-removed"') == 5
