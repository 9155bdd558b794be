"""What an XLSX sheet looks like beyond its values, read alongside them by
runtime.doc_formats.load_xlsx: each cell's style (number format, font, bold, italic, font
colour, fill, border, alignment, wrap) and the sheet's features (hidden and resized columns,
hidden rows, freeze panes, autofilter, merged cells, conditional formatting, data validation,
charts and images); and the workbook's own parts (defined names, external links, data
connections, macros).

A review compares these (runtime.kinds.doc.diff.formatting) so that a job that only changed
formats, hid a column or broke a filter's range is never "no changes". Styles are resolved to
their content (ids differ between files); features are read from the sheet's XML outside its
cell data, with bounded regular expressions over bytes already checked by doc_formats.
"""

from __future__ import annotations

import posixpath
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


# Characters an Excel number format shows as they are, escaped, quoted or not: "yyyy\-mm" is
# "yyyy-mm", '"$"#,##0' is '$#,##0' (writers differ: LibreOffice escapes, openpyxl quotes).
_NEEDLESS_ESCAPE = re.compile(r"\\([-+/():!^&'~{}<>= $])|\"([-+/():!^&'~{}<>= $]+)\"")


def _plain_format(number_format: str) -> str:
    """A number format without escapes or quotes that change nothing."""
    if "\\" not in number_format and '"' not in number_format:
        return number_format
    return _NEEDLESS_ESCAPE.sub(lambda m: m.group(1) or m.group(2), number_format)


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
            out.append(("number format", _plain_format(number_format)))
        font = book._fonts[array.fontId] if array.fontId < len(book._fonts) else None
        if font is not None:
            if font.name or font.sz:
                out.append(("font", f"{font.name or '?'} {float(font.sz or 0):g}"))
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
        borders = getattr(book, "_borders", [])
        if array.borderId and array.borderId < len(borders):
            border = borders[array.borderId]
            sides = [
                f"{side} {edge.style}"
                for side in ("left", "right", "top", "bottom")
                if (edge := getattr(border, side, None)) is not None and edge.style
            ]
            if sides:
                out.append(("border", ", ".join(sides)))
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
    features.update(read_drawings(archive, path.lstrip("/"), tail))
    features.update(_rules(tail))
    for name, pattern in (("autofilter", _AUTOFILTER), ("merged cells", _MERGE),
                          ("conditional formatting", _CONDITIONAL),
                          ("data validation", _VALIDATION)):  # fmt: skip
        found = [m.group(1).decode() for m in pattern.finditer(tail)]
        if found:
            features[name] = ", ".join(found)
    return features


_CONDITIONAL_BLOCK = re.compile(
    rb'<(?:\w+:)?conditionalFormatting\b[^>]*\bsqref="([^"]+)"[^>]*>(.*?)</(?:\w+:)?conditionalFormatting>',
    re.S,
)
_CF_RULE = re.compile(rb"<(?:\w+:)?cfRule\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?cfRule>)", re.S)
_VALIDATION_BLOCK = re.compile(
    rb"<(?:\w+:)?dataValidation\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?dataValidation>)", re.S
)
_FORMULA = re.compile(rb"<(?:\w+:)?formula\d?>([^<]*)</")
MAX_RULES = 50  # conditional-format and validation rules described per sheet


def _rules(xml: bytes) -> dict[str, str]:
    """What the sheet's conditional formats and data validations test, not just where: a rule
    flipped from "greater than 5" to "less than 5" keeps its range."""
    import html

    def shown(attrs: dict[str, str], body: bytes | None, keys: tuple[str, ...]) -> str:
        parts = [html.unescape(attrs[k]) for k in keys if attrs.get(k)]
        parts += [html.unescape(f.decode(errors="replace")) for f in _FORMULA.findall(body or b"")]
        if attrs.get("dxfId"):
            parts.append(f"(style {attrs['dxfId']})")
        for message in ("prompt", "error"):
            if attrs.get(message):
                parts.append(f"{message} {html.unescape(attrs[message])!r}")
        return " ".join(parts)

    def attributes(raw: bytes) -> dict[str, str]:
        return {k.decode(): v.decode(errors="replace") for k, v in _ATTR.findall(raw)}

    conditional = []
    for block in _CONDITIONAL_BLOCK.finditer(xml):
        for rule in _CF_RULE.finditer(block.group(2)):
            attrs = attributes(rule.group(1))
            described = shown(attrs, rule.group(2), ("type", "operator", "text"))
            conditional.append(f"{block.group(1).decode()}: {described}")
    validations = []
    for rule in _VALIDATION_BLOCK.finditer(xml):
        attrs = attributes(rule.group(1))
        described = shown(attrs, rule.group(2), ("type", "operator"))
        validations.append(f"{attrs.get('sqref', '?')}: {described or 'any value'}")
    out = {}
    if conditional:
        out["conditional formatting rules"] = "; ".join(conditional[:MAX_RULES])
    if validations:
        out["data validation rules"] = "; ".join(validations[:MAX_RULES])
    return out


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


# --- drawings (charts and images) and workbook parts ----------------------------------------

_RELATIONSHIP = re.compile(rb"<(?:\w+:)?Relationship\b([^>]*)/?>")
_DRAWING_REF = re.compile(rb'<(?:\w+:)?drawing\b[^>]*\br:id="([^"]+)"')
_ANCHOR = re.compile(
    rb"<(?:\w+:)?(oneCellAnchor|twoCellAnchor|absoluteAnchor)\b.*?</(?:\w+:)?\1>", re.S
)
_FROM = re.compile(
    rb"<(?:\w+:)?from>\s*<(?:\w+:)?col>(\d+)</(?:\w+:)?col>.*?<(?:\w+:)?row>(\d+)</", re.S
)
_BLIP = re.compile(rb'<(?:\w+:)?blip\b[^>]*\br:embed="([^"]+)"')
_CHART_REF = re.compile(rb'<(?:\w+:)?chart\b[^>]*\br:id="([^"]+)"')
_CHART_KIND = re.compile(rb"<(?:\w+:)?(\w+?)Chart>")
_TITLE = re.compile(rb"<(?:\w+:)?title>(.*?)</(?:\w+:)?title>", re.S)
_TEXT = re.compile(rb"<(?:\w+:)?t>([^<]*)</(?:\w+:)?t>")
_SERIES_REF = re.compile(rb"<(?:\w+:)?f>([^<]*)</(?:\w+:)?f>")
_DEFINED_NAME = re.compile(rb"<(?:\w+:)?definedName\b([^>]*)>([^<]*)</(?:\w+:)?definedName>")
MAX_DRAWN = 50  # charts and images described per sheet


def _relationships(archive: zipfile.ZipFile, part: str) -> dict[str, dict[str, str]]:
    """A part's relationships by id: type (its last path segment), target (resolved to an
    archive path unless external), mode."""
    folder, name = posixpath.split(part)
    try:
        xml = archive.read(posixpath.join(folder, "_rels", f"{name}.rels"))
    except KeyError:
        return {}
    out = {}
    for rel in _RELATIONSHIP.finditer(xml):
        attrs = {k.decode(): v.decode(errors="replace") for k, v in _ATTR.findall(rel.group(1))}
        target = attrs.get("Target", "")
        if attrs.get("TargetMode") != "External":
            target = (target.lstrip("/") if target.startswith("/")
                      else posixpath.normpath(posixpath.join(folder, target)))  # fmt: skip
        kind = attrs.get("Type", "").rsplit("/", 1)[-1]
        out[attrs.get("Id", "")] = {"type": kind, "target": target,
                                    "mode": attrs.get("TargetMode", "")}  # fmt: skip
    return out


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()[:8]


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def read_drawings(archive: zipfile.ZipFile, sheet_part: str, xml: bytes) -> dict[str, str]:
    """The sheet's charts and images, each with where it is anchored: "images": "3.1 KB
    #1a2b3c4d at B8", "charts": "bar 'Sales' (Sheet!$B$1:$B$5) at D2"; so that a job that
    drops a chart (openpyxl does not keep them), swaps a logo or moves a picture shows."""
    rels = _relationships(archive, sheet_part)
    images, charts = [], []
    for ref in _DRAWING_REF.finditer(xml):
        drawing = rels.get(ref.group(1).decode(), {}).get("target", "")
        try:
            drawing_xml = archive.read(drawing)
        except KeyError:
            continue
        drawn = _relationships(archive, drawing)
        for anchor in _ANCHOR.finditer(drawing_xml):
            body = anchor.group(0)
            at = "?"
            if found := _FROM.search(body):
                at = f"{_columns(str(int(found.group(1)) + 1), str(int(found.group(1)) + 1))}"
                at += str(int(found.group(2)) + 1)
            if blip := _BLIP.search(body):
                target = drawn.get(blip.group(1).decode(), {}).get("target", "")
                try:
                    data = archive.read(target)
                    images.append(f"{_size(len(data))} #{_digest(data)} at {at}")
                except KeyError:
                    images.append(f"(missing picture) at {at}")
            elif chart := _CHART_REF.search(body):
                charts.append(_chart(archive, drawn.get(chart.group(1).decode(), {}), at))
    features = _comments(archive, rels)
    if images:
        features["images"] = "; ".join(sorted(images)[:MAX_DRAWN])
    if charts:
        features["charts"] = "; ".join(sorted(charts)[:MAX_DRAWN])
    return features


_AUTHOR = re.compile(rb"<(?:\w+:)?author>([^<]*)</(?:\w+:)?author>")
_COMMENT = re.compile(rb"<(?:\w+:)?comment\b([^>]*)>(.*?)</(?:\w+:)?comment>", re.S)


def _comments(archive: zipfile.ZipFile, rels: dict[str, dict[str, str]]) -> dict[str, str]:
    """The sheet's cell comments (notes): "A1 'Some text' by John; ..."."""
    import html

    found = []
    for rel in rels.values():
        if rel["type"] != "comments":
            continue
        try:
            xml = archive.read(rel["target"])
        except KeyError:
            continue
        authors = [html.unescape(a.decode(errors="replace")) for a in _AUTHOR.findall(xml)]
        for comment in _COMMENT.finditer(xml):
            attrs = {
                k.decode(): v.decode(errors="replace") for k, v in _ATTR.findall(comment.group(1))
            }
            text = html.unescape(
                "".join(t.decode(errors="replace") for t in _TEXT.findall(comment.group(2)))
            )
            author = attrs.get("authorId", "")
            by = (
                f" by {authors[int(author)]}"
                if author.isdigit() and int(author) < len(authors)
                else ""
            )
            shown = text if len(text) <= 80 else text[:79] + "…"
            found.append(f"{attrs.get('ref', '?')} {shown!r}{by}")
    return {"comments": "; ".join(found[:MAX_DRAWN])} if found else {}


def _chart(archive: zipfile.ZipFile, rel: dict[str, str], at: str) -> str:
    """One chart as text: its kind, title and the ranges its series read."""
    try:
        xml = archive.read(rel.get("target", ""))
    except KeyError:
        return f"(missing chart) at {at}"
    kind = _CHART_KIND.search(xml)
    shown = kind.group(1).decode() if kind else "chart"
    if title := _TITLE.search(xml):
        text = "".join(t.decode(errors="replace") for t in _TEXT.findall(title.group(1)))
        shown += f" {text!r}" if text else ""
    refs = [r.decode(errors="replace") for r in _SERIES_REF.findall(xml)][:8]
    if refs:
        shown += f" ({', '.join(refs)})"
    return f"{shown} at {at}"


def read_workbook_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """What the workbook holds beyond its sheets, each as text: defined names, external links
    (other files its formulas read), data connections, and macros (a VBA project)."""
    names = archive.namelist()
    parts: dict[str, str] = {}
    book = next((n for n in names if n.endswith("workbook.xml") and "/_rels/" not in n), None)
    if book is not None:
        defined = []
        for m in _DEFINED_NAME.finditer(archive.read(book)):
            attrs = {k.decode(): v.decode(errors="replace") for k, v in _ATTR.findall(m.group(1))}
            name = attrs.get("name", "?")
            if name.startswith("_xlnm._FilterDatabase"):
                continue  # the autofilter's own range, shown with the sheet
            scope = f" (sheet {int(attrs['localSheetId']) + 1})" if "localSheetId" in attrs else ""
            defined.append(f"{name}{scope} = {m.group(2).decode(errors='replace')}")
        if defined:
            parts["defined names"] = ", ".join(sorted(defined))
    links = []
    for name in sorted(n for n in names if n.startswith("xl/externalLinks/") and
                       n.endswith(".xml") and "/_rels/" not in n):  # fmt: skip
        targets = [r["target"] for r in _relationships(archive, name).values() if r["target"]]
        links.append(", ".join(targets) or name)
    if links:
        parts["external links"] = "; ".join(links)
    if "xl/connections.xml" in names:
        found = re.findall(rb'<(?:\w+:)?connection\b[^>]*\bname="([^"]*)"',
                           archive.read("xl/connections.xml"))  # fmt: skip
        parts["data connections"] = ", ".join(n.decode(errors="replace") for n in found) or "?"
    macros = [n for n in names if n.lower().endswith("vbaproject.bin")]
    if macros:
        data = archive.read(macros[0])
        parts["macros"] = f"VBA project ({_size(len(data))} #{_digest(data)})"
    return parts
