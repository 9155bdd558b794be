"""What an XLSX sheet looks like beyond its values, read alongside them by
runtime.doc_formats.load_xlsx: each cell's style (number format, bold, italic, font colour,
fill, alignment, wrap) and the sheet's features (hidden and resized columns, hidden rows,
freeze panes, autofilter, merged cells, conditional formatting, data validation).

A review compares these (runtime.kinds.doc.diff.formatting) so that a job that only changed
formats, hid a column or broke a filter's range is never "no changes". Styles are resolved to
their content (ids differ between files); features are read from the sheet's XML outside its
cell data, with bounded regular expressions over bytes already checked by doc_formats.
"""

from __future__ import annotations

import re
import zipfile
from typing import Any

from pydantic import BaseModel

Style = tuple[tuple[str, str], ...]  # (attribute, shown value), only those not at default

_COLS = re.compile(rb"<(?:\w+:)?cols>(.*?)</(?:\w+:)?cols>", re.S)
_COL = re.compile(rb"<(?:\w+:)?col\b([^>]*)/?>")
_ATTR = re.compile(rb'(\w+)="([^"]*)"')
_HIDDEN_ROW = re.compile(rb'<(?:\w+:)?row\b[^>]*\bhidden="(?:1|true)"[^>]*>')
_ROW_NUMBER = re.compile(rb'\br="(\d+)"')
_PANE = re.compile(rb"<(?:\w+:)?pane\b([^>]*)/?>")
_AUTOFILTER = re.compile(rb'<(?:\w+:)?autoFilter\b[^>]*\bref="([^"]+)"')
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*\bref="([^"]+)"')
_CONDITIONAL = re.compile(rb'<(?:\w+:)?conditionalFormatting\b[^>]*\bsqref="([^"]+)"')
_VALIDATION = re.compile(rb'<(?:\w+:)?dataValidation\b[^>]*\bsqref="([^"]+)"')
_SHEET_DATA_END = re.compile(rb"</(?:\w+:)?sheetData>|<(?:\w+:)?sheetData\s*/>")


class SheetLook(BaseModel):
    """One sheet's formatting: its distinct styles and, per cell, the index of its style (0 is
    the default look); and its features, each shown as text."""

    styles: list[Style] = [()]
    cells: list[list[int]] = []
    features: dict[str, str] = {}


def _colour(colour: Any) -> str:
    if colour is None:
        return ""
    rgb = getattr(colour, "rgb", None)
    if isinstance(rgb, str) and rgb not in ("FF000000", "00000000"):
        return f"#{rgb[-6:]}"
    theme = getattr(colour, "theme", None)
    if isinstance(theme, int) and getattr(colour, "type", "") == "theme":
        return f"theme {theme}" + (f" tint {colour.tint:+.2f}" if colour.tint else "")
    return ""


class StyleReader:
    """Resolves a workbook's style ids to what they look like, once per id."""

    def __init__(self, book: Any) -> None:
        from openpyxl.styles.numbers import BUILTIN_FORMATS, BUILTIN_FORMATS_MAX_SIZE

        self.book = book
        self.builtin, self.builtin_max = BUILTIN_FORMATS, BUILTIN_FORMATS_MAX_SIZE
        # The workbook's default look (style 0: its default font and colour) is no look of its
        # own: a cell's style is what it has beyond that.
        self.base = set(self._resolve(0))
        self.seen: dict[int, Style] = {0: ()}

    def style(self, style_id: int) -> Style:
        found = self.seen.get(style_id)
        if found is None:
            resolved = self._resolve(style_id)
            found = self.seen[style_id] = tuple(x for x in resolved if x not in self.base)
        return found

    def _resolve(self, style_id: int) -> Style:
        book = self.book
        try:
            array = book._cell_styles[style_id]
        except (IndexError, AttributeError):
            return ()
        out: list[tuple[str, str]] = []
        fmt_id = array.numFmtId
        if fmt_id < self.builtin_max:
            number_format = self.builtin.get(fmt_id, "General")
        else:
            number_format = book._number_formats[fmt_id - self.builtin_max]
        if number_format != "General":
            out.append(("number format", number_format))
        font = book._fonts[array.fontId] if array.fontId < len(book._fonts) else None
        if font is not None:
            if font.b:
                out.append(("bold", "yes"))
            if font.i:
                out.append(("italic", "yes"))
            if colour := _colour(font.color):
                out.append(("font colour", colour))
        fill = book._fills[array.fillId] if array.fillId < len(book._fills) else None
        pattern = getattr(fill, "fill_type", None) or getattr(fill, "patternType", None)
        if pattern and pattern != "none":
            shown = _colour(getattr(fill, "fgColor", None)) or pattern
            out.append(("fill", shown))
        alignments = getattr(book, "_alignments", [])
        if array.alignmentId and array.alignmentId < len(alignments):
            alignment = alignments[array.alignmentId]
            if alignment.horizontal:
                out.append(("alignment", alignment.horizontal))
            if alignment.wrap_text:
                out.append(("wrap", "yes"))
        return tuple(out)


def read_features(archive: zipfile.ZipFile, sheet: Any) -> dict[str, str]:
    """The sheet's features from its XML (not its cells): each shown as text, sorted.
    `archive` is the workbook's, opened once for all its sheets."""
    path = getattr(sheet, "_worksheet_path", None)
    if not path:
        return {}
    try:
        xml = archive.read(path.lstrip("/"))
    except KeyError:
        return {}
    end = _SHEET_DATA_END.search(xml)
    head, tail = (xml[: end.start()], xml[end.end() :]) if end else (xml, b"")
    features: dict[str, str] = {}
    hidden_columns, widths = [], []
    if cols := _COLS.search(head):
        for col in _COL.finditer(cols.group(1)):
            attrs = {k.decode(): v.decode() for k, v in _ATTR.findall(col.group(1))}
            span = _columns(attrs.get("min", ""), attrs.get("max", ""))
            if attrs.get("hidden") in ("1", "true"):
                hidden_columns.append(span)
            if attrs.get("customWidth") in ("1", "true") and "width" in attrs:
                widths.append(f"{span} {float(attrs['width']):g}")
    if hidden_columns:
        features["hidden columns"] = ", ".join(hidden_columns)
    if widths:
        features["column widths"] = ", ".join(widths)
    rows = [int(m.group(1)) for row in _HIDDEN_ROW.finditer(xml)
            if (m := _ROW_NUMBER.search(row.group(0)))]  # fmt: skip
    if rows:
        features["hidden rows"] = _row_ranges(rows)
    if pane := _PANE.search(head):
        attrs = {k.decode(): v.decode() for k, v in _ATTR.findall(pane.group(1))}
        if attrs.get("state") in ("frozen", "frozenSplit"):
            features["freeze panes"] = attrs.get("topLeftCell", "?")
    for name, pattern in (("autofilter", _AUTOFILTER), ("merged cells", _MERGE),
                          ("conditional formatting", _CONDITIONAL),
                          ("data validation", _VALIDATION)):  # fmt: skip
        found = [m.group(1).decode() for m in pattern.finditer(tail)]
        if found:
            features[name] = ", ".join(found)
    return features


def _columns(first: str, last: str) -> str:
    from openpyxl.utils import get_column_letter

    try:
        a, b = get_column_letter(int(first)), get_column_letter(int(last))
    except ValueError:
        return f"{first}:{last}"
    return a if a == b else f"{a}:{b}"


def _row_ranges(rows: list[int]) -> str:
    out: list[str] = []
    start = prev = rows[0]
    for row in [*rows[1:], 0]:
        if row == prev + 1:
            prev = row
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = row
    return ", ".join(out)
