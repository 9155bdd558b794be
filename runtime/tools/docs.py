"""Document tools: Markdown, CSV, XLSX and DOCX read and written inside a job's worktree only.

Paths go through runtime.tools.fs (no `..`, no absolute paths, no symlinks out, no .git), and
every document is checked against its extension and the size limit before it is parsed
(runtime.doc_formats). A template step renders a Jinja2 template from the repository in a
sandboxed environment with the rows of CSV files, then writes the result in the format of the
output's extension: Markdown or CSV as text, DOCX from the Markdown (headings, paragraphs,
bullets, tables), XLSX from its Markdown tables (one sheet per table, named after the heading
above it).
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import PurePosixPath
from typing import Any

from runtime import doc_formats as formats
from runtime.doc_formats import DocumentError, Workbook
from runtime.tools import fs

MAX_TEMPLATE_OUTPUT = 5_000_000


def _format(path: str) -> str:
    kind = formats.format_of(path)
    if kind is None:
        known = ", ".join(sorted(formats.FORMATS))
        raise DocumentError(f"{path} is not a document the tools know (known: {known})")
    return kind


def read_raw(grant: fs.FsGrant, path: str, max_bytes: int) -> tuple[str, bytes]:
    """A document's bytes, checked: its format matches its extension and it is under the limit."""
    data = fs.read_bytes(grant, path, max_bytes)
    return formats.check(path, data, max_bytes), data


def read_rows(grant: fs.FsGrant, path: str, max_bytes: int) -> list[dict[str, str]]:
    """A CSV file as rows keyed by its header."""
    kind, data = read_raw(grant, path, max_bytes)
    if kind != "csv":
        raise DocumentError(f"{path} is {kind}, not CSV; template data must be CSV files")
    table = formats.load_csv(path, data)
    if not table:
        return []
    header = [h.strip() for h in table[0]]
    return [dict(zip(header, row, strict=False)) for row in table[1:] if any(row)]


def read_document(grant: fs.FsGrant, path: str, max_bytes: int) -> str:
    """A document as text a model can read: Markdown and CSV as they are, a workbook as
    addressed cells per sheet, a Word document as Markdown-like lines."""
    kind, data = read_raw(grant, path, max_bytes)
    if kind in ("markdown", "csv"):
        return formats.load_text(path, data)
    if kind == "xlsx":
        book = formats.load_xlsx(path, data)
        return json.dumps(book.sheets, default=str, ensure_ascii=False)[:200_000]
    doc = formats.load_docx(path, data)
    lines = []
    for block in doc.blocks:
        if isinstance(block, formats.Table):
            lines.extend("| " + " | ".join(row) + " |" for row in block.rows)
        elif block.style.startswith("Heading"):
            level = block.style.removeprefix("Heading").strip() or "1"
            lines.append("#" * int(level if level.isdigit() else 1) + " " + block.text)
        elif block.style.startswith("List"):
            lines.append("- " + block.text)
        else:
            lines.append(block.text)
    return "\n".join(lines)


def write_document(grant: fs.FsGrant, path: str, content: str, max_bytes: int) -> dict[str, Any]:
    """Write a document from text: Markdown and CSV as given; DOCX from Markdown; XLSX from a
    JSON object of sheets ({"Sheet1": [[...], ...]}) or from Markdown tables."""
    kind = _format(path)
    if kind in ("markdown", "csv"):
        data = content.encode("utf-8")
    elif kind == "docx":
        data = formats.write_docx(formats.markdown_to_document(content))
    else:
        data = formats.write_xlsx(_workbook_from(path, content))
    if len(data) > max_bytes:
        raise DocumentError(
            f"{path} would be {formats.size_text(len(data))}; documents over "
            f"{formats.size_text(max_bytes)} are not written"
        )
    formats.check(path, data, max_bytes)
    fs.write_bytes(grant, path, data)
    return {"path": path, "format": kind, "bytes": len(data)}


def _workbook_from(path: str, content: str) -> Workbook:
    text = content.strip()
    if text.startswith("{"):
        try:
            sheets = json.loads(text)
        except json.JSONDecodeError as error:
            raise DocumentError(f"{path}: the sheets are not valid JSON: {error}") from None
        if not isinstance(sheets, dict) or not all(
            isinstance(rows, list) and all(isinstance(r, list) for r in rows)
            for rows in sheets.values()
        ):
            raise DocumentError(f'{path}: give the sheets as {{"Sheet name": [[cell, ...], ...]}}')
        return Workbook(sheets=sheets)
    tables = formats.markdown_tables(content)
    if not tables:
        raise DocumentError(
            f"{path}: an XLSX needs at least one table; the content has no Markdown table "
            "(| a | b | with a |---| row) and is not a JSON object of sheets"
        )
    return Workbook(sheets=dict(tables))


def set_cells(
    grant: fs.FsGrant, path: str, sheet: str, cells: dict[str, Any], max_bytes: int
) -> dict[str, Any]:
    """Change some cells of an existing workbook (or make it), keeping every other cell, the
    other sheets and their formatting. Values starting with "=" are formulas."""
    from openpyxl import Workbook as OpenpyxlBook
    from openpyxl import load_workbook
    from openpyxl.utils.cell import coordinate_from_string

    if _format(path) != "xlsx":
        raise DocumentError(f"{path} is not an .xlsx workbook; set_cells edits workbooks")
    try:
        _, data = read_raw(grant, path, max_bytes)
    except FileNotFoundError:
        book = OpenpyxlBook()
        book.active.title = sheet[:31]
    else:
        book = load_workbook(io.BytesIO(data))
    target = book[sheet] if sheet in book.sheetnames else book.create_sheet(sheet[:31])
    for address, value in cells.items():
        try:
            coordinate_from_string(address)
        except ValueError:
            raise DocumentError(f"{path}: '{address}' is not a cell address like B7") from None
        target[address] = value
    out = io.BytesIO()
    book.save(out)
    data = out.getvalue()
    formats.check(path, data, max_bytes)
    fs.write_bytes(grant, path, data)
    return {"path": path, "sheet": sheet, "cells": len(cells), "bytes": len(data)}


# --- templates ------------------------------------------------------------------------------


def _count_by(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    counts: dict[Any, int] = {}
    for row in rows:
        counts[row.get(key, "")] = counts.get(row.get(key, ""), 0) + 1
    return [
        {"value": v, "count": n}
        for v, n in sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    ]


def _number(value: Any) -> float | int:
    try:
        number = float(str(value).replace(",", "").strip() or 0)
    except ValueError:
        return 0
    return int(number) if number.is_integer() else number


def _sum_by(rows: list[dict[str, Any]], key: str, value_key: str) -> list[dict[str, Any]]:
    totals: dict[Any, float] = {}
    for row in rows:
        totals[row.get(key, "")] = totals.get(row.get(key, ""), 0) + _number(row.get(value_key))
    return [{"value": k, "total": _number(v)} for k, v in sorted(totals.items(), key=str)]


def render_template(
    grant: fs.FsGrant, template: str, output: str, data_paths: list[str], max_bytes: int
) -> dict[str, Any]:
    """Render `template` (a Jinja2 file in the repo) with the CSV files' rows; write `output`.

    The template sees `rows` (the first CSV's rows, as dicts by header), `data` (every CSV by
    file stem), `today` (ISO date), and the filters count_by(key), sum_by(key, value_key),
    number and sort_by(key). Jinja2's sandbox refuses attribute tricks and huge ranges.
    """
    from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    _format(output)
    _, raw = read_raw_template(grant, template, max_bytes)
    data = {PurePosixPath(p).stem: read_rows(grant, p, max_bytes) for p in data_paths}
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters.update(
        count_by=_count_by,
        sum_by=_sum_by,
        number=_number,
        sort_by=lambda rows, key, reverse=False: sorted(
            rows, key=lambda r: str(r.get(key, "")), reverse=reverse
        ),
    )
    try:
        text = env.from_string(raw).render(
            rows=data[PurePosixPath(data_paths[0]).stem] if data_paths else [],
            data=data,
            today=date.today().isoformat(),
        )
    except TemplateSyntaxError as error:
        raise DocumentError(f"{template}:{error.lineno}: template error: {error.message}") from None
    except TemplateError as error:
        raise DocumentError(f"{template}: cannot render: {error}") from None
    if len(text) > MAX_TEMPLATE_OUTPUT:
        raise DocumentError(f"{template} rendered {len(text):,} characters; the limit is 5 MB")
    written = write_document(grant, output, text if text.endswith("\n") else text + "\n", max_bytes)
    return {
        **written,
        "template": template,
        "data": data_paths,
        "rows": sum(map(len, data.values())),
    }


def read_raw_template(grant: fs.FsGrant, path: str, max_bytes: int) -> tuple[str, str]:
    data = fs.read_bytes(grant, path, max_bytes)
    if b"\0" in data:
        raise DocumentError(f"{path} is not a text template (it has NUL bytes)")
    try:
        return path, data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not UTF-8 text; templates are text files") from None
