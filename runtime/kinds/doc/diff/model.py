"""The diff data: pydantic models of a workbook diff (cells, row hunks, sheets), of a
document diff (paragraphs, tables) and of a `Review`. Data only: no diffing, no rendering.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from runtime.doc_formats import Cell

FileStatus = Literal["added", "removed", "changed", "unchanged"]
ChangeKind = Literal["added", "removed", "changed"]


class CellChange(BaseModel):
    """One cell that differs. Addresses are A1 style in the old and the new sheet (None on the
    side where the row does not exist); `old` / `new` are None for an empty cell."""

    sheet: str
    old_cell: str | None
    new_cell: str | None
    old: Cell
    new: Cell
    kind: ChangeKind


class RowHunk(BaseModel):
    """Consecutive rows of a sheet that were inserted, deleted, or paired and changed.

    Row ranges are 1-based and inclusive: `old_rows` in the old sheet, `new_rows` in the new.
    Inserted rows list their non-empty cells as added (new addresses), deleted rows as removed
    (old addresses), changed rows the cells that differ.
    """

    kind: Literal["changed", "inserted", "deleted"]
    old_rows: tuple[int, int] | None = None
    new_rows: tuple[int, int] | None = None
    changes: list[CellChange] = []

    @property
    def row_count(self) -> int:
        first, last = self.new_rows or self.old_rows or (1, 0)
        return last - first + 1


class ColumnHunk(BaseModel):
    """Consecutive columns of a sheet that were inserted or deleted (letters in the new sheet
    for inserted ones, in the old for deleted ones), with their non-empty cells."""

    kind: Literal["inserted", "deleted"]
    first: str
    last: str
    changes: list[CellChange] = []

    @property
    def label(self) -> str:
        return f"column {self.first}" if self.first == self.last else (
            f"columns {self.first}-{self.last}")  # fmt: skip

    @property
    def column_count(self) -> int:
        from openpyxl.utils import column_index_from_string as index

        return index(self.last) - index(self.first) + 1


def _away(n: int, one: str, below: str, above: str) -> str:
    return (f"the {one} {below}" if n == 1 else f"the {one} {above}" if n == -1
            else f"{abs(n):,} {one}s {below if n > 0 else above}")  # fmt: skip


class FormulaShift(BaseModel):
    """Formulas of one column whose text stayed the same while their row (or column) moved:
    their references did not move with them (Excel would have rewritten them), so each now
    refers `rows` rows (and `columns` columns) from where it did (negative: above, left). The
    usual damage of a row inserted by a tool that does not rewrite formulas."""

    column: str
    count: int
    rows: int
    columns: int = 0

    def sentence(self, sheet: str) -> str:
        formulas = "formula" if self.count == 1 else "formulas"
        if not self.rows and not self.columns:  # its cell stayed; what it reads moved
            return (
                f"{self.count:,} {formulas} in {sheet}!{self.column} now read other cells of "
                "the sheets they name (their references did not move with those sheets' rows)"
            )
        where = [_away(self.rows, "row", "below", "above")] if self.rows else []
        if self.columns:
            where.append(_away(self.columns, "column", "to the right", "to the left"))
        moved = "rows" if not self.columns else "columns" if not self.rows else "cells"
        return (
            f"{self.count:,} {formulas} in {sheet}!{self.column} now refer to "
            f"{' and '.join(where)} (their references did not move with their {moved})"
        )


class FormatChange(BaseModel):
    """Cells whose look changed the same way: a range (new addresses), what, old and new."""

    range: str
    what: str  # number format, bold, italic, font colour, fill, alignment, wrap
    old: str
    new: str


class FeatureChange(BaseModel):
    """A sheet feature that changed: hidden columns, freeze panes, autofilter, … as text."""

    what: str
    old: str
    new: str


class SheetDiff(BaseModel):
    """The differences in one sheet; an added or removed sheet is one inserted / deleted hunk."""

    name: str
    status: Literal["added", "removed", "changed"]
    hunks: list[RowHunk] = []
    columns: list[ColumnHunk] = []  # inserted / deleted columns (row hunks compare the rest)
    shifted: list[FormulaShift] = []
    renamed_from: str | None = None  # the old workbook's name of this sheet
    formats: list[FormatChange] = []  # capped; formatted_cells counts them all
    formatted_cells: int = 0
    features: list[FeatureChange] = []

    @property
    def changes(self) -> list[CellChange]:
        return [change for hunk in self.hunks for change in hunk.changes]


class WorkbookDiff(BaseModel):
    """What differs between two workbooks: sheets with differences in the new workbook's order,
    then removed sheets; `reordered` when the sheets both have are in another order."""

    status: FileStatus
    sheets: list[SheetDiff] = []
    reordered: bool = False
    parts: list[FeatureChange] = []  # defined names, external links, macros, … that changed
    risks: list[str] = []  # what a reviewer must weigh: macros or external links added

    def _hunks(self, kind: str) -> list[RowHunk]:
        return [h for s in self.sheets if s.status == "changed" for h in s.hunks if h.kind == kind]

    @property
    def cells_changed(self) -> int:
        """Cells that differ in rows both sheets have (not counting inserted / deleted rows)."""
        return sum(len(h.changes) for h in self._hunks("changed"))

    @property
    def rows_inserted(self) -> int:
        return sum(h.row_count for h in self._hunks("inserted"))

    @property
    def rows_deleted(self) -> int:
        return sum(h.row_count for h in self._hunks("deleted"))

    @property
    def formulas_shifted(self) -> int:
        """Formulas whose references no longer follow their rows (FormulaShift)."""
        return sum(shift.count for s in self.sheets for shift in s.shifted)

    @property
    def formatted_cells(self) -> int:
        return sum(s.formatted_cells for s in self.sheets)

    @property
    def features_changed(self) -> list[str]:
        return [f"{s.name}: {f.what}" for s in self.sheets for f in s.features]

    @property
    def columns_inserted(self) -> int:
        return sum(c.column_count for s in self.sheets for c in s.columns if c.kind == "inserted")

    @property
    def columns_deleted(self) -> int:
        return sum(c.column_count for s in self.sheets for c in s.columns if c.kind == "deleted")

    @property
    def sheets_renamed(self) -> list[tuple[str, str]]:
        return [(s.renamed_from, s.name) for s in self.sheets if s.renamed_from is not None]

    @property
    def sheets_added(self) -> list[str]:
        return [s.name for s in self.sheets if s.status == "added"]

    @property
    def sheets_removed(self) -> list[str]:
        return [s.name for s in self.sheets if s.status == "removed"]

    @property
    def change_count(self) -> int:
        """Every cell change, including the cells of inserted and deleted rows, columns and
        sheets."""
        return sum(len(h.changes) for s in self.sheets for h in [*s.hunks, *s.columns])


class ParagraphChange(BaseModel):
    """A paragraph added, removed or changed (text or style). `section` is the heading above it
    (in the new document; in the old one for a removed paragraph)."""

    what: Literal["paragraph"] = "paragraph"
    kind: ChangeKind
    section: str | None = None
    old_style: str | None = None
    new_style: str | None = None
    old_text: str | None = None
    new_text: str | None = None
    # The runs' direct formatting that changed, as (what, text): "bold" on 'Total' only the new
    # paragraph has is added, one only the old has is removed.
    marks_added: list[tuple[str, str]] = []
    marks_removed: list[tuple[str, str]] = []


class TableCellChange(BaseModel):
    """One table cell that differs, in a row both versions of the table have (1-based)."""

    table: int
    old_row: int
    new_row: int
    col: int
    old: str | None
    new: str | None
    kind: ChangeKind
    # The cell by its headers in the new table: the first column's text of its row and the
    # header row's text of its column (None where there is none, or the cell is a header).
    row_name: str | None = None
    col_name: str | None = None
    old_col: int | None = None  # the cell's column in the old table, when a column moved it

    @property
    def named(self) -> str:
        """(row 'south', column 'q3'), or "" when the table names neither."""
        parts = [f"row {self.row_name!r}" if self.row_name else "",
                 f"column {self.col_name!r}" if self.col_name else ""]  # fmt: skip
        shown = ", ".join(p for p in parts if p)
        return f"({shown})" if shown else ""


class TableRow(BaseModel):
    """A table row added (row number in the new table) or removed (in the old table)."""

    row: int
    cells: list[str]


class TableColumn(BaseModel):
    """A table column inserted (column number in the new table) or deleted (in the old table),
    with its cells top to bottom; the cells right of it are compared with their moved column."""

    col: int
    cells: list[str]


class TableChange(BaseModel):
    """A table added, removed or changed. Tables are numbered from 1 in each document; shapes
    are (rows, columns). An added table lists all its rows as added, a removed one as removed."""

    what: Literal["table"] = "table"
    kind: ChangeKind
    section: str | None = None
    old_table: int | None = None
    new_table: int | None = None
    old_shape: tuple[int, int] | None = None
    new_shape: tuple[int, int] | None = None
    cells: list[TableCellChange] = []
    rows_added: list[TableRow] = []
    rows_removed: list[TableRow] = []
    columns_added: list[TableColumn] = []
    columns_removed: list[TableColumn] = []

    @property
    def change_count(self) -> int:
        return (len(self.cells) + len(self.rows_added) + len(self.rows_removed)
                + len(self.columns_added) + len(self.columns_removed))  # fmt: skip


class HeaderChange(BaseModel):
    """A header or footer added, removed or changed: its name ("footer", "first-page header
    (section 2)") and its text on each side."""

    kind: ChangeKind
    name: str
    old: str | None = None
    new: str | None = None


class CommentChange(BaseModel):
    """A comment only one version has: its author, its text and the text it is on."""

    kind: Literal["added", "removed"]
    author: str = ""
    text: str
    anchor: str = ""


class RevisionChange(BaseModel):
    """An unaccepted tracked change only one version has: added by the job, or removed
    (accepted or rejected); `revision` is what it does."""

    kind: Literal["added", "removed"]
    revision: Literal["inserted", "deleted", "moved", "formatted"]
    author: str = ""
    text: str


class ImageChange(BaseModel):
    """A picture added, removed, or changed (other bytes under the same part name)."""

    kind: ChangeKind
    name: str
    old_sha256: str | None = None
    new_sha256: str | None = None
    old_size: int | None = None
    new_size: int | None = None


BlockChange = Annotated[ParagraphChange | TableChange, Field(discriminator="what")]


class DocumentDiff(BaseModel):
    """What differs between two DOCX documents: body changes in document order; headers and
    footers, comments, tracked changes and pictures; how many unaccepted tracked changes the
    new version has (publishing it publishes them); the parts either side could not read."""

    status: FileStatus
    changes: list[BlockChange] = []
    headers: list[HeaderChange] = []
    comments: list[CommentChange] = []
    revisions: list[RevisionChange] = []
    images: list[ImageChange] = []
    tracked: int = 0
    unread: list[str] = []

    def _count(self, what: str, kind: str) -> int:
        return sum(1 for c in self.changes if c.what == what and c.kind == kind)

    @property
    def tables_changed(self) -> list[TableChange]:
        return [c for c in self.changes if isinstance(c, TableChange) and c.kind == "changed"]

    @property
    def change_count(self) -> int:
        body = sum(c.change_count if isinstance(c, TableChange) else 1 for c in self.changes)
        parts = self.headers, self.comments, self.revisions, self.images
        return body + sum(len(items) for items in parts)


class Review(BaseModel):
    """One document as a reviewer sees it: the rendered diff, a preview, a one-line summary,
    and the structured diff (None for Markdown and CSV, whose diff is text)."""

    path: str
    format: str
    status: FileStatus
    summary: str
    diff_text: str
    preview: str
    diff: WorkbookDiff | DocumentDiff | None = None
