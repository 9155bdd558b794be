"""Workbook reviews on files LibreOffice wrote: generated workbooks passed through
`soffice --convert-to xlsx` (its own XML, style tables and number-format escapes), old and new
alike, with the exact reports a reviewer gets. One soffice run converts them all."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable

import openpyxl
import pytest
from openpyxl.styles import Font, PatternFill

from runtime.kinds.doc.diff import review
from runtime.kinds.doc.diff.render import SAME_TEXT
from tests.support.libreoffice import resaved


def _budget() -> openpyxl.Workbook:
    """20 priced rows, an amount formula each, dates, a styled header and an autofilter."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Budget"
    sheet.append(["item", "price", "rate", "amount", "due"])
    for r in range(2, 22):
        sheet.append([f"item {r}", r * 1.5, 1.1, f"=B{r}*C{r}", dt.date(2026, 3, r % 28 + 1)])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for r in range(2, 22):
        sheet.cell(r, 2).number_format = "#,##0.00"
    sheet.auto_filter.ref = "A1:E21"
    return book


def _row_inserted(book: openpyxl.Workbook) -> None:
    sheet = book.active
    sheet.insert_rows(10)  # openpyxl moves the cells, not the formulas' references
    sheet["A10"], sheet["D10"] = "new", "=B10*C10"


def _formats_only(book: openpyxl.Workbook) -> None:
    sheet = book.active
    for r in range(2, 22):
        sheet.cell(r, 2).number_format = '"$"#,##0'
    for cell in sheet[1]:
        cell.fill = PatternFill(fill_type=None)
    sheet.column_dimensions["E"].hidden = True


def _date_to_text(book: openpyxl.Workbook) -> None:
    book.active["E5"] = book.active["E5"].value.isoformat()


def _column_inserted(book: openpyxl.Workbook) -> None:
    book.active.insert_cols(3)
    book.active["C1"] = "tax"


EDITS: dict[str, Callable[[openpyxl.Workbook], None]] = {
    "inserted.xlsx": _row_inserted,
    "formats.xlsx": _formats_only,
    "datetext.xlsx": _date_to_text,
    "columns.xlsx": _column_inserted,
}


def _saved(book: openpyxl.Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def written() -> dict[str, bytes]:
    """The budget and each edit of it, as LibreOffice saved them; "generated.xlsx" is the
    budget as openpyxl wrote it."""
    files = {"old.xlsx": _saved(_budget())}
    for name, edit in EDITS.items():
        book = _budget()
        edit(book)
        files[name] = _saved(book)
    out = resaved(files, "xlsx")
    out["generated.xlsx"] = files["old.xlsx"]
    return out


def _lines(written: dict[str, bytes], name: str) -> list[str]:
    done = review("budget.xlsx", written["old.xlsx"], written[name])
    assert done is not None
    return done.diff_text.splitlines()


def test_libreoffices_resave_of_a_workbook_is_what_it_changed_and_nothing_else(written):
    """LibreOffice names the header's font where openpyxl left the default; nothing else of
    the values, formulas, formats or filter differs."""
    done = review("budget.xlsx", written["generated.xlsx"], written["old.xlsx"])
    assert done is not None
    assert done.diff_text.splitlines() == [
        "budget.xlsx (xlsx): formatting changed in 5 cells",
        "  sheet 'Budget'",
        "    format A1:E1 font: 'default' -> 'Cambria 11'",
    ]


def test_a_row_inserted_with_stale_formulas_in_libreoffices_file(written):
    lines = _lines(written, "inserted.xlsx")
    assert lines[:6] == [
        "budget.xlsx (xlsx): 12 formulas now refer to other rows, 12 cells changed, "
        "1 row inserted, 1 sheet feature changed",
        "  sheet 'Budget'",
        "    ! 12 formulas in Budget!D now refer to the row above "
        "(their references did not move with their rows)",
        "    feature autofilter not moved with its cells: A1:E21 -> A1:E21 "
        "(Excel would have made it A1:E22)",
        "    row 10 inserted",
        "      A10 'new', D10 =B10*C10",
    ]
    assert lines[6:] == [
        f"    D{r + 1} (was D{r}) =B{r}*C{r} -> =B{r}*C{r}" + SAME_TEXT for r in range(10, 22)
    ]


def test_a_format_only_change_in_libreoffices_file_is_not_no_changes(written):
    assert _lines(written, "formats.xlsx") == [
        "budget.xlsx (xlsx): formatting changed in 25 cells, 2 sheet features changed",
        "  sheet 'Budget'",
        "    feature column widths: (none) -> E 13",  # LibreOffice sizes the hidden column
        "    feature hidden columns: (none) -> E",
        "    format A1:E1 fill: '#DDEBF7' -> 'none'",
        "    format B2:B21 number format: '#,##0.00' -> '$#,##0'",
    ]


def test_a_date_replaced_by_its_text_in_libreoffices_file_shows_both_types(written):
    assert _lines(written, "datetext.xlsx") == [
        "budget.xlsx (xlsx): 1 cell changed",
        "  sheet 'Budget'",
        "    E5      2026-03-06 (date) -> '2026-03-06' (text)",
    ]


def test_a_column_inserted_in_libreoffices_file_is_one_column_and_shifted_formulas(written):
    lines = _lines(written, "columns.xlsx")
    assert lines[:6] == [
        "budget.xlsx (xlsx): 20 formulas now refer to other cells, 20 cells changed, "
        "1 column inserted, 1 sheet feature changed",
        "  sheet 'Budget'",
        "    ! 20 formulas in Budget!E now refer to the column to the left "
        "(their references did not move with their columns)",
        "    feature autofilter not moved with its cells: A1:E21 -> A1:E21 "
        "(Excel would have made it A1:F21)",
        "    column C inserted",
        "      C1 'tax'",
    ]
    assert lines[6:] == [f"    E{r} (was D{r}) =B{r}*C{r} -> =B{r}*C{r}" + SAME_TEXT
                         for r in range(2, 22)]  # fmt: skip
