"""Short looks at one file for a reviewer: the first rows of a workbook's sheets, a
document's heading outline, a Markdown outline, the first rows of a CSV. No diffing.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from openpyxl.utils import get_column_letter

from runtime import doc_formats
from runtime.doc_formats import Document, Workbook
from runtime.kinds.doc.diff.document import _heading_level
from runtime.kinds.doc.diff.wording import _cut, _names, _plural


def _preview_value(value: Any, width: int) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    return _cut(str(value), width)


def _grid(rows: list[list[Any]], first_row: int = 1, cols: int = 8, width: int = 20) -> list[str]:
    """Rows as an aligned text table with column letters and row numbers."""
    ncols = min(max((len(r) for r in rows), default=0), cols)
    more = any(len(r) > cols for r in rows)
    table = [[get_column_letter(c + 1) for c in range(ncols)]]
    table += [
        [_preview_value(r[c] if c < len(r) else None, width) for c in range(ncols)] for r in rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(ncols)]
    label = len(str(first_row + len(rows) - 1))
    lines = []
    for n, row in enumerate(table):
        number = "" if n == 0 else str(first_row + n - 1)
        cells = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
        lines.append(f"  {number:>{label}}  {cells}{'  …' if more else ''}".rstrip())
    return lines


def preview_workbook(wb: Workbook, rows: int = 5, sheets: int = 3) -> str:
    """The first `rows` rows of the first `sheets` sheets, as aligned text tables."""
    lines: list[str] = []
    names = list(wb.sheets)
    for name in names[:sheets]:
        data = wb.sheets[name]
        if not data:
            lines.append(f"sheet {name!r} (empty)")
            continue
        width = max(len(r) for r in data)
        lines.append(f"sheet {name!r} ({_plural(len(data), 'row')} x {_plural(width, 'column')})")
        lines += _grid(data[:rows])
        if len(data) > rows:
            lines.append(f"  … {_plural(len(data) - rows, 'more row')}")
    if len(names) > sheets:
        lines.append(f"… {_plural(len(names) - sheets, 'more sheet')}: {_names(names[sheets:])}")
    return "\n".join(lines or ["(no sheets)"]) + "\n"


def _outline(headings: list[tuple[int, str]], limit: int = 40) -> list[str]:
    lines = ["  " * (level - 1) + _cut(text, 80) for level, text in headings[:limit]]
    if len(headings) > limit:
        lines.append(f"… {_plural(len(headings) - limit, 'more heading')}")
    return lines


def preview_document(doc: Document) -> str:
    """The headings outline (indented by level), then the number of paragraphs and tables."""
    headings = []
    for p in doc.paragraphs:
        if (level := _heading_level(p.style)) is not None:
            headings.append((level, p.text))
    lines = _outline(headings)
    if not headings:
        first = next((p.text for p in doc.paragraphs if p.text.strip()), None)
        lines = ["(no headings)"] + ([f"starts: {_cut(first, 80)}"] if first else [])
    counts = f"{_plural(len(doc.paragraphs), 'paragraph')}, {_plural(len(doc.tables), 'table')}"
    return "\n".join([*lines, counts]) + "\n"


_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_MD_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def preview_text(path: str, text: str) -> str:
    """Markdown: the headings outline and line count. CSV: the first 5 rows as a table and the
    row count. Anything else: the first 5 lines."""
    fmt = doc_formats.format_of(path)
    lines = text.splitlines()
    if fmt == "markdown":
        headings, fenced = [], False
        for line in lines:
            if _MD_FENCE.match(line):
                fenced = not fenced
            elif not fenced and (m := _MD_HEADING.match(line)):
                headings.append((len(m[1]), m[2]))
        outline = _outline(headings) or ["(no headings)"]
        return "\n".join([*outline, _plural(len(lines), "line")]) + "\n"
    if fmt == "csv":
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error:
            rows = [[line] for line in lines]
        out = [f"{_plural(len(rows), 'row')} (header included)", *_grid(rows[:5])]
        if len(rows) > 5:
            out.append(f"  … {_plural(len(rows) - 5, 'more row')}")
        return "\n".join(out) + "\n"
    return "\n".join([_cut(line, 120) for line in lines[:5]]) + "\n"
