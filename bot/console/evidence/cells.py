"""Cell values as the doc kind writes them in its review text, read back: `'text'` (a Python
repr), `12`, `1.5`, `TRUE`, `=SUM(A1:A3)` (a formula, never quoted), `(empty)`.

The doc kind keeps its review as text (document-diff.txt, runtime.kinds.doc.diff.render), not
as the diff models; this reads that text back into them. Pure: no I/O, and never raises past
`ValueError` for a value it cannot read (the caller shows the line as it was recorded).
"""

from __future__ import annotations

import ast
import re

from runtime.doc_formats import Cell

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|inf|nan)")
_ADDRESS = re.compile(r"[A-Z]{1,3}\d+")
_NEXT_CELL = re.compile(r", (?=[A-Z]{1,3}\d+ |… \(\+)")
ARROW = " -> "
CUT_WIDTHS = (30, 40, 60, 200)  # where the kind cuts a table cell, row cell, value, paragraph


def value(text: str) -> Cell:
    """One whole value; ValueError when `text` is not one."""
    if _QUOTED.fullmatch(text):
        return str(ast.literal_eval(text))
    if text == "(empty)":
        return None
    if text in ("TRUE", "FALSE"):
        return text == "TRUE"
    if text.startswith("="):
        return text
    if _NUMBER.fullmatch(text):
        number = float(text)
        return int(text) if re.fullmatch(r"-?\d+", text) else number
    raise ValueError(f"not a cell value: {text[:80]!r}")


def change(text: str) -> tuple[Cell, Cell]:
    """`old -> new`, where either side may itself hold ' -> ' (a quoted text, a formula)."""
    start = text.find(ARROW)
    while start >= 0:
        try:
            return value(text[:start]), value(text[start + len(ARROW) :])
        except ValueError:
            start = text.find(ARROW, start + 1)
    raise ValueError(f"not an old -> new change: {text[:80]!r}")


def row_cells(text: str) -> tuple[list[tuple[str, Cell]], int]:
    """`A7 'payments', B7 12, … (+3 cells)` as [(address, value)] and how many more cells the
    line left out; ValueError when it is not such a line."""
    cells: list[tuple[str, Cell]] = []
    more = 0
    i = 0
    while i < len(text):
        tail = re.fullmatch(r"… \(\+(\d+) cells?\)", text[i:])
        if tail:
            more = int(tail.group(1))
            break
        address = _ADDRESS.match(text, i)
        if not address or text[address.end() : address.end() + 1] != " ":
            raise ValueError(f"not a row of cells at {text[i : i + 40]!r}")
        start = address.end() + 1
        ends = [m.start() for m in _NEXT_CELL.finditer(text, start)] + [len(text)]
        for end in ends:
            try:
                cells.append((address.group(0), value(text[start:end])))
            except ValueError:
                continue
            i = end + 2 if end < len(text) else end
            break
        else:
            raise ValueError(f"not a cell value at {text[start : start + 40]!r}")
    return cells, more


def kind_of(cell: Cell) -> str:
    """How a value is shown: formula, text, number, bool or empty (a CSS class suffix)."""
    if cell is None or cell == "":
        return "empty"
    if isinstance(cell, bool):
        return "bool"
    if isinstance(cell, int | float):
        return "number"
    return "formula" if cell.startswith("=") else "text"


def shown(cell: Cell) -> str:
    """A value as a reviewer reads it: the formula's text, TRUE, 12, the text itself."""
    if cell is None or cell == "":
        return "(empty)"
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    return str(cell)


def is_cut(cell: Cell) -> bool:
    """The recorded review cut this value (it ends in … at the kind's width)."""
    return isinstance(cell, str) and cell.endswith("…") and len(cell) in CUT_WIDTHS
