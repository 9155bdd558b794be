"""A workbook or document diff as plain text for a terminal or a Slack code block:
`render_workbook_diff` and `render_document_diff`, capped at a number of lines (the diff
objects keep everything).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterator

from runtime.doc_formats import Cell
from runtime.kinds.doc.diff.formatting import MAX_FORMAT_CHANGES
from runtime.kinds.doc.diff.model import (
    CellChange,
    DocumentDiff,
    ParagraphChange,
    RowHunk,
    TableChange,
    WorkbookDiff,
)
from runtime.kinds.doc.diff.summary import summarize_document, summarize_workbook
from runtime.kinds.doc.diff.wording import _cut, _plural

MAX_LINES = 400  # rendered diff lines, "... N more changes" included
VALUE_WIDTH = 60  # characters of a cell value shown in a rendered diff
SAME_TEXT = "  (same text, other cells now: it moved)"
ROW_WIDTH = 200  # characters of an inserted or deleted row shown on one line
WHOLE_DIFF = "all of them in the job's document-diff.json artifact"


def _show(value: Cell, width: int = VALUE_WIDTH) -> str:
    """A cell value for a diff line: 'text', 12, 1.5, TRUE, =SUM(A1:A3), (empty), and dates
    and times with their type: 2026-03-01 (date), 09:30:00 (time)."""
    if value is None or value == "":
        return "(empty)"
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return _cut(value, width) if value.startswith("=") else repr(_cut(value, width))
    if isinstance(value, dt.datetime):
        return f"{value.isoformat()} (date/time)"
    if isinstance(value, dt.date):
        return f"{value.isoformat()} (date)"
    if isinstance(value, dt.time):
        return f"{value.isoformat()} (time)"
    if isinstance(value, dt.timedelta):
        return f"{value} (duration)"
    return str(value)


def type_of(value: Cell) -> str:
    """The kind of value a cell holds, as a reviewer names it."""
    if value is None or value == "":
        return "empty"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "formula" if value.startswith("=") else "text"
    if isinstance(value, dt.datetime):
        return "date/time"
    if isinstance(value, dt.date):
        return "date"
    return "time" if isinstance(value, dt.time) else "duration"


def _change(old: Cell, new: Cell) -> str:
    """`old -> new`; when the kind of value changed (a date became text that looks the same, a
    number became text) each side says what it is."""
    shown = [_show(old), _show(new)]
    kinds = (type_of(old), type_of(new))
    if "empty" not in kinds and kinds[0] != kinds[1]:
        shown = [
            text if text.endswith(f"({kind})") else f"{text} ({kind})"
            for text, kind in zip(shown, kinds, strict=True)
        ]
    return f"{shown[0]} -> {shown[1]}"


class _Lines:
    """Rendered lines up to a cap; counts the changes it showed."""

    def __init__(self, max_lines: int) -> None:
        self.lines: list[str] = []
        self.max_lines = max(max_lines, 2)
        self.shown = 0
        self.full = False

    def add(self, line: str, changes: int = 0) -> bool:
        if len(self.lines) >= self.max_lines - 1:
            self.full = True
            return False
        self.lines.append(line)
        self.shown += changes
        return True

    def text(self, total_changes: int) -> str:
        if self.full:
            more = total_changes - self.shown
            self.lines.append(
                f"... {_plural(more, 'more change')} not shown ({WHOLE_DIFF})"
                if more
                else f"... more lines not shown ({WHOLE_DIFF})"
            )
        return "\n".join(self.lines) + "\n"


def render_workbook_diff(path: str, diff: WorkbookDiff, max_lines: int = MAX_LINES) -> str:
    """The diff as plain text: a summary line, then per sheet its changed cells (address, old ->
    new) and inserted / deleted rows with their cells, at most `max_lines` lines."""
    out = _Lines(max_lines)
    out.add(f"{path} (xlsx): {summarize_workbook(diff)}")
    for risk in diff.risks:
        out.add(f"  ! {risk}")
    for part in diff.parts:
        out.add(f"  workbook {part.what}: {part.old} -> {part.new}")
    for sheet in diff.sheets:
        if sheet.status == "changed":
            title = f"  sheet {sheet.name!r}"
            if sheet.renamed_from is not None:
                title += f" (renamed from {sheet.renamed_from!r})"
        else:
            rows = sum(h.row_count for h in sheet.hunks)
            title = f"  sheet {sheet.name!r} {sheet.status} ({_plural(rows, 'row')})"
        if not out.add(title):
            break
        for shift in sheet.shifted:  # first: the damage a reviewer must not miss
            if not out.add(f"    ! {shift.sentence(sheet.name)}"):
                break
        for feature in sheet.features:
            if not out.add(f"    feature {feature.what}: {feature.old} -> {feature.new}"):
                break
        for fmt in sheet.formats:
            if not out.add(f"    format {fmt.range} {fmt.what}: {fmt.old!r} -> {fmt.new!r}"):
                break
        if len(sheet.formats) >= MAX_FORMAT_CHANGES:
            out.add(f"    ... format changes stop at {MAX_FORMAT_CHANGES} ranges")
        for columns in sheet.columns:
            if not out.add(f"    {columns.label} {columns.kind}"):
                break
            if columns.changes and not out.add(
                "      " + _row_line(columns.changes), len(columns.changes)
            ):
                break
        for hunk in sheet.hunks:
            if not _render_hunk(out, hunk, with_header=sheet.status == "changed"):
                break
    return out.text(diff.change_count)


def _formula(value: Cell) -> bool:
    return isinstance(value, str) and value.startswith("=")


def _rows_label(span: tuple[int, int]) -> str:
    return f"row {span[0]}" if span[0] == span[1] else f"rows {span[0]}-{span[1]}"


def _render_hunk(out: _Lines, hunk: RowHunk, with_header: bool) -> bool:
    if hunk.kind == "changed":
        for c in hunk.changes:
            where = c.new_cell if c.old_cell == c.new_cell else f"{c.new_cell} (was {c.old_cell})"
            same = SAME_TEXT if _formula(c.old) and c.old == c.new else ""  # did not follow
            if not out.add(f"    {where:<7} {_change(c.old, c.new)}{same}", 1):
                return False
        return True
    span = hunk.new_rows if hunk.kind == "inserted" else hunk.old_rows
    indent = "      " if with_header else "    "
    if with_header and not out.add(f"    {_rows_label(span)} {hunk.kind}"):  # type: ignore[arg-type]
        return False
    for row_changes in _by_row(hunk.changes):
        if not out.add(indent + _row_line(row_changes), len(row_changes)):
            return False
    return True


def _by_row(changes: list[CellChange]) -> Iterator[list[CellChange]]:
    row: list[CellChange] = []
    for change in changes:
        if row and _row_number(row[0]) != _row_number(change):
            yield row
            row = []
        row.append(change)
    if row:
        yield row


def _row_number(change: CellChange) -> int:
    address = change.new_cell or change.old_cell or "A0"
    return int(address.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _row_line(changes: list[CellChange]) -> str:
    """A7 'payments', B7 12, ... (cut at ROW_WIDTH characters)."""
    parts: list[str] = []
    length = 0
    for n, c in enumerate(changes):
        value = c.new if c.kind == "added" else c.old
        part = f"{c.new_cell or c.old_cell} {_show(value, 40)}"
        if parts and length + len(part) > ROW_WIDTH:
            parts.append(f"… (+{_plural(len(changes) - n, 'cell')})")
            break
        parts.append(part)
        length += len(part) + 2
    return ", ".join(parts)


_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def _word_diff(old: str, new: str, limit: int = 400) -> str:
    """Old -> new text with [-removed-] and {+added+} words; long equal stretches shortened."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    opcodes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    parts = []
    for n, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            text = "".join(a[i1:i2])
            first, last = n == 0, n == len(opcodes) - 1
            if len(text) > 60:
                head = "" if first else text[:25]
                tail = "" if last else text[-25:]
                text = f"{head}…{tail}"
            parts.append(text)
            continue
        if i2 > i1:
            parts.append("[-" + "".join(a[i1:i2]) + "-]")
        if j2 > j1:
            parts.append("{+" + "".join(b[j1:j2]) + "+}")
    return _cut("".join(parts), limit)


def render_document_diff(path: str, diff: DocumentDiff, max_lines: int = MAX_LINES) -> str:
    """The diff as plain text: a summary line; warnings (unaccepted tracked changes, parts not
    read); headers and footers, pictures, tracked changes and comments; then changes by section
    (the heading above): ~ changed paragraphs as a word diff with their formatting changes,
    + added and - removed ones, and tables with their changed cells and added / removed rows
    and columns; at most `max_lines` lines."""
    out = _Lines(max_lines)
    out.add(f"{path} (docx): {summarize_document(diff)}")
    if not _render_document_parts(out, diff):
        return out.text(diff.change_count)
    section: str | None = None
    for n, change in enumerate(diff.changes):
        if (n == 0 or change.section != section) and not out.add(
            f"  in {_cut(change.section, 60)!r}:" if change.section else "  (before any heading):"
        ):
            break
        section = change.section
        if isinstance(change, ParagraphChange):
            if not out.add("    " + _paragraph_line(change), 1):
                break
            if not all(out.add(line) for line in _mark_lines(change)):
                break
        elif not _render_table(out, change):
            break
    return out.text(diff.change_count)


def _mark_lines(change: ParagraphChange) -> list[str]:
    """`+ bold 'Total'`: a run's bold, italic or underline only the new (+) or old (-) has."""
    marks = [("+", m) for m in change.marks_added] + [("-", m) for m in change.marks_removed]
    return [f"      {sign} {what} {_quote(text)}" for sign, (what, text) in marks]


def _render_document_parts(out: _Lines, diff: DocumentDiff) -> bool:
    """The lines before the body's: what a reviewer must not miss, then headers and footers,
    pictures, tracked changes and comments (one line each)."""
    lines = []
    if diff.status == "unchanged":
        return True
    if diff.tracked:
        them = "them as suggestions" if diff.tracked > 1 else "it as a suggestion"
        lines.append((f"  ! {_plural(diff.tracked, 'unaccepted tracked change')} in the new "
                      f"version: publishing it publishes {them}", 0))  # fmt: skip
    lines += [(f"  ! not read: {_cut(problem, 200)}", 0) for problem in diff.unread]
    for h in diff.headers:
        sign = {"added": "+", "removed": "-", "changed": "~"}[h.kind]
        text = _word_diff(h.old or "", h.new or "") if h.kind == "changed" else _cut(
            h.new or h.old or "", 200)  # fmt: skip
        lines.append((f"  {sign} {h.name}: {text}", 1))
    for i in diff.images:
        sign = {"added": "+", "removed": "-", "changed": "~"}[i.kind]
        if i.kind == "changed":
            about = (f"{i.old_size:,} -> {i.new_size:,} bytes, sha256 {(i.old_sha256 or '')[:12]}"
                     f" -> {(i.new_sha256 or '')[:12]}")  # fmt: skip
        else:
            size, sha = ((i.new_size, i.new_sha256) if i.kind == "added"
                         else (i.old_size, i.old_sha256))  # fmt: skip
            about = f"{size or 0:,} bytes, sha256 {(sha or '')[:12]}"
        lines.append((f"  {sign} picture {i.name} ({about})", 1))
    for r in diff.revisions:
        by = f" by {r.author!r}" if r.author else ""
        sign = "+" if r.kind == "added" else "-"
        lines.append((f"  {sign} tracked change: {r.revision} {_quote(r.text)}{by}", 1))
    for c in diff.comments:
        by = f" by {c.author!r}" if c.author else ""
        on = f" on {_quote(c.anchor)}" if c.anchor else ""
        sign = "+" if c.kind == "added" else "-"
        lines.append((f"  {sign} comment{by}{on}: {_quote(c.text, 200)}", 1))
    return all(out.add(line, n) for line, n in lines)


def _quote(text: str, width: int = VALUE_WIDTH) -> str:
    """A document's text on one line, quoted (unlike a cell's, '=' starts no formula)."""
    return repr(_cut(text, width))


def _paragraph_line(change: ParagraphChange) -> str:
    if change.kind != "changed":
        sign = "+" if change.kind == "added" else "-"
        style = change.new_style or change.old_style
        return f"{sign} [{style}] {_cut(change.new_text or change.old_text or '', 200)}"
    style = change.new_style
    if change.old_style != change.new_style:
        style = f"{change.old_style} -> {change.new_style}"
    if change.old_text == change.new_text:
        return f"~ [{style}] {_cut(change.new_text or '', 200)}"
    return f"~ [{style}] {_word_diff(change.old_text or '', change.new_text or '')}"


def _render_table(out: _Lines, change: TableChange) -> bool:
    def shape(s: tuple[int, int] | None) -> str:
        return f"{s[0]}x{s[1]}" if s else "?"

    if change.kind == "changed":
        sizes = shape(change.old_shape)
        if change.old_shape != change.new_shape:
            sizes += f" -> {shape(change.new_shape)}"
        header = f"    ~ table {change.new_table} ({sizes})"
    else:
        sign, number = (
            ("+", change.new_table) if change.kind == "added" else ("-", change.old_table)
        )
        header = f"    {sign} table {number} ({shape(change.new_shape or change.old_shape)})"
    if not out.add(header):
        return False
    for column_sign, columns in (("+", change.columns_added), ("-", change.columns_removed)):
        for column in columns:
            cells = _cut(" | ".join(repr(_cut(cell, 30)) for cell in column.cells), ROW_WIDTH)
            if not out.add(f"        {column_sign} column {column.col}: {cells}", 1):
                return False
    for c in change.cells:
        was = (f"r{c.old_row}" if c.old_row != c.new_row else "") + (
            f"c{c.old_col}" if c.old_col is not None and c.old_col != c.col else "")  # fmt: skip
        where = f"r{c.new_row}c{c.col}" + (f" (was {was})" if was else "")
        named = f" {c.named}" if c.named else ""
        if not out.add(f"        {where:<7}{named} {_show(c.old)} -> {_show(c.new)}", 1):
            return False
    for sign, rows in (("+", change.rows_added), ("-", change.rows_removed)):
        for row in rows:
            cells = " | ".join(repr(_cut(cell, 30)) for cell in row.cells)
            if not out.add(f"        {sign} row {row.row}: {_cut(cells, ROW_WIDTH)}", 1):
                return False
    return True
