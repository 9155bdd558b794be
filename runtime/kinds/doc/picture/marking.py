"""The copies of a changed document that are drawn: its changed cells, paragraphs and table
cells filled with a highlight colour, a workbook cut to the changed region of each changed sheet
(one printed page per sheet) and every other sheet hidden.

Pure but for openpyxl and python-docx: bytes and a diff in, bytes out. It must never change
what a cell holds, only how it looks, never mark a cell the diff does not name, and never
pass on a macro project (openpyxl drops a workbook's; a Word document's is cut here).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from runtime.kinds.doc.diff.model import DocumentDiff, SheetDiff

Side = Literal["before", "after"]
# The highlight colours: a changed cell as it was, and as it is (RGB hex, as OOXML writes them).
COLOURS: dict[Side, str] = {"before": "F4A7A7", "after": "FFD500"}
MAX_ROWS = 40
MAX_COLUMNS = 12
MARGIN_ROWS = 2
MARGIN_COLUMNS = 1


def rgb(side: Side) -> tuple[int, int, int]:
    value = COLOURS[side]
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


@dataclass
class SheetRegion:
    """What is drawn of one sheet on one side: the printed range and the cells marked."""

    sheet: str  # the sheet's name in that side's workbook
    shown: str  # "B2:F9"
    cells: list[tuple[int, int]] = field(default_factory=list)  # (row, column), 1-based
    outlined: list[tuple[int, int]] = field(default_factory=list)  # cells whose look changed
    cut_from: str | None = None  # the whole changed region, when it was over the cap
    left_out: int = 0  # changed cells outside the printed range (when cut)


def regions(sheets: list[SheetDiff], side: Side) -> list[SheetRegion]:
    """For each sheet changed on this side, its changed cells and the range to print: their
    bounding box with a margin, at most MAX_ROWS x MAX_COLUMNS from its top left corner."""
    from openpyxl.utils.cell import coordinate_from_string, range_boundaries

    out = []
    for sheet in sheets:
        if sheet.status == ("added" if side == "before" else "removed"):
            continue
        name = (sheet.renamed_from or sheet.name) if side == "before" else sheet.name
        cells = []
        for change in sheet.changes:
            address = change.old_cell if side == "before" else change.new_cell
            if address:
                column, row = coordinate_from_string(address)
                cells.append((row, _column_index(column)))
        outlined = []
        if side == "after":  # format ranges are in the new sheet's addresses
            for change in sheet.formats:
                c0, r0, c1, r1 = range_boundaries(change.range)
                outlined += [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)][:2000]
        every = cells + outlined
        if not every:
            continue
        top, bottom = min(r for r, _ in every), max(r for r, _ in every)
        left, right = min(c for _, c in every), max(c for _, c in every)
        whole = _range(top, left, bottom, right)  # the changed cells' box, said when cut
        top, left = max(top - MARGIN_ROWS, 1), max(left - MARGIN_COLUMNS, 1)
        bottom, right = bottom + MARGIN_ROWS, right + MARGIN_COLUMNS
        cut = bottom - top + 1 > MAX_ROWS or right - left + 1 > MAX_COLUMNS
        bottom, right = min(bottom, top + MAX_ROWS - 1), min(right, left + MAX_COLUMNS - 1)

        def inside(cell: tuple[int, int], b: int = bottom, r: int = right) -> bool:
            return cell[0] <= b and cell[1] <= r

        kept = [c for c in cells if inside(c)]
        out.append(
            SheetRegion(
                sheet=name,
                shown=_range(top, left, bottom, right),
                cells=kept,
                outlined=[c for c in outlined if inside(c)],
                cut_from=whole if cut else None,
                left_out=len(cells) - len(kept),
            )
        )
    return out


def mark_workbook(data: bytes, marked: list[SheetRegion], side: Side) -> tuple[bytes, list[str]]:
    """The workbook with only the marked sheets shown, each printed as its region on one page
    with row and column headings, its changed cells filled; and the sheets it lists, in
    print order (the order of the sheets in the workbook)."""
    from openpyxl import load_workbook
    from openpyxl.styles import Border, PatternFill
    from openpyxl.styles import Side as Edge

    book = load_workbook(io.BytesIO(data))  # formulas kept: LibreOffice computes them
    by_name = {region.sheet: region for region in marked}
    fill = PatternFill("solid", fgColor=COLOURS[side])
    edge = Edge(style="thick", color=COLOURS[side])
    frame = Border(left=edge, right=edge, top=edge, bottom=edge)
    printed = []
    for sheet in [*book.worksheets, *book.chartsheets]:
        region = by_name.get(sheet.title)
        if region is None or sheet not in book.worksheets:
            sheet.sheet_state = "hidden"
            continue
        sheet.sheet_state = "visible"
        printed.append(sheet.title)
        for row, column in region.outlined:
            _style(sheet, row, column, border=frame)
        for row, column in region.cells:
            _style(sheet, row, column, fill=fill)
        sheet.print_area = region.shown
        sheet.print_title_rows = None
        sheet.print_title_cols = None
        sheet.print_options.gridLines = True
        sheet.print_options.headings = True
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
        sheet.page_setup.fitToWidth = 1
        sheet.page_setup.fitToHeight = 1
        sheet.page_setup.orientation = "landscape"
    if printed:
        book.active = book.sheetnames.index(printed[0])
        for sheet in book.worksheets:
            sheet.sheet_view.tabSelected = sheet.title == printed[0]
    out = io.BytesIO()
    book.save(out)
    return out.getvalue(), printed


def mark_document(data: bytes, diff: DocumentDiff, side: Side) -> tuple[bytes, int]:
    """The Word document with the paragraphs and table cells the diff names on this side
    shaded; and how many blocks were marked (0: nothing the diff names was found)."""
    import docx
    from docx.oxml.ns import qn

    document = docx.Document(io.BytesIO(data))
    _drop_macros(document)
    paragraphs, tables = _blocks(document.element.body)
    texts = [_text(p) for p in paragraphs]
    marked = 0
    used: set[int] = set()
    after = 0  # changes come in document order: look past the last one found first
    for change in diff.changes:
        if change.what == "paragraph":
            text = change.old_text if side == "before" else change.new_text
            if text is None:
                continue
            order = [*range(after, len(texts)), *range(after)]
            found = next((i for i in order if i not in used and texts[i] == text), None)
            if found is not None:
                used.add(found)
                after = found + 1
                _shade(paragraphs[found], "w:pPr", COLOURS[side])
                marked += 1
            continue
        number = change.old_table if side == "before" else change.new_table
        if number is None or not 0 < number <= len(tables):
            continue
        rows = tables[number - 1].findall(qn("w:tr"))
        whole = change.kind == ("removed" if side == "before" else "added")
        spots: list[tuple[int, int | None]] = []
        if whole:
            spots = [(r, None) for r in range(1, len(rows) + 1)]
        else:
            spots = [
                (cell.old_row if side == "before" else cell.new_row, cell.col)
                for cell in change.cells
            ]
            moved = change.rows_removed if side == "before" else change.rows_added
            spots += [(row.row, None) for row in moved]
        for row_number, column in spots:
            if not 0 < row_number <= len(rows):
                continue
            cells = rows[row_number - 1].findall(qn("w:tc"))
            chosen = cells if column is None else cells[column - 1 : column] if column > 0 else []
            for cell in chosen:
                _shade(cell, "w:tcPr", COLOURS[side])
                marked += 1
    out = io.BytesIO()
    document.save(out)
    return out.getvalue(), marked


def _drop_macros(document) -> None:  # type: ignore[no-untyped-def]
    """No macro project in the copy that is drawn (LibreOffice's profile runs none either):
    a part no relationship reaches is not saved."""
    for part in [document.part.package, *document.part.package.iter_parts()]:
        for key, rel in list(part.rels.items()):
            if rel.reltype.endswith("/vbaProject"):
                del part.rels[key]


def _blocks(body):  # type: ignore[no-untyped-def]
    """The body's paragraphs and tables as runtime.doc_formats.load_docx numbers them
    (content controls opened)."""
    from docx.oxml.ns import qn

    paragraphs, tables = [], []

    def walk(parent) -> None:  # type: ignore[no-untyped-def]
        for child in parent.iterchildren():
            if child.tag == qn("w:p"):
                paragraphs.append(child)
            elif child.tag == qn("w:tbl"):
                tables.append(child)
            elif child.tag == qn("w:sdt"):
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    walk(content)

    walk(body)
    return paragraphs, tables


def _text(paragraph) -> str:  # type: ignore[no-untyped-def]
    from docx.text.paragraph import Paragraph

    return Paragraph(paragraph, None).text


def _shade(element, properties: str, colour: str) -> None:  # type: ignore[no-untyped-def]
    """A w:shd fill on a paragraph (w:pPr) or table cell (w:tcPr), replacing one it had."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    props = element.find(qn(properties))
    if props is None:
        props = OxmlElement(properties)
        element.insert(0, props)
    for old in props.findall(qn("w:shd")):
        props.remove(old)
    shading = OxmlElement("w:shd")
    shading.set(qn("w:val"), "clear")
    shading.set(qn("w:color"), "auto")
    shading.set(qn("w:fill"), colour)
    # The schema orders w:pPr / w:tcPr children; w:shd goes before the ones that follow it.
    later = _AFTER_SHD[properties]
    follower = next((c for c in props.iterchildren() if c.tag in {qn(t) for t in later}), None)
    if follower is None:
        props.append(shading)
    else:
        follower.addprevious(shading)


_AFTER_SHD = {
    "w:pPr": ("w:tabs", "w:suppressAutoHyphens", "w:kinsoku", "w:wordWrap", "w:overflowPunct",
              "w:topLinePunct", "w:autoSpaceDE", "w:autoSpaceDN", "w:bidi", "w:adjustRightInd",
              "w:snapToGrid", "w:spacing", "w:ind", "w:contextualSpacing", "w:mirrorIndents",
              "w:suppressOverlap", "w:jc", "w:textDirection", "w:textAlignment",
              "w:textboxTightWrap", "w:outlineLvl", "w:divId", "w:cnfStyle", "w:rPr",
              "w:sectPr", "w:pPrChange"),
    "w:tcPr": ("w:noWrap", "w:tcMar", "w:textDirection", "w:tcFitText", "w:vAlign",
               "w:hideMark", "w:headers", "w:cellIns", "w:cellDel", "w:cellMerge",
               "w:tcPrChange"),
}  # fmt: skip


def _style(sheet, row: int, column: int, **look) -> None:  # type: ignore[no-untyped-def]
    cell = sheet.cell(row=row, column=column)
    for name, value in look.items():
        try:
            setattr(cell, name, value)
        except AttributeError:  # a merged cell's hidden part has no look of its own
            return


def _column_index(letters: str) -> int:
    from openpyxl.utils.cell import column_index_from_string

    return column_index_from_string(letters)


def _range(top: int, left: int, bottom: int, right: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return f"{get_column_letter(left)}{top}:{get_column_letter(right)}{bottom}"
