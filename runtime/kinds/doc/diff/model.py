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


class FormulaShift(BaseModel):
    """Formulas of one column whose text stayed the same while their row moved: their
    references did not move with them (Excel would have rewritten them), so each now refers
    `rows` rows from where it did (negative: above). The usual damage of a row inserted by a
    tool that does not rewrite formulas."""

    column: str
    count: int
    rows: int

    def sentence(self, sheet: str) -> str:
        n = abs(self.rows)
        where = ("the row above" if self.rows == -1 else "the row below" if self.rows == 1
                 else f"{n:,} rows {'above' if self.rows < 0 else 'below'}")  # fmt: skip
        formulas = "formula" if self.count == 1 else "formulas"
        return (
            f"{self.count:,} {formulas} in {sheet}!{self.column} now refer to {where} "
            "(their references did not move with their rows)"
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
        """Every cell change, including the cells of inserted and deleted rows and sheets."""
        return sum(len(h.changes) for s in self.sheets for h in s.hunks)


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

    @property
    def change_count(self) -> int:
        return len(self.cells) + len(self.rows_added) + len(self.rows_removed)


BlockChange = Annotated[ParagraphChange | TableChange, Field(discriminator="what")]


class DocumentDiff(BaseModel):
    """What differs between two DOCX bodies, in document order."""

    status: FileStatus
    changes: list[BlockChange] = []

    def _count(self, what: str, kind: str) -> int:
        return sum(1 for c in self.changes if c.what == what and c.kind == kind)

    @property
    def tables_changed(self) -> list[TableChange]:
        return [c for c in self.changes if isinstance(c, TableChange) and c.kind == "changed"]

    @property
    def change_count(self) -> int:
        return sum(c.change_count if isinstance(c, TableChange) else 1 for c in self.changes)


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
