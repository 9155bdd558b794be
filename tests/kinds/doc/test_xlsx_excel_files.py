"""Workbook reviews on files Microsoft Excel saved (tests/fixtures/excel, from XlsxWriter's
comparison suite): Excel's own XML for conditional formats, pictures, charts, comments,
macros and a marked last row, with the exact reports a reviewer gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.kinds.doc.diff import review

EXCEL = Path(__file__).resolve().parents[2] / "fixtures" / "excel"


def _lines(old: str, new: str) -> list[str]:
    done = review("book.xlsx", (EXCEL / old).read_bytes(), (EXCEL / new).read_bytes())
    assert done is not None
    return done.diff_text.splitlines()


@pytest.mark.filterwarnings("ignore::UserWarning")  # openpyxl on Excel's print titles
def test_a_conditional_formats_rule_flipped_on_the_same_range_is_a_change():
    assert _lines("cond_format01.xlsx", "cond_format02.xlsx") == [
        "book.xlsx (xlsx): 1 sheet feature changed",
        "  sheet 'Sheet1'",
        "    feature conditional formatting rules: A1: cellIs greaterThan 5 (style 0) "
        "-> A1: cellIs lessThan 5",
    ]


def test_a_picture_swapped_and_moved_is_a_change():
    assert _lines("image01.xlsx", "image02.xlsx") == [
        "book.xlsx (xlsx): 1 sheet feature changed",
        "  sheet 'Sheet1'",
        "    feature images: 200 B #b7dc6985 at E9 -> 316 B #14d80c28 at D7",
    ]


def test_a_chart_added_names_its_kind_ranges_and_place():
    lines = _lines("simple01.xlsx", "chart_bar01.xlsx")
    assert lines[2] == (
        "    feature charts: (none) -> bar (Sheet1!$A$1:$A$5, Sheet1!$B$1:$B$5, "
        "Sheet1!$A$1:$A$5, Sheet1!$C$1:$C$5) at E9"
    )
    back = _lines("chart_bar01.xlsx", "simple01.xlsx")
    assert "at E9 -> (none)" in back[2]  # the chart a tool dropped on saving


def test_comments_and_a_marked_last_row_in_excels_file():
    assert _lines("simple01.xlsx", "comment03.xlsx") == [
        "book.xlsx (xlsx): 1 cell changed, 1 row deleted, 1 sheet feature changed",
        "  sheet 'Sheet1'",
        "    feature comments: (none) -> A1 'Some text' by John; XFD1048576 'Some text' by John",
        "    A1      'Hello' -> 'Foo'",
        "    row 2 deleted",
        "      A2 123",
    ]


def test_a_vba_project_in_the_new_version_is_flagged_first():
    lines = _lines("simple01.xlsx", "macro01.xlsm")
    assert lines[:3] == [
        "book.xlsx (xlsx): macros added (a risk), 1 row deleted",
        "  ! macros added: VBA project (13.0 KB #c2dc50d0) "
        "(it runs code when a person opens the workbook and enables it)",
        "  workbook macros: (none) -> VBA project (13.0 KB #c2dc50d0)",
    ]
