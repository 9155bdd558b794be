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
    column = m.group(2)
    if column is None or m.group(1):  # a literal, or another sheet's cell
        return False
    letters = column.replace("$", "")
    return not (len(letters) == 3 and letters > "XFD")  # a name like TAX2023, not a cell


def _formula_shape(formula: str) -> str:
    """The formula without the row numbers of references to its own sheet: the same wherever
    rows moved (=B5*C5 in row 5 and =B25*C25 in row 25 are both =B_*C_)."""
    return _REF.sub(lambda m: f"{m.group(2)}\x00" if _own_reference(m) else m.group(0), formula)


class _RowMap:
    """Where each old row went in the new sheet (from the alignment), to move formulas."""

    def __init__(self, old_rows: int, pairs: list[tuple[int, int]]) -> None:
        self.to_new = [0] * old_rows  # 1-based new row, 0 for a deleted row
        for i, j in pairs:
            self.to_new[i] = j + 1
        last = max(pairs, default=(old_rows - 1, old_rows - 1))
        self.tail_shift = last[1] - last[0]  # for rows below the data
        self.moved: dict[str, str | None] = {}
        # No row moved: every formula's references stay as they are (a formula is unchanged
        # when its text is), which spares rewriting each one.
        self.identity = self.tail_shift == 0 and all(
            new == old + 1 for old, new in enumerate(self.to_new)
        )

    def move(self, formula: str) -> str | None:
        """The formula with its own-sheet row numbers moved as Excel moves them when rows are
        inserted or deleted; None if it refers to a deleted row."""
        if formula in self.moved:
            return self.moved[formula]
        deleted = False

        def moved(m: re.Match[str]) -> str:
            nonlocal deleted
            if not _own_reference(m):
                return m.group(0)
            row = int(m.group(3))
            new_row = self.to_new[row - 1] if row <= len(self.to_new) else row + self.tail_shift
            deleted = deleted or not new_row
            return f"{m.group(2)}{new_row}"

        result = _REF.sub(moved, formula)
        self.moved[formula] = None if deleted else result
        return self.moved[formula]


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
