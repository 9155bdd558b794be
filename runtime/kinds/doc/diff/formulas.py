"""Formulas when rows move: a formula's shape without its own-sheet row numbers (to align
rows), and the rewrite Excel makes of its references when rows are inserted or deleted (to
compare cells).

Formulas are compared by meaning: when rows are inserted or deleted Excel rewrites the
references to the rows that moved (=B5*C5 in row 5 becomes =B25*C25 in row 25, =SUM(B2:B100)
becomes =SUM(B2:B120)); a formula whose new text is exactly that rewrite of the old one, by the
alignment's row mapping, is unchanged, and one whose text stayed the same while its rows moved
is changed (it refers to other rows now: what a tool that inserts rows without rewriting
formulas leaves). For alignment a formula counts without the row numbers of its own-sheet
references. Any other difference is a change.
"""

from __future__ import annotations

import re

from runtime.doc_formats import Cell

# A1 references in a formula. String literals and quoted sheet names are matched (and kept)
# so that nothing inside them counts; group 1 is "!" for a reference to another sheet.
_REF = re.compile(
    r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'"
    r"|(!)?(?<![A-Za-z0-9_.$])(\$?[A-Z]{1,3}\$?)([0-9]{1,7})(?![0-9A-Za-z_(!])"
)


def _own_reference(m: re.Match[str]) -> bool:
    """Whether a _REF match is a reference to a row of the formula's own sheet."""
    bang, column, _ = m.groups()
    if column is None or bang:  # a literal, or another sheet's cell
        return False
    if len(column) < 3:  # at most two letters (or "$" and one): a cell
        return True
    letters = column.replace("$", "")
    return not (len(letters) == 3 and letters > "XFD")  # a name like TAX2023, not a cell


def _formula_shape(formula: str) -> str:
    """The formula without the row numbers of references to its own sheet: the same wherever
    rows moved (=B5*C5 in row 5 and =B25*C25 in row 25 are both =B_*C_)."""
    return _REF.sub(lambda m: f"{m.group(2)}\x00" if _own_reference(m) else m.group(0), formula)


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


class _RowMap:
    """Where each old row (and column, when columns were inserted or deleted) went in the new
    sheet (from the alignment), to move formulas as Excel does."""

    def __init__(
        self, old_rows: int, pairs: list[tuple[int, int]], columns: _Moves | None = None
    ) -> None:
        rows = _Moves(old_rows, pairs)
        self.to_new = rows.to_new  # 1-based new row, 0 for a deleted row
        self.tail_shift = rows.tail_shift  # for rows below the data
        self.rows = rows
        self.columns = columns if columns is not None and not columns.identity else None
        self.moved: dict[str, str | None] = {}
        # Nothing moved: every formula's references stay as they are (a formula is unchanged
        # when its text is), which spares rewriting each one.
        self.identity = rows.identity and self.columns is None

    def move(self, formula: str) -> str | None:
        """The formula with its own-sheet row numbers moved as Excel moves them when rows are
        inserted or deleted; None if it refers to a deleted row."""
        if formula in self.moved:
            return self.moved[formula]
        deleted = False
        to_new, tail, columns = self.rows.to_new, self.rows.tail_shift, self.columns

        def moved(m: re.Match[str]) -> str:
            nonlocal deleted
            if not _own_reference(m):
                return m.group(0)
            row = int(m.group(3))
            new_row = to_new[row - 1] if row <= len(to_new) else row + tail
            column = m.group(2)
            if columns is not None:
                column = _move_column(column, columns)
            deleted = deleted or not new_row or not column
            return f"{column}{new_row}"

        result = _REF.sub(moved, formula)
        self.moved[formula] = None if deleted else result
        return self.moved[formula]


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
        return f"{_move_column(m.group(2), columns) or m.group(2)}{m.group(3)}"

    return _REF.sub(moved, formula)


def _same_cell(a: Cell, b: Cell, rows: _RowMap) -> bool:
    """Whether an old and a new cell of aligned rows hold the same thing: equal values of one
    type family (TRUE is not 1), or a formula that Excel would have rewritten into the new one
    when the rows above or inside its ranges were inserted or deleted."""
    if a.__class__ is str and b.__class__ is str and a[:1] == "=" == b[:1]:  # type: ignore[index]
        # By meaning, not text: the same text in a row that moved refers elsewhere now.
        return a == b if rows.identity else rows.move(a) == b  # type: ignore[arg-type]
    if a == b:
        return (a.__class__ is bool) == (b.__class__ is bool)
    return False
