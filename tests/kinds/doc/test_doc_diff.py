"""Format-aware document diffs as a reviewer reads them: cells, rows, sheets, paragraphs,
tables, text; previews; and the review() dispatcher on real files.

Workbooks are written with openpyxl and documents with python-docx, then go through review()
(bytes in) or diff_* (loaded data in); every test asserts on the rendered text or the
structured changes a reviewer is shown.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import time

import docx
import openpyxl
import pytest

from runtime.doc_formats import (
    Document,
    DocumentError,
    Paragraph,
    Workbook,
    load_xlsx,
    markdown_to_document,
)
from runtime.kinds.doc.diff import (
    CellChange,
    ParagraphChange,
    TableCellChange,
    TableChange,
    TableRow,
    diff_docx,
    diff_text,
    diff_xlsx,
    preview_document,
    preview_text,
    preview_workbook,
    render_document_diff,
    render_workbook_diff,
    review,
)
from runtime.kinds.doc.diff.render import SAME_TEXT, WHOLE_DIFF
from tests.support.office_files import xlsx_bytes


def docx_bytes(blocks: list[tuple[str, object]]) -> bytes:
    """("h1".."h3", text), ("p", text), ("bullet", text), ("table", rows) with python-docx."""
    document = docx.Document()
    for kind, value in blocks:
        if kind.startswith("h"):
            document.add_heading(value, level=int(kind[1]))
        elif kind == "p":
            document.add_paragraph(value)
        elif kind == "bullet":
            document.add_paragraph(value, style="List Bullet")
        else:
            rows = value
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for r, row in enumerate(rows):
                for c, text in enumerate(row):
                    table.cell(r, c).text = text
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


SUMMARY = [
    ["region", "q3", "q4"],
    ["north", 10, 42],
    ["south", 20, 30],
    ["east", 5, 7],
    ["total", "=SUM(B2:B4)", "=SUM(C2:C4)"],
]


def fifty_rows() -> list[list]:
    """A header and 49 rows, each with its own per-row formula."""
    rows: list[list] = [["item", "qty", "price", "amount"]]
    for r in range(2, 51):
        rows.append([f"item {r}", r, r * 1.5, f"=B{r}*C{r}"])
    return rows


def renumber(rows: list[list]) -> list[list]:
    """Per-row formulas rewritten for each row's position, as Excel does after an insert."""
    for r, row in enumerate(rows, start=1):
        if isinstance(row[-1], str) and row[-1].startswith("=B"):
            row[-1] = f"=B{r}*C{r}"
    return rows


# --- workbooks -------------------------------------------------------------------------------


def test_a_cell_changed() -> None:
    new = [list(row) for row in SUMMARY]
    new[1][2] = 43
    result = review(
        "reports/weekly.xlsx", xlsx_bytes({"Summary": SUMMARY}), xlsx_bytes({"Summary": new})
    )
    assert result is not None
    assert result.summary == "1 cell changed"
    assert result.diff_text == (
        "reports/weekly.xlsx (xlsx): 1 cell changed\n  sheet 'Summary'\n    C2      42 -> 43\n"
    )
    assert result.diff.sheets[0].changes == [
        CellChange(sheet="Summary", old_cell="C2", new_cell="C2", old=42, new=43, kind="changed")
    ]


def test_a_formula_changed_shows_formulas_on_both_sides() -> None:
    new = [list(row) for row in SUMMARY]
    new[4][1] = "=SUM(B2:B5)"
    new[3][1] = "later"
    result = review(
        "reports/weekly.xlsx", xlsx_bytes({"Summary": SUMMARY}), xlsx_bytes({"Summary": new})
    )
    assert result is not None
    lines = result.diff_text.splitlines()
    assert "    B4      5 (number) -> 'later' (text)" in lines
    assert "    B5      =SUM(B2:B4) -> =SUM(B2:B5)" in lines
    change = result.diff.sheets[0].changes[-1]
    assert (change.old, change.new) == ("=SUM(B2:B4)", "=SUM(B2:B5)")


def test_a_sheet_added_and_one_removed() -> None:
    old = xlsx_bytes({"Summary": SUMMARY, "Old": [["gone", 1]]})
    new = xlsx_bytes({"Summary": SUMMARY, "Q4": [["month", "sales"], ["oct", 12], [None, "=B2"]]})
    result = review("reports/weekly.xlsx", old, new)
    assert result is not None
    assert result.summary == "sheet 'Q4' added, sheet 'Old' removed"
    assert result.diff_text == (
        "reports/weekly.xlsx (xlsx): sheet 'Q4' added, sheet 'Old' removed\n"
        "  sheet 'Q4' added (3 rows)\n"
        "    A1 'month', B1 'sales'\n"
        "    A2 'oct', B2 12\n"
        "    B3 =B2\n"
        "  sheet 'Old' removed (1 row)\n"
        "    A1 'gone', B1 1\n"
    )
    added = result.diff.sheets[0].changes
    assert [(c.new_cell, c.new, c.kind, c.old_cell) for c in added][-1] == (
        "B3",
        "=B2",
        "added",
        None,
    )
    assert result.diff.sheets_removed == ["Old"]


def test_rows_inserted_in_the_middle_of_50_rows_are_the_only_change() -> None:
    old = fifty_rows()
    new = [list(row) for row in old]
    new[20:20] = [["payments", 12, 2.0, None], ["refunds", -3, 2.0, None]]  # new rows 21-22
    renumber(new)  # the 29 formulas below now say =B23*C23 ... =B52*C52
    result = review("reports/items.xlsx", xlsx_bytes({"Items": old}), xlsx_bytes({"Items": new}))
    assert result is not None
    diff = result.diff
    assert result.summary == "2 rows inserted"
    assert diff.cells_changed == 0
    [hunk] = diff.sheets[0].hunks
    assert (hunk.kind, hunk.new_rows, hunk.old_rows) == ("inserted", (21, 22), None)
    assert [c.new_cell for c in hunk.changes] == ["A21", "B21", "C21", "A22", "B22", "C22"]
    assert result.diff_text == (
        "reports/items.xlsx (xlsx): 2 rows inserted\n"
        "  sheet 'Items'\n"
        "    rows 21-22 inserted\n"
        "      A21 'payments', B21 12, C21 2\n"
        "      A22 'refunds', B22 -3, C22 2\n"
    )


def test_a_row_deleted_in_the_middle() -> None:
    old = fifty_rows()
    new = renumber([list(row) for row in old[:30] + old[31:]])  # old row 31 goes
    diff = diff_xlsx(Workbook(sheets={"Items": old}), Workbook(sheets={"Items": new}))
    assert diff.rows_deleted == 1 and diff.rows_inserted == 0 and diff.cells_changed == 0
    text = render_workbook_diff("reports/items.xlsx", diff)
    assert text == (
        "reports/items.xlsx (xlsx): 1 row deleted\n"
        "  sheet 'Items'\n"
        "    row 31 deleted\n"
        "      A31 'item 31', B31 31, C31 46.5, D31 =B31*C31\n"
    )


def test_a_change_below_inserted_rows_shows_old_and_new_address() -> None:
    old = fifty_rows()
    new = [list(row) for row in old]
    new[10:10] = [["new a", 1, 1.0, None], ["new b", 2, 1.0, None]]
    new[40][1] = 999  # old row 39, now row 41
    new[45][3] = "=B46*C46+1"  # a real formula change, old row 44
    renumber(new)
    new[45][3] = "=B46*C46+1"
    diff = diff_xlsx(Workbook(sheets={"Items": old}), Workbook(sheets={"Items": new}))
    assert diff.rows_inserted == 2 and diff.cells_changed == 2
    text = render_workbook_diff("reports/items.xlsx", diff)
    assert "    B41 (was B39) 39 -> 999\n" in text
    assert "    D46 (was D44) =B44*C44 -> =B46*C46+1\n" in text
    assert " -> " not in text.replace("B41 (was B39) 39 -> 999", "").replace("=B44*C44 ->", "")


def test_formulas_excel_rewrote_for_moved_rows_are_not_changes() -> None:
    old = [["rate", 0.2]]
    old += [[f"i{r}", r, f"=B{r}*$B$1", f"=Other!A{r}"] for r in range(2, 60)]
    old += [["total", "=SUM(B2:B59)"]]
    new = [list(row) for row in old]
    new[20:20] = [["new", 1]]  # new row 21
    del new[50]  # old row 50
    for r, row in enumerate(new[1:-1], start=2):  # what Excel does to the moved formulas
        if len(row) > 2:
            row[2] = f"=B{r}*$B$1"
    new[-1][1] = "=SUM(B2:B59)"  # one row in, one row out: the range is the same size
    new[40][2] = "=B41*$B$1+1"  # and one real edit
    result = review("reports/rates.xlsx", xlsx_bytes({"S": old}), xlsx_bytes({"S": new}))
    assert result is not None
    assert result.diff_text == (
        "reports/rates.xlsx (xlsx): 1 cell changed, 1 row inserted, 1 row deleted\n"
        "  sheet 'S'\n"
        "    row 21 inserted\n"
        "      A21 'new', B21 1\n"
        "    C41 (was C40) =B40*$B$1 -> =B41*$B$1+1\n"
        "    row 50 deleted\n"
        "      A50 'i50', B50 50, C50 =B50*$B$1, D50 =Other!A50\n"
    )
    grown = [list(row) for row in old]
    grown[10:10] = [["new", 5]]
    for r, row in enumerate(grown[1:-1], start=2):  # Excel moves the formulas with their rows
        if len(row) > 2:
            row[2] = f"=B{r}*$B$1"
    grown[-1][1] = "=SUM(B2:B60)"  # and grows a range that rows were inserted into
    assert diff_xlsx(Workbook(sheets={"S": old}), Workbook(sheets={"S": grown})).cells_changed == 0
    same_text = [list(row) for row in grown]
    same_text[-1][1] = "=SUM(B2:B59)"  # the same text in a moved row: it misses a row now
    diff = diff_xlsx(Workbook(sheets={"S": old}), Workbook(sheets={"S": same_text}))
    changed = [(c.old_cell, c.new_cell, c.new) for c in diff.sheets[0].changes if c.old == c.new]
    assert changed == [("B60", "B61", "=SUM(B2:B59)")]


def test_an_edited_row_next_to_inserted_rows_is_paired_by_content() -> None:
    old = fifty_rows()
    new = [list(row) for row in old]
    new[25][1] = 77  # edit old row 26 ...
    new[25:25] = [["x1", 1], ["x2", 2], ["x3", 3]]  # ... and insert three rows right above it
    renumber(new)
    diff = diff_xlsx(Workbook(sheets={"Items": old}), Workbook(sheets={"Items": new}))
    assert diff.rows_inserted == 3 and diff.cells_changed == 1
    change = diff.sheets[0].hunks[-1].changes[0]
    assert (change.old_cell, change.new_cell, change.old, change.new) == ("B26", "B29", 26, 77)


def test_true_and_1_differ_and_a_column_is_compared_by_index() -> None:
    old = Workbook(sheets={"S": [["flag", True], ["n", 1]]})
    new = Workbook(sheets={"S": [["flag", 1], ["n", 1, "extra"]]})
    text = render_workbook_diff("f.xlsx", diff_xlsx(old, new))
    assert "    B1      TRUE (boolean) -> 1 (number)\n" in text
    assert "    C2      (empty) -> 'extra'\n" in text


def test_a_new_workbook_is_all_added_and_a_deleted_one_all_removed() -> None:
    data = xlsx_bytes({"Summary": SUMMARY})
    added = review("reports/new.xlsx", None, data)
    assert added is not None and added.status == "added"
    assert added.summary == "new workbook: 1 sheet, 15 cells"
    assert {c.kind for c in added.diff.sheets[0].changes} == {"added"}
    assert all(c.old is None and c.old_cell is None for c in added.diff.sheets[0].changes)
    assert "    A5 'total', B5 =SUM(B2:B4), C5 =SUM(C2:C4)\n" in added.diff_text
    removed = review("reports/new.xlsx", data, None)
    assert removed is not None and removed.summary == "workbook deleted: 1 sheet, 15 cells"
    assert {c.kind for c in removed.diff.sheets[0].changes} == {"removed"}


def test_unchanged_and_reordered_workbooks() -> None:
    a = Workbook(sheets={"A": [[1]], "B": [[2]]})
    assert render_workbook_diff("x.xlsx", diff_xlsx(a, a)) == "x.xlsx (xlsx): no changes\n"
    swapped = Workbook(sheets={"B": [[2]], "A": [[1]]})
    assert render_workbook_diff("x.xlsx", diff_xlsx(a, swapped)) == (
        "x.xlsx (xlsx): sheets reordered\n"
    )


def test_a_huge_diff_is_capped_but_the_structure_keeps_everything() -> None:
    old = Workbook(sheets={"S": [[r] for r in range(1000)]})
    new = Workbook(sheets={"S": [[r, -1] for r in range(1000)]})
    diff = diff_xlsx(old, new)
    assert diff.cells_changed == 1000
    lines = render_workbook_diff("big.xlsx", diff, max_lines=50).splitlines()
    assert len(lines) == 50
    assert lines[-1] == "... 953 more changes not shown (" + WHOLE_DIFF + ")"
    assert lines[2] == "    B1      (empty) -> -1"


def test_many_identical_rows_stay_fast() -> None:
    old = [[0, 0, 0] if r % 4 else [r, "x"] for r in range(20_000)]
    new = [list(row) for row in old]
    new[10_000:10_000] = [["inserted", 1]]
    for r in range(1, 20_000, 997):
        new[r] = ["edited", r]
    # CPU time, not wall time: the bound is on the work the diff does (no quadratic
    # alignment), which other processes sharing the cores (pytest -n) do not change.
    started = time.process_time()
    diff = diff_xlsx(Workbook(sheets={"S": old}), Workbook(sheets={"S": new}))
    assert time.process_time() - started < 3
    assert diff.rows_inserted >= 1
    assert any(c.new == "inserted" for s in diff.sheets for c in s.changes)
    every_other = [[f"item {r}", r, r * 2] for r in range(20_000)]
    edited = [[*row[:2], -1] if r % 2 else row for r, row in enumerate(every_other)]
    started = time.process_time()
    diff = diff_xlsx(Workbook(sheets={"S": every_other}), Workbook(sheets={"S": edited}))
    assert time.process_time() - started < 3
    assert diff.cells_changed == 10_000 and diff.rows_inserted == diff.rows_deleted == 0


# --- documents -------------------------------------------------------------------------------

MEMO = [
    ("h1", "Quarterly report"),
    ("p", "The quick brown fox jumps over the lazy dog."),
    ("h2", "Revenue"),
    ("bullet", "north up"),
    ("table", [["region", "q3"], ["north", "10"], ["south", "5"]]),
    ("h2", "Costs"),
    ("p", "Costs were flat."),
]


def test_a_paragraph_edited() -> None:
    new = [*MEMO]
    new[1] = ("p", "The slow brown fox jumps over the lazy dog.")
    result = review("reports/memo.docx", docx_bytes(MEMO), docx_bytes(new))
    assert result is not None
    assert result.summary == "1 paragraph changed"
    assert result.diff_text == (
        "reports/memo.docx (docx): 1 paragraph changed\n"
        "  in 'Quarterly report':\n"
        "    ~ [Normal] The [-quick-]{+slow+} brown fox jumps over the lazy dog.\n"
    )
    assert result.diff.changes == [
        ParagraphChange(
            kind="changed",
            section="Quarterly report",
            old_style="Normal",
            new_style="Normal",
            old_text="The quick brown fox jumps over the lazy dog.",
            new_text="The slow brown fox jumps over the lazy dog.",
        )
    ]


def test_a_paragraph_inserted_next_to_an_edited_one() -> None:
    new = [*MEMO]
    new[6:7] = [("p", "A new paragraph about travel."), ("p", "Costs were flat again.")]
    new.insert(3, ("bullet", "south down"))
    result = review("reports/memo.docx", docx_bytes(MEMO), docx_bytes(new))
    assert result is not None
    assert result.summary == "1 paragraph changed, 2 paragraphs added"
    assert result.diff_text == (
        "reports/memo.docx (docx): 1 paragraph changed, 2 paragraphs added\n"
        "  in 'Revenue':\n"
        "    + [List Bullet] south down\n"
        "  in 'Costs':\n"
        "    + [Normal] A new paragraph about travel.\n"
        "    ~ [Normal] Costs were flat{+ again+}.\n"
    )


def test_a_style_change_and_a_removed_paragraph() -> None:
    old = Document(blocks=[Paragraph(text="Intro"), Paragraph(text="Body"), Paragraph(text="x")])
    new = Document(blocks=[Paragraph(style="Heading 1", text="Intro"), Paragraph(text="Body")])
    text = render_document_diff("m.docx", diff_docx(old, new))
    assert text == (
        "m.docx (docx): 1 paragraph changed, 1 paragraph removed\n"
        "  in 'Intro':\n"
        "    ~ [Normal -> Heading 1] Intro\n"
        "  (before any heading):\n"
        "    - [Normal] x\n"
    )


def test_a_table_cell_edited_and_a_row_added() -> None:
    new = [*MEMO]
    new[4] = ("table", [["region", "q3"], ["north", "10"], ["south", "7"], ["east", "2"]])
    result = review("reports/memo.docx", docx_bytes(MEMO), docx_bytes(new))
    assert result is not None
    assert result.summary == "1 table changed (1 cell changed, 1 row added)"
    assert result.diff_text == (
        "reports/memo.docx (docx): 1 table changed (1 cell changed, 1 row added)\n"
        "  in 'Revenue':\n"
        "    ~ table 1 (3x2 -> 4x2)\n"
        "        r3c2    (row 'south', column 'q3') '5' -> '7'\n"
        "        + row 4: 'east' | '2'\n"
    )
    [change] = result.diff.changes
    assert isinstance(change, TableChange)
    assert change.cells == [
        TableCellChange(
            table=1,
            old_row=3,
            new_row=3,
            col=2,
            old="5",
            new="7",
            kind="changed",
            row_name="south",
            col_name="q3",
        )
    ]
    assert change.rows_added == [TableRow(row=4, cells=["east", "2"])]


def test_a_new_document_is_all_added() -> None:
    result = review("reports/memo.docx", None, docx_bytes(MEMO))
    assert result is not None and result.status == "added"
    assert result.summary == "new document: 6 paragraphs, 1 table"
    assert {c.kind for c in result.diff.changes} == {"added"}
    assert result.diff_text.splitlines()[:3] == [
        "reports/memo.docx (docx): new document: 6 paragraphs, 1 table",
        "  in 'Quarterly report':",
        "    + [Heading 1] Quarterly report",
    ]
    assert "        + row 3: 'south' | '5'" in result.diff_text.splitlines()
    gone = review("reports/memo.docx", docx_bytes(MEMO), None)
    assert gone is not None and gone.summary == "document deleted: 6 paragraphs, 1 table"


def test_markdown_report_as_docx_round_trip_diff() -> None:
    old = markdown_to_document("# R\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    new = markdown_to_document("# R\n\n| a | b |\n|---|---|\n| 1 | 3 |\n\nDone.\n")
    diff = diff_docx(old, new)
    assert render_document_diff("r.docx", diff) == (
        "r.docx (docx): 1 paragraph added, 1 table changed (1 cell changed)\n"
        "  in 'R':\n"
        "    ~ table 1 (2x2)\n"
        "        r2c2    (row '1', column 'b') '2' -> '3'\n"
        "    + [Normal] Done.\n"
    )


# --- text --------------------------------------------------------------------------------------


def test_markdown_text_diff() -> None:
    old = "# Report\n\nline one\nline two\n"
    new = "# Report\n\nline one\nline 2\n"
    assert diff_text(old, new, "notes/report.md") == (
        "--- a/notes/report.md\n"
        "+++ b/notes/report.md\n"
        "@@ -1,4 +1,4 @@\n"
        " # Report\n"
        " \n"
        " line one\n"
        "-line two\n"
        "+line 2\n"
    )
    assert diff_text(old, old, "notes/report.md") == ""
    assert diff_text(old, old.replace("\n", "\r\n"), "notes/report.md") == ""


def test_csv_review_and_a_new_file_is_all_added() -> None:
    old = b"region,q3\nnorth,10\nsouth,5\n"
    new = b"region,q3\nnorth,10\nsouth,7\n"
    result = review("data/sales.csv", old, new)
    assert result is not None and result.format == "csv"
    assert result.summary == "1 line added, 1 line removed"
    assert "-south,5\n+south,7\n" in result.diff_text
    created = review("data/sales.csv", None, new)
    assert created is not None and created.summary == "new file: 3 lines"
    assert created.diff_text.splitlines()[2:] == [
        "@@ -0,0 +1,3 @@",
        "+region,q3",
        "+north,10",
        "+south,7",
    ]


# --- previews ------------------------------------------------------------------------------------


def test_preview_workbook() -> None:
    wb = Workbook(
        sheets={
            "Items": fifty_rows(),
            "Notes": [["a very long note that goes on and on and on", 1]],
            "Empty": [],
            "More": [[1]],
        }
    )
    assert preview_workbook(wb, rows=3) == (
        "sheet 'Items' (50 rows x 4 columns)\n"
        "     A       B    C      D\n"
        "  1  item    qty  price  amount\n"
        "  2  item 2  2    3.0    =B2*C2\n"
        "  3  item 3  3    4.5    =B3*C3\n"
        "  … 47 more rows\n"
        "sheet 'Notes' (1 row x 2 columns)\n"
        "     A                     B\n"
        "  1  a very long note th…  1\n"
        "sheet 'Empty' (empty)\n"
        "… 1 more sheet: 'More'\n"
    )


def test_preview_document_and_text() -> None:
    doc = markdown_to_document("# Report\n\nintro\n\n## Sales\n\n### North\n\n| a |\n|-|\n| 1 |\n")
    assert preview_document(doc) == "Report\n  Sales\n    North\n4 paragraphs, 1 table\n"
    assert preview_document(Document(blocks=[Paragraph(text="just text")])) == (
        "(no headings)\nstarts: just text\n1 paragraph, 0 tables\n"
    )
    markdown = "# Report\n\n```\n# code\n```\n## Sales\n"
    assert preview_text("r.md", markdown) == "Report\n  Sales\n6 lines\n"
    csv_text = "".join(f"r{n},{n}\n" for n in range(8))
    assert preview_text("d.csv", csv_text) == (
        "8 rows (header included)\n"
        "     A   B\n"
        "  1  r0  0\n"
        "  2  r1  1\n"
        "  3  r2  2\n"
        "  4  r3  3\n"
        "  5  r4  4\n"
        "  … 3 more rows\n"
    )


def test_review_previews_the_new_version() -> None:
    result = review("reports/memo.docx", docx_bytes(MEMO), docx_bytes(MEMO))
    assert result is not None
    assert result.status == "unchanged" and result.summary == "no changes"
    assert result.preview == "Quarterly report\n  Revenue\n  Costs\n6 paragraphs, 1 table\n"
    book = review("r.xlsx", None, xlsx_bytes({"Summary": SUMMARY}))
    assert book is not None and book.preview.startswith("sheet 'Summary' (5 rows x 3 columns)\n")


# --- the dispatcher's edges ---------------------------------------------------------------------


def test_review_of_an_unknown_format_is_none() -> None:
    assert review("bin/tool.exe", b"MZ", b"MZ") is None


def test_review_errors_name_the_path_and_the_version() -> None:
    good = xlsx_bytes({"Summary": SUMMARY})
    with pytest.raises(DocumentError) as caught:
        review("reports/q3.xlsx", good, b"region,q3\n")
    assert caught.value.message == (
        "reports/q3.xlsx is not an XLSX workbook: it is not a zip file (it looks like text)"
    )
    with pytest.raises(DocumentError) as caught:
        review("reports/q3.xlsx", good[:100], good)
    assert caught.value.message.startswith("reports/q3.xlsx (old version) is corrupt: ")
    with pytest.raises(DocumentError, match=r"^data/x.csv is not UTF-8 text"):
        review("data/x.csv", None, "café".encode("cp1252"))
    with pytest.raises(DocumentError, match=r"^reports/q3.xlsx is 4.\d KB; documents over 0.1 KB"):
        review("reports/q3.xlsx", None, good, max_bytes=100)


def test_review_round_trips_a_loaded_workbook() -> None:
    data = xlsx_bytes({"Summary": SUMMARY})
    wb = load_xlsx("r.xlsx", data)
    result = review("r.xlsx", data, data)
    assert result is not None and result.diff is not None
    assert result.diff.status == "unchanged"
    assert wb.sheets["Summary"][4] == ["total", "=SUM(B2:B4)", "=SUM(C2:C4)"]


def _priced(rows: int) -> list[list[object]]:
    """A sheet of items whose amount is a product of its own row's cells."""
    sheet: list[list[object]] = [["id", "item", "price", "rate", "amount"]]
    sheet += [[r - 1, f"item {r}", r * 1.5, 1.1, f"=C{r}*D{r}"] for r in range(2, rows + 2)]
    sheet[0].append("=SUM(E2:E" + str(rows + 1) + ")")
    return sheet


def test_a_row_inserted_without_rewriting_formulas_is_reported_as_shifted_formulas() -> None:
    """What openpyxl's insert_rows leaves: the formulas below keep their text, so each now
    multiplies the row above's cells, and the total misses the last row."""
    old = _priced(2_000)
    new = [list(row) for row in old]
    new[1001:1001] = [[9999, "new", 1.0, 1.0, "=C1002*D1002"]]  # new row 1002, nothing rewritten
    result = review("budget.xlsx", xlsx_bytes({"Sheet1": old}), xlsx_bytes({"Sheet1": new}))
    assert result is not None and result.diff is not None
    assert result.summary == (
        "1000 formulas now refer to other rows, 1001 cells changed, 1 row inserted"
    )
    lines = result.diff_text.splitlines()
    assert lines[2] == (
        "    ! 1,000 formulas in Sheet1!E now refer to the row above "
        "(their references did not move with their rows)"
    )
    assert "    F1      =SUM(E2:E2001) -> =SUM(E2:E2001)" + SAME_TEXT in lines
    assert "    E1003 (was E1002) =C1002*D1002 -> =C1002*D1002" + SAME_TEXT in lines
    # The same insertion done as Excel does it: formulas moved with their rows, the total grown.
    fixed = [list(row) for row in new]
    for r, row in enumerate(fixed[1:], start=2):
        row[4] = f"=C{r}*D{r}"
    fixed[0][5] = "=SUM(E2:E2002)"
    done = review("budget.xlsx", xlsx_bytes({"Sheet1": old}), xlsx_bytes({"Sheet1": fixed}))
    assert done is not None and done.summary == "1 row inserted"


def test_a_date_replaced_by_text_that_looks_the_same_is_a_change() -> None:
    """openpyxl writes a real date cell; the job puts the text '2026-03-01' in its place."""
    import datetime as dt

    from openpyxl import Workbook as OpenpyxlBook

    def book(value: object) -> bytes:
        made = OpenpyxlBook()
        sheet = made.active
        sheet.title = "Plan"
        sheet.append(["due", "owner"])
        sheet.append([value, "ops"])
        out = io.BytesIO()
        made.save(out)
        return out.getvalue()

    old, new = book(dt.datetime(2026, 3, 1)), book("2026-03-01")
    result = review("plan.xlsx", old, new)
    assert result is not None
    assert result.summary == "1 cell changed, formatting changed in 1 cell"
    assert result.diff_text.splitlines()[2:] == [
        "    format A2 number format: 'yyyy-mm-dd h:mm:ss' -> 'General'",
        "    A2      2026-03-01 (date) -> '2026-03-01' (text)",
    ]
    assert review("plan.xlsx", old, book(dt.datetime(2026, 3, 1))).summary == "no changes"


def test_a_renamed_sheet_is_a_rename_with_its_edits_not_removed_and_added() -> None:
    rows = fifty_rows()
    edited = [list(row) for row in rows]
    edited[10][1] = 999
    old = xlsx_bytes({"Summary": [["total", 1]], "Q3": rows})
    new = xlsx_bytes({"Summary": [["total", 1]], "Q3 final": edited})
    result = review("r.xlsx", old, new)
    assert result is not None
    assert result.summary == "1 cell changed, sheet 'Q3' renamed to 'Q3 final'"
    lines = result.diff_text.splitlines()
    assert lines[1] == "  sheet 'Q3 final' (renamed from 'Q3')"
    assert len(lines) == 3 and lines[2].startswith("    B11 ")
    plain = review("r.xlsx", old, xlsx_bytes({"Summary": [["total", 1]], "Totals": rows}))
    assert plain is not None and plain.summary == "sheet 'Q3' renamed to 'Totals'"
    other = review("r.xlsx", old, xlsx_bytes({"Summary": [["total", 1]], "New": [["x", 1]]}))
    assert other is not None and "sheet 'New' added" in other.summary
    assert "sheet 'Q3' removed" in other.summary


def _styled_book(*, currency: bool, header_fill: bool, hide_owner: bool) -> bytes:
    """A realistic sheet as openpyxl saves it: a filled bold header, 2,000 amounts with a
    number format, frozen header, an autofilter and a conditional format."""
    from openpyxl import Workbook as OpenpyxlBook
    from openpyxl.formatting.rule import CellIsRule
    from openpyxl.styles import Font, PatternFill

    made = OpenpyxlBook()
    sheet = made.active
    sheet.title = "Budget"
    sheet.append(["team", "owner", "amount"])
    for r in range(2, 2002):
        sheet.append([f"team {r % 17}", f"person {r % 5}", r * 10.5])
        sheet[f"C{r}"].number_format = '"$"#,##0' if currency else "#,##0.00"
    if header_fill:
        for c in "ABC":
            sheet[f"{c}1"].fill = PatternFill("solid", fgColor="DDEBF7")
    for c in "ABC":
        sheet[f"{c}1"].font = Font(bold=True)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = "A1:C2001"
    sheet.conditional_formatting.add(
        "C2:C2001", CellIsRule(operator="greaterThan", formula=["1000"], font=Font(bold=True))
    )
    if hide_owner:
        sheet.column_dimensions["B"].hidden = True
    out = io.BytesIO()
    made.save(out)
    return out.getvalue()


def test_a_format_only_change_is_never_no_changes() -> None:
    old = _styled_book(currency=False, header_fill=True, hide_owner=False)
    new = _styled_book(currency=True, header_fill=False, hide_owner=True)
    result = review("budget.xlsx", old, new)
    assert result is not None
    assert result.summary == "formatting changed in 2003 cells, 2 sheet features changed"
    assert result.diff_text.splitlines()[1:] == [
        "  sheet 'Budget'",
        "    feature column widths: (none) -> B 13",
        "    feature hidden columns: (none) -> B",
        "    format A1:C1 fill: '#DDEBF7' -> 'none'",
        "    format C2:C2001 number format: '#,##0.00' -> '$#,##0'",  # "$" unquoted
    ]
    same = review("budget.xlsx", old, _styled_book(currency=False, header_fill=True,
                                                   hide_owner=False))  # fmt: skip
    assert same is not None and same.summary == "no changes"


def test_filter_and_conditional_ranges_left_behind_by_an_inserted_row_are_reported() -> None:
    from openpyxl import load_workbook

    old = _styled_book(currency=False, header_fill=True, hide_owner=False)
    book = load_workbook(io.BytesIO(old))
    book["Budget"].insert_rows(1000)  # openpyxl moves cells, not the sheet's ranges
    out = io.BytesIO()
    book.save(out)
    result = review("budget.xlsx", old, out.getvalue())
    assert result is not None
    lines = result.diff_text.splitlines()
    assert (
        "    feature autofilter not moved with its cells: A1:C2001 -> A1:C2001 "
        "(Excel would have made it A1:C2002)"
    ) in lines
    assert (
        "    feature conditional formatting not moved with its cells: C2:C2001 -> C2:C2001 "
        "(Excel would have made it C2:C2002)"
    ) in lines


# --- columns inserted and deleted ---------------------------------------------------------


def _budget_book(*, tax: bool) -> bytes:
    """A budget with an amount formula per row; with `tax`, a tax column inserted as Excel
    does it (column C, the price and amount move right, the formulas rewritten to follow)."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Budget"
    sheet.append(["item", "qty", *(["tax"] if tax else []), "price", "amount", "note"])
    for r in range(2, 12):
        price, amount = r * 1.5, f"=B{r}*{'D' if tax else 'C'}{r}"
        sheet.append([f"i{r}", r, *([0.2] if tax else []), price, amount, "ok"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_column_inserted_in_the_middle_is_reported_once_and_the_rest_is_unchanged() -> None:
    old = _budget_book(tax=False)
    changed = openpyxl.load_workbook(io.BytesIO(_budget_book(tax=True)))
    changed["Budget"]["B5"] = 99  # and one real edit, found in its moved place
    new = io.BytesIO()
    changed.save(new)
    done = review("budget.xlsx", old, new.getvalue())
    assert done is not None
    assert done.diff_text.splitlines() == [
        "budget.xlsx (xlsx): 1 cell changed, 1 column inserted",
        "  sheet 'Budget'",
        "    column C inserted",
        "      C1 'tax', C2 0.2, C3 0.2, C4 0.2, C5 0.2, C6 0.2, C7 0.2, C8 0.2, C9 0.2, "
        "C10 0.2, C11 0.2",
        "    B5      5 -> 99",
    ]


def test_a_column_inserted_without_rewriting_formulas_is_reported_as_shifted_formulas() -> None:
    """openpyxl's insert_cols moves cells but not the references in formulas: each amount
    (=B2*C2, now in column E) multiplies by the new empty tax column instead of the price."""
    old = _budget_book(tax=False)
    book = openpyxl.load_workbook(io.BytesIO(old))
    book["Budget"].insert_cols(3)
    book["Budget"]["C1"] = "tax"
    new = io.BytesIO()
    book.save(new)
    done = review("budget.xlsx", old, new.getvalue())
    assert done is not None
    lines = done.diff_text.splitlines()
    assert lines[:5] == [
        "budget.xlsx (xlsx): 10 formulas now refer to other cells, 10 cells changed, "
        "1 column inserted",
        "  sheet 'Budget'",
        "    ! 10 formulas in Budget!E now refer to the column to the left "
        "(their references did not move with their columns)",
        "    column C inserted",
        "      C1 'tax'",
    ]
    assert "    E2 (was D2) =B2*C2 -> =B2*C2" + SAME_TEXT in lines
    assert len(lines) == 15  # the ten amounts, nothing else: price and note moved unchanged


def test_a_deleted_column_is_one_change_and_formulas_that_followed_it_are_unchanged() -> None:
    old = _budget_book(tax=True)
    book = openpyxl.load_workbook(io.BytesIO(old))
    sheet = book["Budget"]
    sheet.delete_cols(3)  # the tax column; rewrite the amounts as Excel would
    for r in range(2, 12):
        sheet.cell(r, 4).value = f"=B{r}*C{r}"
    new = io.BytesIO()
    book.save(new)
    done = review("budget.xlsx", old, new.getvalue())
    assert done is not None and done.diff is not None
    assert done.summary == "1 column deleted"
    assert done.diff.sheets[0].columns[0].label == "column C"
    assert done.diff.change_count == 11  # its header and ten values


# --- charts, images and the workbook's own parts -------------------------------------------


def _charted_book(*, chart: bool = True, image_at: str = "B8", rate: str = "$B$1") -> bytes:
    from openpyxl.chart import BarChart, Reference
    from openpyxl.drawing.image import Image
    from openpyxl.workbook.defined_name import DefinedName
    from PIL import Image as Picture

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sales"
    for r in range(1, 6):
        sheet.append([f"m{r}", r * 2])
    if chart:
        bars = BarChart()
        bars.title = "Sales"
        bars.add_data(Reference(sheet, min_col=2, min_row=1, max_row=5))
        sheet.add_chart(bars, "D2")
    logo = io.BytesIO()
    Picture.new("RGB", (10, 10), "red").save(logo, "PNG")
    logo.seek(0)
    sheet.add_image(Image(logo), image_at)
    book.defined_names["TaxRate"] = DefinedName("TaxRate", attr_text=f"Sales!{rate}")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _with_parts(data: bytes, parts: dict[str, bytes]) -> bytes:
    """The workbook's archive with these parts added (as a file from elsewhere would carry)."""
    import zipfile

    out = io.BytesIO(data)
    with zipfile.ZipFile(out, "a") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    return out.getvalue()


EXTERNAL_LINK = {
    "xl/externalLinks/externalLink1.xml": b'<externalLink xmlns="http://schemas.openxmlformats.'
    b'org/spreadsheetml/2006/main"><externalBook r:id="rId1"/></externalLink>',
    "xl/externalLinks/_rels/externalLink1.xml.rels": b'<Relationships xmlns="http://schemas.'
    b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
    b'schemas.openxmlformats.org/officeDocument/2006/relationships/externalLinkPath" '
    b'Target="file:///C:/finance/rates.xlsx" TargetMode="External"/></Relationships>',
}


def test_a_dropped_chart_a_moved_picture_and_a_changed_name_are_reported() -> None:
    old = _charted_book()
    new = _charted_book(chart=False, image_at="C9", rate="$B$2")
    done = review("sales.xlsx", old, new)
    assert done is not None
    assert done.diff_text.splitlines() == [
        "sales.xlsx (xlsx): defined names changed, 2 sheet features changed",
        "  workbook defined names: TaxRate = Sales!$B$1 -> TaxRate = Sales!$B$2",
        "  sheet 'Sales'",
        "    feature charts: bar 'Sales' ('Sales'!$B$1:$B$5) at D2 -> (none)",
        "    feature images: 75 B #01cdd83b at B8 -> 75 B #01cdd83b at C9",
    ]


def test_macros_and_external_links_added_are_flagged_as_risks() -> None:
    old = _charted_book()
    vba = b"\xd0\xcf\x11\xe0" + bytes(2044)  # an OLE compound file's signature, then padding
    new = _with_parts(old, {"xl/vbaProject.bin": vba, **EXTERNAL_LINK})
    done = review("sales.xlsx", old, new)
    assert done is not None and done.diff is not None
    assert done.summary == "external links added (a risk), macros added (a risk)"
    lines = done.diff_text.splitlines()
    assert lines[1:3] == [
        "  ! external links added: file:///C:/finance/rates.xlsx "
        "(its formulas read values from another file)",
        "  ! macros added: VBA project (2.0 KB #"
        + hashlib.sha256(vba).hexdigest()[:8]
        + ") (it runs code when a person opens the workbook and enables it)",
    ]
    # Removing them is no risk, but still a change.
    back = review("sales.xlsx", new, old)
    assert back is not None and back.diff is not None
    assert back.diff.risks == [] and back.summary == "external links, macros changed"


def test_borders_and_fonts_are_compared_and_needless_escapes_are_not() -> None:
    from openpyxl.styles import Border, Font, Side

    def book(*, styled: bool, escaped: bool) -> bytes:
        made = openpyxl.Workbook()
        sheet = made.active
        sheet.append(["due", "owner"])
        sheet.append([datetime.date(2026, 3, 1), "ann"])
        sheet["A2"].number_format = "yyyy\\-mm\\-dd" if escaped else "yyyy-mm-dd"
        if styled:
            sheet["B2"].border = Border(bottom=Side(style="thin"))
            sheet["B1"].font = Font(name="Arial", sz=14)
        out = io.BytesIO()
        made.save(out)
        return out.getvalue()

    assert review("t.xlsx", book(styled=False, escaped=False),
                  book(styled=False, escaped=True)).summary == "no changes"  # fmt: skip
    done = review("t.xlsx", book(styled=False, escaped=False), book(styled=True, escaped=True))
    assert done is not None
    assert done.diff_text.splitlines()[2:] == [
        "    format B1 font: 'default' -> 'Arial 14'",
        "    format B2 border: 'none' -> 'bottom thin'",
    ]


# --- references to other sheets --------------------------------------------------------------


def _priced_books(*, rewrite: bool, rename: str | None = None) -> tuple[bytes, bytes]:
    """An Orders sheet reading prices from a Prices sheet cell by cell (=Prices!B5*C2), and the
    same after a price row is inserted above row 5 of Prices: as Excel does it (`rewrite`:
    every reference below moves down), or by a tool that leaves the other sheet's formulas."""
    prices = [["item", "price"]] + [[f"p{r}", r * 10] for r in range(2, 12)]
    orders = [["order", "qty", "amount"]]
    orders += [[f"o{r}", r, f"=Prices!B{r}*B{r}"] for r in range(2, 12)]
    orders.append(["total", None, "=SUM(Prices!B2:B11)"])
    new_prices = [*prices[:4], ["p-new", 99], *prices[4:]]
    new_orders = [list(row) for row in orders]
    if rewrite:
        for r, row in enumerate(new_orders[1:-1], start=2):
            row[2] = f"=Prices!B{r + 1 if r >= 5 else r}*B{r}"
        new_orders[-1][2] = "=SUM(Prices!B2:B12)"
    name = rename or "Prices"
    if rename:
        quoted = f"'{rename}'!"
        new_orders = [[c.replace("Prices!", quoted) if isinstance(c, str) else c for c in row]
                      for row in new_orders]  # fmt: skip
    old = xlsx_bytes({"Orders": orders, "Prices": prices})
    return old, xlsx_bytes({"Orders": new_orders, name: new_prices})


def test_formulas_reading_another_sheet_follow_its_inserted_row() -> None:
    old, new = _priced_books(rewrite=True)
    done = review("orders.xlsx", old, new)
    assert done is not None
    assert done.diff_text.splitlines() == [
        "orders.xlsx (xlsx): 1 row inserted",
        "  sheet 'Prices'",
        "    row 5 inserted",
        "      A5 'p-new', B5 99",
    ]


def test_formulas_left_reading_the_wrong_rows_of_another_sheet_are_flagged() -> None:
    old, new = _priced_books(rewrite=False)
    done = review("orders.xlsx", old, new)
    assert done is not None
    lines = done.diff_text.splitlines()
    assert lines[:3] == [
        "orders.xlsx (xlsx): 8 formulas now refer to other rows, 8 cells changed, 1 row inserted",
        "  sheet 'Orders'",
        "    ! 8 formulas in Orders!C now read other cells of the sheets they name "
        "(their references did not move with those sheets' rows)",
    ]
    assert "    C5      =Prices!B5*B5 -> =Prices!B5*B5" + SAME_TEXT in lines
    assert "    C2      =Prices!B2*B2 -> =Prices!B2*B2" + SAME_TEXT not in lines  # above it


def test_a_renamed_sheet_is_renamed_in_the_formulas_that_read_it() -> None:
    old, new = _priced_books(rewrite=True, rename="Price list")
    done = review("orders.xlsx", old, new)
    assert done is not None
    assert done.summary == "1 row inserted, sheet 'Prices' renamed to 'Price list'"
