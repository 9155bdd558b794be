"""Document formats: what check refuses (and how it says so), loading, writing, Markdown.

Every file here is real: workbooks made with openpyxl, documents with python-docx, zips with
zipfile. The big-file cases build their inputs cheaply (a stored random entry, a highly
compressible sheet) and assert they are refused before anything parses them.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import time
import zipfile

import docx
import openpyxl
import pytest

from runtime.doc_formats import (
    MAX_BYTES,
    MAX_ENTRIES,
    Document,
    DocumentError,
    Paragraph,
    Table,
    Workbook,
    check,
    format_of,
    load_csv,
    load_docx,
    load_text,
    load_xlsx,
    markdown_tables,
    markdown_to_document,
    safe_sheet_name,
    write_csv,
    write_docx,
    write_xlsx,
)
from runtime.errors import AcpError
from tests.support.office_files import xlsx_bytes


def docx_bytes() -> bytes:
    """A document written by python-docx itself: heading, text, table, bullet, in that order."""
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([["region", "q3"], ["north", "12"]]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    document.add_paragraph("north up", style="List Bullet")
    document.add_heading("Costs", level=2)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def rezip(data: bytes, extra: dict[str, bytes] | None = None, stored: bool = False) -> bytes:
    """A copy of a zip with extra entries added."""
    out = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", method) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        for name, content in (extra or {}).items():
            dst.writestr(name, content)
    return out.getvalue()


# --- check: what the extension says against what the bytes are -----------------------------------


def test_format_of_by_extension() -> None:
    assert format_of("reports/q3.xlsx") == "xlsx"
    assert format_of("reports/Q3.XLSX") == "xlsx"
    assert format_of("notes/readme.markdown") == "markdown"
    assert format_of("a.md") == "markdown"
    assert format_of("data/x.csv") == "csv"
    assert format_of("memo.docx") == "docx"
    assert format_of("report.pdf") is None
    assert format_of("dir.xlsx/file") is None
    assert format_of("Makefile") is None


def test_an_xlsx_that_is_text_is_refused_naming_the_path() -> None:
    with pytest.raises(DocumentError) as caught:
        check("reports/q3.xlsx", b"region,q3\nnorth,12\n")
    assert caught.value.message == (
        "reports/q3.xlsx is not an XLSX workbook: it is not a zip file (it looks like text)"
    )
    assert "openpyxl" in caught.value.hint
    assert isinstance(caught.value, AcpError)


def test_a_docx_that_is_an_xlsx_is_refused() -> None:
    with pytest.raises(DocumentError) as caught:
        load_docx("reports/memo.docx", xlsx_bytes({"S": [[1]]}))
    assert caught.value.message == "reports/memo.docx is an XLSX workbook, not a DOCX document"
    assert ".xlsx" in caught.value.hint


def test_an_xlsx_that_is_a_docx_is_refused() -> None:
    with pytest.raises(DocumentError, match=r"^reports/q3.xlsx is a DOCX document, not an XLSX"):
        load_xlsx("reports/q3.xlsx", docx_bytes())


def test_other_impostors_say_what_they_look_like() -> None:
    cases = {
        b"": "it is empty",
        b"%PDF-1.7\n...": "it looks like a PDF",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512): "old binary Office file (.xls / .doc)",
        os.urandom(64).replace(b"PK", b"pk"): "it looks like binary data",
    }
    for data, words in cases.items():
        with pytest.raises(DocumentError) as caught:
            check("out/book.xlsx", data)
        assert caught.value.message.startswith("out/book.xlsx is not an XLSX workbook")
        assert words in caught.value.message
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(DocumentError) as caught:
        check("out/book.xlsx", plain_zip.getvalue())
    assert caught.value.message == (
        "out/book.xlsx is not an XLSX workbook: it is a zip archive but not an Office file"
    )


def test_a_truncated_xlsx_is_corrupt() -> None:
    data = xlsx_bytes({"Data": [[f"row {r}", r] for r in range(200)]})
    with pytest.raises(DocumentError) as caught:
        load_xlsx("reports/q3.xlsx", data[: len(data) // 2])
    assert caught.value.message == (
        "reports/q3.xlsx is corrupt: its zip directory is missing (the file may be truncated)"
    )


def test_an_xlsx_with_a_damaged_sheet_entry_is_corrupt() -> None:
    data = bytearray(xlsx_bytes({"Data": [[f"row {r}", r, r * 1.5] for r in range(2000)]}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = start + info.compress_size // 2
    data[middle : middle + 64] = bytes(64)
    with pytest.raises(DocumentError, match=r"^reports/q3.xlsx is corrupt"):
        load_xlsx("reports/q3.xlsx", bytes(data))


def test_csv_that_is_not_utf8_names_the_line() -> None:
    data = "region,amount\nnorth,12\nZürich,13\n".encode("latin-1")
    with pytest.raises(DocumentError) as caught:
        load_csv("data/sales.csv", data)
    assert caught.value.message == (
        "data/sales.csv is not UTF-8 text: invalid byte 0xfc on line 3 (offset 24)"
    )
    assert "CSV UTF-8" in caught.value.hint


def test_text_with_nul_bytes_or_utf16_is_refused() -> None:
    with pytest.raises(
        DocumentError, match=r"^notes/a.md is not a Markdown file: it contains a NUL"
    ):
        load_text("notes/a.md", b"# title\x00\x01")
    with pytest.raises(
        DocumentError, match=r"^data/x.csv is UTF-16 text; a CSV file must be UTF-8"
    ):
        load_csv("data/x.csv", "a,b\n".encode("utf-16"))
    with pytest.raises(DocumentError, match=r"^data/x.csv is not a CSV file: it is a zip file"):
        load_csv("data/x.csv", xlsx_bytes({"S": [[1]]}))


def test_a_file_over_the_policy_limit_is_refused() -> None:
    data = xlsx_bytes({"Data": [[f"row {r}", r] for r in range(3000)]})
    with pytest.raises(DocumentError) as caught:
        load_xlsx("reports/q3.xlsx", data, max_bytes=10 * 1024)
    assert caught.value.message.startswith("reports/q3.xlsx is ")
    assert caught.value.message.endswith("KB; documents over 10.0 KB are not reviewed or published")
    assert load_xlsx("reports/q3.xlsx", data).sheets["Data"][0] == ["row 0", 0]


def test_a_genuine_50_mb_workbook_is_refused_by_size_at_once() -> None:
    padding = os.urandom(50 * 1024 * 1024 + 200 * 1024)  # random: a zip cannot shrink it
    data = rezip(xlsx_bytes({"Data": [["a", 1]]}), {"xl/media/image1.bin": padding}, stored=True)
    assert len(data) > 50 * 1024 * 1024
    started = time.process_time()  # CPU time: the work done, not how busy the cores are
    with pytest.raises(DocumentError) as caught:
        load_xlsx("reports/big.xlsx", data)
    assert time.process_time() - started < 0.5
    assert caught.value.message == (
        "reports/big.xlsx is 50.2 MB; documents over 20.0 MB are not reviewed or published"
    )
    assert MAX_BYTES == 20 * 1024 * 1024


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """A real workbook whose sheet XML unpacks to 120 MB (about 120 KB packed)."""
    real = xlsx_bytes({"Data": [["a", 1]]})
    out = io.BytesIO()
    row = b'<row><c t="n"><v>1</v></c></row>' * 32768  # 1 MB
    with (
        zipfile.ZipFile(io.BytesIO(real)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst,
    ):
        for info in src.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                dst.writestr(info.filename, src.read(info))
        with dst.open("xl/worksheets/sheet1.xml", "w") as sheet:
            sheet.write(
                b'<worksheet xmlns="http://schemas.openxmlformats.org/'
                b'spreadsheetml/2006/main"><sheetData>'
            )
            for _ in range(120):
                sheet.write(row)
            sheet.write(b"</sheetData></worksheet>")
    return out.getvalue()


def test_a_zip_bomb_is_refused_before_parsing(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 2 * 1024 * 1024
    started = time.process_time()  # CPU time: the work done, not how busy the cores are
    with pytest.raises(DocumentError) as caught:
        load_xlsx("reports/bomb.xlsx", zip_bomb)
    assert time.process_time() - started < 0.5  # parsing 120 MB of XML takes many seconds
    assert caught.value.message == (
        "reports/bomb.xlsx unpacks to 120.0 MB; documents that unpack to over 100.0 MB are not "
        "reviewed or published"
    )
    assert "zip bomb" in caught.value.hint


def test_too_many_zip_entries_are_refused() -> None:
    entries = {f"xl/media/{n}.bin": b"" for n in range(MAX_ENTRIES + 1)}
    data = rezip(xlsx_bytes({"S": [[1]]}), entries, stored=True)
    with pytest.raises(
        DocumentError, match=r"^r.xlsx has 100\d\d zip entries; documents with over"
    ):
        check("r.xlsx", data)


def test_an_unknown_extension_is_refused_by_check() -> None:
    with pytest.raises(DocumentError, match=r"^out/a.pdf is not a document format that can be"):
        check("out/a.pdf", b"%PDF")


# --- loading -------------------------------------------------------------------------------------


def test_load_xlsx_keeps_formulas_dates_and_sheet_order() -> None:
    data = xlsx_bytes(
        {
            "Summary": [
                ["region", "q3", "q4", None, None],
                ["north", 10, 12.5, True, None],
                ["total", "=SUM(B2:B2)", "=SUM(C2:C2)"],
                [None, None],
                [],
            ],
            "Dates": [
                [dt.datetime(2024, 1, 5), dt.datetime(2024, 1, 5, 13, 30), dt.date(2024, 2, 1)]
            ],
            "Empty": [],
        }
    )
    wb = load_xlsx("reports/q3.xlsx", data)
    assert list(wb.sheets) == ["Summary", "Dates", "Empty"]
    assert wb.sheets["Summary"] == [
        ["region", "q3", "q4"],
        ["north", 10, 12.5, True],
        ["total", "=SUM(B2:B2)", "=SUM(C2:C2)"],
    ]
    # dates keep their type: a date is not the text that looks like it
    assert wb.sheets["Dates"] == [
        [dt.date(2024, 1, 5), dt.datetime(2024, 1, 5, 13, 30), dt.date(2024, 2, 1)]
    ]
    assert wb.sheets["Empty"] == []


def test_load_docx_keeps_paragraphs_and_tables_in_body_order() -> None:
    doc = load_docx("reports/memo.docx", docx_bytes())
    assert doc.blocks == [
        Paragraph(style="Heading 1", text="Quarterly report"),
        Paragraph(style="Normal", text="Revenue grew in every region."),
        Table(rows=[["region", "q3"], ["north", "12"]]),
        Paragraph(style="List Bullet", text="north up"),
        Paragraph(style="Heading 2", text="Costs"),
    ]
    assert len(doc.paragraphs) == 4 and len(doc.tables) == 1


def test_load_csv_and_text() -> None:
    data = '\ufeffregion,note\nnorth,"a, quoted"\r\nsouth,é\n'.encode()
    assert load_csv("data/x.csv", data) == [
        ["region", "note"],
        ["north", "a, quoted"],
        ["south", "é"],
    ]
    assert load_text("notes/a.md", "# Título\n".encode()) == "# Título\n"


# --- writing and round trips ---------------------------------------------------------------------


def test_write_xlsx_round_trip_with_formulas() -> None:
    wb = Workbook(
        sheets={
            "Summary": [
                ["region", "q3", "q4"],
                ["north", 10, 12.5],
                ["total", "=SUM(B2:B2)", None],
            ],
            "Flags": [[True, False, None, "x"], [], [None, 3]],
        }
    )
    data = write_xlsx(wb)
    assert load_xlsx("r.xlsx", data).sheets == wb.sheets
    assert load_xlsx("r.xlsx", write_xlsx(wb)) == load_xlsx("r.xlsx", data)  # same data twice
    cell = openpyxl.load_workbook(io.BytesIO(data))["Summary"]["B3"]
    assert cell.data_type == "f" and cell.value == "=SUM(B2:B2)"  # a formula, not text


def test_workbook_model_trims_and_serialises() -> None:
    wb = Workbook(sheets={"S": [["a", "", None], ["", None], []]})
    assert wb.sheets == {"S": [["a"]]}
    again = Workbook.model_validate_json(wb.model_dump_json())
    assert again == wb
    mixed = Workbook(sheets={"S": [[1, 1.5, True, "t", None, "=A1"]]})
    assert [type(v) for v in mixed.sheets["S"][0]] == [int, float, bool, str, type(None), str]


def test_write_xlsx_refuses_what_excel_cannot_hold() -> None:
    with pytest.raises(DocumentError, match=r"sheet name 'Q3/Q4' is not valid in Excel"):
        write_xlsx(Workbook(sheets={"Q3/Q4": [[1]]}))
    with pytest.raises(DocumentError, match=r"sheet 'S' row 2 column 1 has a control character"):
        write_xlsx(Workbook(sheets={"S": [["ok"], ["bad\x07"]]}))
    with pytest.raises(DocumentError, match="at least one sheet"):
        write_xlsx(Workbook())


def test_write_docx_round_trip() -> None:
    doc = Document(
        blocks=[
            Paragraph(style="Heading 1", text="Report"),
            Paragraph(text="First line\nsecond line"),
            Paragraph(style="List Bullet", text="item"),
            Table(rows=[["a", "b"], ["1"]]),  # a short row is padded
            Paragraph(style="Heading 3", text="End"),
        ]
    )
    assert doc.tables[0].rows == [["a", "b"], ["1", ""]]
    loaded = load_docx("memo.docx", write_docx(doc))
    assert loaded == doc
    assert load_docx("memo.docx", write_docx(doc)) == loaded
    assert Document.model_validate_json(doc.model_dump_json()) == doc
    table_style = docx.Document(io.BytesIO(write_docx(doc))).tables[0].style
    assert table_style is not None and table_style.name == "Table Grid"


def test_write_docx_refuses_an_unknown_style() -> None:
    with pytest.raises(DocumentError, match=r"paragraph style 'Fancy' is not in the default"):
        write_docx(Document(blocks=[Paragraph(style="Fancy", text="x")]))


def test_write_csv_round_trip() -> None:
    rows = [["region", "note"], ["north", 'a, "quoted"'], ["south", None, 3]]
    data = write_csv(rows)
    assert data == b'region,note\nnorth,"a, ""quoted"""\nsouth,,3\n'
    assert load_csv("x.csv", data) == [
        ["region", "note"],
        ["north", 'a, "quoted"'],
        ["south", "", "3"],
    ]


# --- Markdown ------------------------------------------------------------------------------------

REPORT = """# Weekly report

Revenue grew
in every region.

## Sales by region

| region | q3 | q4 | total |
|--------|---:|---:|-------|
| north | 1,200 | 13.5 | =SUM(B2:C2) |
| **south** | 007 | -4 | |

- first point
* second point
  continued here
    - nested

1. numbered

```
# not a heading
```

## Sales by region

| a | b |
|---|---|
| x \\| y | 2 |
"""


def test_markdown_to_document() -> None:
    doc = markdown_to_document(REPORT)
    assert doc.blocks == [
        Paragraph(style="Heading 1", text="Weekly report"),
        Paragraph(text="Revenue grew in every region."),
        Paragraph(style="Heading 2", text="Sales by region"),
        Table(
            rows=[
                ["region", "q3", "q4", "total"],
                ["north", "1,200", "13.5", "=SUM(B2:C2)"],
                ["south", "007", "-4", ""],
            ]
        ),
        Paragraph(style="List Bullet", text="first point"),
        Paragraph(style="List Bullet", text="second point continued here"),
        Paragraph(style="List Bullet 2", text="nested"),
        Paragraph(style="List Number", text="numbered"),
        Paragraph(text="# not a heading"),
        Paragraph(style="Heading 2", text="Sales by region"),
        Table(rows=[["a", "b"], ["x | y", "2"]]),
    ]
    assert load_docx("weekly.docx", write_docx(doc)) == doc


def test_markdown_tables_become_sheets() -> None:
    tables = markdown_tables(REPORT)
    assert tables == [
        (
            "Sales by region",
            [
                ["region", "q3", "q4", "total"],
                ["north", 1200, 13.5, "=SUM(B2:C2)"],
                ["south", "007", -4, None],
            ],
        ),
        ("Sales by region (2)", [["a", "b"], ["x | y", 2]]),
    ]
    wb = Workbook(sheets=dict(tables))
    loaded = load_xlsx("weekly.xlsx", write_xlsx(wb))
    assert loaded.sheets == wb.sheets
    assert loaded.sheets["Sales by region"][1][3] == "=SUM(B2:C2)"


def test_markdown_tables_without_headings_and_odd_names() -> None:
    text = "| a |\n|---|\n| 1 |\n\n# Q3/Q4: [draft]? 'x'\n\n| b |\n|--|\n| 2 |\n"
    names = [name for name, _ in markdown_tables(text)]
    assert names == ["Sheet1", "Q3-Q4- -draft-- 'x"]
    long = "# " + "A very long heading that Excel will not take\n\n| a |\n|-|\n| 1 |\n"
    assert markdown_tables(long)[0][0] == "A very long heading that Excel"
    assert safe_sheet_name("Data", {"data"}) == "Data (2)"
    assert safe_sheet_name("History") == "History (sheet)"
    assert safe_sheet_name("///") == "---"
    assert safe_sheet_name("''") == "Sheet"
