"""A workbook's cell changes as a table: sheet, cell, old → new, formulas shown as formulas.

Read back from the doc kind's review text (one `path (xlsx): summary` block of
document-diff.txt) into the kind's own diff models (runtime.kinds.doc.diff.model), then shown.
A line this cannot read is kept and shown as it was recorded, never dropped.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from markupsafe import Markup

from bot.console.evidence import cells
from bot.console.evidence.templates import render
from runtime.kinds.doc.diff.model import (
    CellChange,
    ColumnHunk,
    RowHunk,
    SheetDiff,
    WorkbookDiff,
)
from runtime.kinds.doc.diff.render import SAME_TEXT

_QUOTED_NAME = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_SHEET = re.compile(
    rf"^  sheet (?P<name>{_QUOTED_NAME})"
    r"(?: (?P<status>added|removed) \(\d[\d,]* rows?\)"
    rf"| \(renamed from (?P<was>{_QUOTED_NAME})\))?$"
)
_ROWS = re.compile(
    r"^    (?:row (?P<one>\d+)|rows (?P<first>\d+)-(?P<last>\d+)) (?P<kind>inserted|deleted)$"
)
_COLUMNS = re.compile(
    r"^    (?:column (?P<one>[A-Z]{1,3})|columns (?P<first>[A-Z]{1,3})-(?P<last>[A-Z]{1,3})) "
    r"(?P<kind>inserted|deleted)$"
)
_SHIFT = re.compile(r"^    ! (?P<text>.+)$")
_LOOK = re.compile(r"^    (?P<text>(?:feature|format) .+|\.\.\. format changes stop .+)$")
_CELL = re.compile(
    r"^    (?P<cell>[A-Z]{1,3}\d+)(?: \(was (?P<was>[A-Z]{1,3}\d+)\))?\s+(?P<rest>.*)$"
)


@dataclass
class WorkbookReview:
    """One workbook of a doc job's review: its diff, the cap line, and lines not understood."""

    path: str
    summary: str
    diff: WorkbookDiff
    more: str = ""
    unread: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # formulas that no longer follow rows
    looks: list[str] = field(default_factory=list)  # formatting and sheet features changed
    cells_left_out: int = 0  # cells of long inserted / deleted rows the review did not list

    @property
    def change_rows(self) -> int:
        return sum(len(h.changes) for s in self.diff.sheets for h in [*s.hunks, *s.columns])


def _status(summary: str) -> str:
    if summary.startswith("new workbook"):
        return "added"
    if summary.startswith("workbook deleted"):
        return "removed"
    return "unchanged" if summary == "no changes" else "changed"


def read_workbook(path: str, summary: str, lines: list[str]) -> WorkbookReview:
    """The body lines of one `path (xlsx): summary` block, as the kind's WorkbookDiff."""
    review = WorkbookReview(path, summary, WorkbookDiff(status=_status(summary)))
    sheet: SheetDiff | None = None
    hunk: RowHunk | ColumnHunk | None = None
    for line in lines:
        if line.startswith("... "):
            review.more = line[4:]
            continue
        if found := _SHEET.match(line):
            status = found.group("status") or "changed"
            was = found.group("was")
            sheet = SheetDiff(name=ast.literal_eval(found.group("name")), status=status,
                              renamed_from=ast.literal_eval(was) if was else None)  # fmt: skip
            review.diff.sheets.append(sheet)
            hunk = None
            if status != "changed":
                hunk = RowHunk(kind="inserted" if status == "added" else "deleted")
                sheet.hunks.append(hunk)
            continue
        if sheet is None:  # the workbook's own lines: risks, then parts that changed
            if line.startswith("  ! "):
                review.warnings.append(line[4:])
            elif line.startswith("  workbook "):
                review.looks.append(line[2:])
            else:
                review.unread.append(line)
            continue
        try:
            hunk = _line(review, sheet, hunk, line)
        except ValueError:
            review.unread.append(line)
    return review


def _line(
    review: WorkbookReview, sheet: SheetDiff, hunk: RowHunk | ColumnHunk | None, line: str
) -> RowHunk | ColumnHunk | None:
    """One line under a sheet; the hunk it belongs to (ValueError: not understood)."""
    if sheet.status == "changed" and (columns := _COLUMNS.match(line)):
        first = columns.group("one") or columns.group("first")
        last = columns.group("one") or columns.group("last")
        inserted = ColumnHunk(kind=columns.group("kind"), first=first, last=last)
        sheet.columns.append(inserted)
        return inserted
    if sheet.status == "changed" and (rows := _ROWS.match(line)):
        first = int(rows.group("one") or rows.group("first"))
        last = int(rows.group("one") or rows.group("last"))
        if rows.group("kind") == "inserted":
            hunk = RowHunk(kind="inserted", new_rows=(first, last))
        else:
            hunk = RowHunk(kind="deleted", old_rows=(first, last))
        sheet.hunks.append(hunk)
        return hunk
    indent = "      " if sheet.status == "changed" else "    "
    row_line = line.startswith(indent) and line[len(indent) : len(indent) + 1] not in ("", " ")
    if hunk is not None and hunk.kind != "changed" and row_line:
        found, left_out = cells.row_cells(line[len(indent) :])
        review.cells_left_out += left_out
        for address, value in found:
            added = hunk.kind == "inserted"
            hunk.changes.append(
                CellChange(
                    sheet=sheet.name,
                    old_cell=None if added else address,
                    new_cell=address if added else None,
                    old=None if added else value,
                    new=value if added else None,
                    kind="added" if added else "removed",
                )
            )
        return hunk
    if sheet.status == "changed" and (look := _LOOK.match(line)):
        review.looks.append(f"{sheet.name}: {look.group('text')}")
        return hunk
    if sheet.status == "changed" and (shift := _SHIFT.match(line)):
        review.warnings.append(shift.group("text"))
        return hunk
    if found := _CELL.match(line):
        old, new = cells.change(found.group("rest").removesuffix(SAME_TEXT))
        if hunk is None or hunk.kind != "changed":
            hunk = RowHunk(kind="changed")
            sheet.hunks.append(hunk)
        hunk.changes.append(
            CellChange(
                sheet=sheet.name,
                old_cell=found.group("was") or found.group("cell"),
                new_cell=found.group("cell"),
                old=old,
                new=new,
                kind="added" if old is None else "removed" if new is None else "changed",
            )
        )
        return hunk
    raise ValueError(line)


def hunk_label(hunk: RowHunk | ColumnHunk) -> str:
    if isinstance(hunk, ColumnHunk):
        return f"{hunk.label} {hunk.kind}"
    span = hunk.new_rows or hunk.old_rows
    if span is None:
        return ""
    rows = f"row {span[0]}" if span[0] == span[1] else f"rows {span[0]}–{span[1]}"
    return f"{rows} {hunk.kind}"


def render_workbook(review: WorkbookReview) -> Markup:
    return render("_workbook.html", review=review, hunk_label=hunk_label, cells=cells)
