"""Formulas when rows and columns move: a formula's shape without its own-sheet row numbers
(to align rows), and the rewrite Excel makes of its references when rows or columns are
inserted or deleted, in its own sheet or in the sheets it reads (to compare cells).

Formulas are compared by meaning: when rows are inserted or deleted Excel rewrites the
references to the rows that moved (=B5*C5 in row 5 becomes =B25*C25 in row 25, =SUM(B2:B100)
becomes =SUM(B2:B120), =Prices!B5 becomes =Prices!B6 when a row is inserted above row 5 of
Prices, and 'Old name'!B5 becomes 'New name'!B5 when the sheet is renamed); a formula whose new
text is exactly that rewrite of the old one, by the alignments' mappings, is unchanged, and one
whose text stayed the same while what it refers to moved is changed (it refers to other cells
now: what a tool that inserts rows without rewriting formulas leaves). For alignment a formula
counts without the row numbers of its own-sheet references. Any other difference is a change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.doc_formats import Cell

# A1 references in a formula, each perhaps with its sheet ('Q1 plan'!B5, Prices!B2:B9: group
# 1, with its "!") and as a range (groups 4 and 5 are the range's end). String literals are
# matched (and kept) so that nothing inside them counts. A reference after "]" (one to
# another workbook) or inside a name is not matched.
_SHEET_PREFIX = r"(?:'(?:[^']|'')+'|[A-Za-z_\u00a1-\uffff][A-Za-z0-9_.\u00a1-\uffff]*)!"
_CELL_REF = r"(\$?[A-Z]{1,3}\$?)([0-9]{1,7})"
_REF = re.compile(
    r"\"(?:[^\"]|\"\")*\""
    rf"|(?<![A-Za-z0-9_.$!'\]])({_SHEET_PREFIX})?{_CELL_REF}(?::{_CELL_REF})?(?![0-9A-Za-z_(!])"
)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_CELL_LIKE = re.compile(r"[A-Za-z]{1,3}[0-9]+|[RrCc][0-9]*")


def _is_cell(column: str) -> bool:
    """Whether column letters (perhaps with $) name a column: TAX2023 is a name, not a cell."""
    if len(column) < 3:
        return True
    letters = column.replace("$", "")
    return not (len(letters) == 3 and letters > "XFD")


def _own_reference(m: re.Match[str]) -> bool:
    """Whether a _REF match is a reference to the formula's own sheet (no sheet named)."""
    column = m.group(2)
    return column is not None and m.group(1) is None and _is_cell(column)


def _sheet_name(prefix: str) -> str:
    """The sheet a reference's prefix names: 'Q1 ''plan'''! is Q1 'plan'."""
    name = prefix[:-1]
    return name[1:-1].replace("''", "'") if name.startswith("'") else name


def _prefix(name: str) -> str:
    """A sheet name as a formula writes it before "!" (quoted unless it is a plain name)."""
    if _PLAIN_NAME.fullmatch(name) and not _CELL_LIKE.fullmatch(name):
        return f"{name}!"
    return "'" + name.replace("'", "''") + "'!"


def _formula_shape(formula: str) -> str:
    """The formula without the row numbers of references to its own sheet: the same wherever
    rows moved (=B5*C5 in row 5 and =B25*C25 in row 25 are both =B_*C_)."""

    def shape(m: re.Match[str]) -> str:
        if not _own_reference(m):
            return m.group(0)
        end = f":{m.group(4)}\x00" if m.group(4) else ""
        return f"{m.group(2)}\x00{end}"

    return _REF.sub(shape, formula)


def _loose_shape(formula: str) -> str:
    """The formula without its own-sheet references at all: the same wherever its row or its
    column moved (to line up columns)."""
    return _REF.sub(lambda m: "\x00" if _own_reference(m) else m.group(0), formula)


class _Moves:
    """Where each old row (or column) went in the new sheet, from an alignment's pairs:
    1-based new positions, 0 for one deleted; positions past the old ones shift like the
    last pair."""

    def __init__(self, count: int, pairs: list[tuple[int, int]]) -> None:
        self.to_new = [0] * count
        for i, j in pairs:
            self.to_new[i] = j + 1
        last = max(pairs, default=(count - 1, count - 1))
        self.tail_shift = last[1] - last[0]
        self.identity = self.tail_shift == 0 and all(
            new == old + 1 for old, new in enumerate(self.to_new)
        )

    def __call__(self, position: int) -> int:
        """The new 1-based position of an old 1-based one (0: deleted)."""
        if position <= len(self.to_new):
            return self.to_new[position - 1]
        return position + self.tail_shift


@dataclass
class SheetMoves:
    """How one sheet of the old workbook lines up with the new one: its new name, where its
    rows went, and where its columns went (None: by position)."""

    name: str
    rows: _Moves
    columns: _Moves | None = None

    @property
    def identity(self) -> bool:
        return self.rows.identity and self.columns is None


class _RowMap:
    """Where each old row (and column, when columns were inserted or deleted) went in the new
    sheet (from the alignment), and how the other sheets moved (`others`, by old name, set
    once every sheet is aligned), to move formulas as Excel does."""

    def __init__(
        self, old_rows: int, pairs: list[tuple[int, int]], columns: _Moves | None = None
    ) -> None:
        rows = _Moves(old_rows, pairs)
        self.to_new = rows.to_new  # 1-based new row, 0 for a deleted row
        self.tail_shift = rows.tail_shift  # for rows below the data
        self.rows = rows
        self.columns = columns if columns is not None and not columns.identity else None
        self.own = SheetMoves("", rows, self.columns)
        self.others: dict[str, SheetMoves] = {}
        self.moved: dict[str, str | None] = {}
        # Nothing moved: every formula's references stay as they are (a formula is unchanged
        # when its text is), which spares rewriting each one.
        self.identity = self.own.identity

    def read_others(self, others: dict[str, SheetMoves]) -> None:
        """The workbook's sheets (old name -> how each moved), before any formula is moved."""
        self.others = others
        self.moved.clear()
        self.identity = self.own.identity and all(
            s.identity and s.name == old for old, s in others.items()
        )

    def move(self, formula: str) -> str | None:
        """The formula with its references moved as Excel moves them when rows or columns are
        inserted or deleted (in its sheet or the sheets it names), and renamed sheets renamed;
        None if it refers to a deleted row or column."""
        if formula in self.moved:
            return self.moved[formula]
        deleted = False

        def moved(m: re.Match[str]) -> str:
            nonlocal deleted
            column = m.group(2)
            if column is None or not _is_cell(column):
                return m.group(0)
            prefix = m.group(1)
            sheet = self.own if prefix is None else self.others.get(_sheet_name(prefix))
            if sheet is None:  # a sheet this workbook does not have (or had)
                return m.group(0)
            first = _move_cell(column, m.group(3), sheet)
            end = _move_cell(m.group(4), m.group(5), sheet) if m.group(4) else None
            deleted = deleted or first is None or (m.group(4) is not None and end is None)
            renamed = "" if prefix is None else _prefix(sheet.name)
            return f"{renamed}{first}" + (f":{end}" if end else "")

        result = _REF.sub(moved, formula)
        self.moved[formula] = None if deleted else result
        return self.moved[formula]


def _move_cell(column: str, row: str, sheet: SheetMoves) -> str | None:
    """One reference moved with its sheet's rows and columns; None when its row or column was
    deleted."""
    new_row = sheet.rows(int(row))
    if sheet.columns is not None:
        column = _move_column(column, sheet.columns)
    return f"{column}{new_row}" if new_row and column else None


def _move_column(column: str, columns: _Moves) -> str:
    """A reference's column letters ($ kept) where the column went; "" when it was deleted."""
    from openpyxl.utils import column_index_from_string, get_column_letter

    letters = column.strip("$")
    moved = columns(column_index_from_string(letters))
    return column.replace(letters, get_column_letter(moved)) if moved else ""


def move_columns(formula: str, columns: _Moves) -> str:
    """The formula with only its own-sheet columns moved (rows as they are), to compare an old
    row with a new one when columns were inserted or deleted."""

    def moved(m: re.Match[str]) -> str:
        if not _own_reference(m):
            return m.group(0)
        first = f"{_move_column(m.group(2), columns) or m.group(2)}{m.group(3)}"
        if not m.group(4):
            return first
        return f"{first}:{_move_column(m.group(4), columns) or m.group(4)}{m.group(5)}"

    return _REF.sub(moved, formula)


def _same_cell(a: Cell, b: Cell, rows: _RowMap) -> bool:
    """Whether an old and a new cell of aligned rows hold the same thing: equal values of one
    type family (TRUE is not 1), or a formula that Excel would have rewritten into the new one
    when the rows or columns it refers to were inserted or deleted."""
    if a.__class__ is str and b.__class__ is str and a[:1] == "=" == b[:1]:  # type: ignore[index]
        # By meaning, not text: the same text in a row that moved refers elsewhere now.
        return a == b if rows.identity else rows.move(a) == b  # type: ignore[arg-type]
    if a == b:
        return (a.__class__ is bool) == (b.__class__ is bool)
    return False
