"""Workbooks whose size is in their row numbers, not their bytes: a few hundred bytes can
name row 1,048,576. The review must neither wedge nor blow up on them."""

from __future__ import annotations

import io
import time
import zipfile

import openpyxl
import pytest

from runtime.doc_formats import MAX_CELLS, DocumentError, load_xlsx
from runtime.kinds.doc.diff import review


def _saved(book: openpyxl.Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _last_row_marked(value: int) -> bytes:
    """What Excel writes for a sheet whose last row was once touched: an empty
    <row r="1048576"/> after the content (XlsxWriter's comment03.xlsx, saved by Excel)."""
    book = openpyxl.Workbook()
    book.active["A1"] = value
    data = _saved(book)
    source = io.BytesIO(data)
    out = io.BytesIO()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(out, "w") as new:
        for item in old.infolist():
            content = old.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = content.replace(
                    b"</sheetData>", b'<row r="1048576" spans="16384:16384"/></sheetData>'
                )
            new.writestr(item, content)
    return out.getvalue()


def test_a_sheet_marking_its_last_row_is_read_as_its_content_only():
    started = time.perf_counter()
    book = load_xlsx("marked.xlsx", _last_row_marked(1))
    elapsed = time.perf_counter() - started
    assert book.sheets["Sheet"] == [[1]]
    assert elapsed < 2.0  # was 3.3 s: a million empty rows built, then trimmed
    done = review("marked.xlsx", _last_row_marked(1), _last_row_marked(2))
    assert done is not None and done.summary == "1 cell changed"


def test_content_a_million_rows_apart_in_several_sheets_is_refused_with_the_reason():
    book = openpyxl.Workbook()
    book.active["A1"] = 1
    for n in range(3):
        book.create_sheet(f"S{n}")["A1000000"] = n
    with pytest.raises(DocumentError) as refused:
        load_xlsx("far.xlsx", _saved(book))
    assert refused.value.message == (
        "far.xlsx: sheet 'S2' reaches row 1,000,000 and the workbook over "
        f"{MAX_CELLS:,} cells (an empty row between others counts as one); "
        "workbooks that large are not reviewed"
    )
