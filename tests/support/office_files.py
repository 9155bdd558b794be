"""Real Office files for the document tests, written by openpyxl itself."""

from __future__ import annotations

import io

import openpyxl


def xlsx_bytes(sheets: dict[str, list[list]]) -> bytes:
    """A workbook with these sheets and rows, as openpyxl writes it."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()
