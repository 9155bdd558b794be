"""Cell values as the doc kind writes them in its review text, read back: `'text'` (a Python
repr), `12`, `1.5`, `TRUE`, `=SUM(A1:A3)` (a formula, never quoted), `(empty)`.

The doc kind keeps its review as text (document-diff.txt, runtime.kinds.doc.diff.render), not
as the diff models; this reads that text back into them. Pure: no I/O, and never raises past
`ValueError` for a value it cannot read (the caller shows the line as it was recorded).
"""

from __future__ import annotations

import ast
import datetime as dt
import re

from runtime.doc_formats import Cell
from runtime.kinds.doc.diff.render import type_of

_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|inf|nan)")
_ADDRESS = re.compile(r"[A-Z]{1,3}\d+")
_NEXT_CELL = re.compile(r", (?=[A-Z]{1,3}\d+ |… \(\+)")
ARROW = " -> "
CUT_WIDTHS = (30, 40, 60, 200)  # where the kind cuts a table cell, row cell, value, paragraph


_TYPED = re.compile(
    r"(?P<v>.*) \((?P<t>date|date/time|time|duration|number|text|boolean|formula)\)"
)
_DURATION = re.compile(r"(?:(?P<d>-?\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)")


def _typed(text: str, kind: str) -> Cell:
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "date/time":
        return dt.datetime.fromisoformat(text)
    if kind == "time":
        return dt.time.fromisoformat(text)
    if kind == "duration":
        if not (found := _DURATION.fullmatch(text)):
            raise ValueError(f"not a duration: {text[:80]!r}")
        days, hours, minutes = (int(found.group(k) or 0) for k in "dhm")
        return dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=float(found["s"]))
    read = value(text)  # a label the review added because the kind of value changed
    if type_of(read) != kind:
        raise ValueError(f"{text[:80]!r} is not a {kind}")
    return read


def value(text: str) -> Cell:
    """One whole value; ValueError when `text` is not one."""
    if (typed := _TYPED.fullmatch(text)) and not text.startswith("="):
        return _typed(typed.group("v"), typed.group("t"))
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
    """How a value is shown: formula, text, number, bool, date or empty (a CSS class suffix)."""
    label = type_of(cell)
    return {"boolean": "bool", "date/time": "date", "time": "date", "duration": "date"}.get(
        label, label
    )


def shown(cell: Cell) -> str:
    """A value as a reviewer reads it: the formula's text, TRUE, 12, the text itself, a date
    with its type (2026-03-01 (date)), so that it never reads like the text that looks like it."""
    if cell is None or cell == "":
        return "(empty)"
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, dt.date | dt.time | dt.timedelta):
        text = cell.isoformat() if not isinstance(cell, dt.timedelta) else str(cell)
        return f"{text} ({type_of(cell)})"
    return str(cell)


def is_cut(cell: Cell) -> bool:
    """The recorded review cut this value (it ends in … at the kind's width)."""
    return isinstance(cell, str) and cell.endswith("…") and len(cell) in CUT_WIDTHS
