"""The DOCX diff: `diff_docx` compares two loaded bodies block by block (paragraphs on style
and text, tables cell by cell with their rows aligned), each change under the heading above it.
Pure: no I/O, no rendering.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

from runtime.doc_formats import Document, Paragraph, Table
from runtime.kinds.doc.diff.align import _row_similarity, _steps
from runtime.kinds.doc.diff.model import (
    ChangeKind,
    DocumentDiff,
    FileStatus,
    ParagraphChange,
    TableCellChange,
    TableChange,
    TableRow,
)


def _block_key(block: Paragraph | Table) -> tuple[Any, ...]:
    if isinstance(block, Paragraph):
        return ("p", block.style, block.text)
    return ("t", tuple(tuple(row) for row in block.rows))


def _text_similarity(a: str, b: str) -> float:
    words = difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()
    if len(a) + len(b) > 4000:
        return words
    return max(words, difflib.SequenceMatcher(None, a, b, autojunk=False).ratio())


def _block_similarity(a: Paragraph | Table, b: Paragraph | Table) -> float:
    """0..1 for blocks of one kind (0 below one half): text for paragraphs, cells for tables."""
    if isinstance(a, Paragraph) and isinstance(b, Paragraph):
        ratio = 1.0 if a.text == b.text else _text_similarity(a.text, b.text)
    elif isinstance(a, Table) and isinstance(b, Table):
        old_cells = Counter(cell for row in a.rows for cell in row)
        new_cells = Counter(cell for row in b.rows for cell in row)
        size = max(sum(old_cells.values()), sum(new_cells.values()))
        ratio = sum((old_cells & new_cells).values()) / size if size else 1.0
    else:
        return 0.0
    return ratio if ratio >= 0.5 else 0.0


def _heading_level(style: str) -> int | None:
    if style == "Title":
        return 1
    if style.startswith("Heading ") and style[8:].isdigit():
        return int(style[8:])
    return None


def _sections(doc: Document) -> list[str | None]:
    """For each block, the text of the nearest heading at or above it."""
    sections: list[str | None] = []
    current = None
    for block in doc.blocks:
        if isinstance(block, Paragraph) and _heading_level(block.style) is not None:
            current = block.text
        sections.append(current)
    return sections


def _table_numbers(doc: Document) -> list[int]:
    numbers, n = [], 0
    for block in doc.blocks:
        n += isinstance(block, Table)
        numbers.append(n)
    return numbers


def diff_docx(old: Document | None, new: Document | None) -> DocumentDiff:
    """Paragraph and table differences between two DOCX bodies (None: it does not exist).

    Blocks are aligned like sheet rows, on (style, text) for paragraphs and the full content of
    tables; a changed paragraph is paired with the most similar one nearby; paired tables get a
    cell diff with their rows aligned.
    """
    if old is None and new is None:
        return DocumentDiff(status="unchanged")
    a = old.blocks if old is not None else []
    b = new.blocks if new is not None else []
    old_doc, new_doc = Document.model_construct(blocks=a), Document.model_construct(blocks=b)
    old_sections, new_sections = _sections(old_doc), _sections(new_doc)
    old_tables, new_tables = _table_numbers(old_doc), _table_numbers(new_doc)
    steps = _steps(
        [_block_key(x) for x in a],
        [_block_key(y) for y in b],
        lambda i, j: _block_similarity(a[i], b[j]),
        lambda i, j: type(a[i]) is type(b[j]),
    )
    changes: list[ParagraphChange | TableChange] = []
    for i, j in steps:
        section = new_sections[j] if j is not None else old_sections[i]  # type: ignore[index]
        x = a[i] if i is not None else None
        y = b[j] if j is not None else None
        if isinstance(x, Table) or isinstance(y, Table):
            change = _table_change(
                x,  # type: ignore[arg-type]
                y,  # type: ignore[arg-type]
                old_tables[i] if i is not None else None,
                new_tables[j] if j is not None else None,
            )
            if change is None:
                continue
            change.section = section
            changes.append(change)
        else:
            changes.append(_paragraph_change(x, y, section))  # type: ignore[arg-type]
    status: FileStatus = (
        "added"
        if old is None
        else "removed"
        if new is None
        else "changed"
        if changes
        else "unchanged"
    )
    return DocumentDiff(status=status, changes=changes)


def _paragraph_change(
    old: Paragraph | None, new: Paragraph | None, section: str | None
) -> ParagraphChange:
    kind: ChangeKind = "added" if old is None else "removed" if new is None else "changed"
    return ParagraphChange(
        kind=kind,
        section=section,
        old_style=old.style if old else None,
        new_style=new.style if new else None,
        old_text=old.text if old else None,
        new_text=new.text if new else None,
    )


def _shape(table: Table) -> tuple[int, int]:
    return len(table.rows), max((len(row) for row in table.rows), default=0)


def _table_change(
    old: Table | None, new: Table | None, old_no: int | None, new_no: int | None
) -> TableChange | None:
    if old is None or new is None:
        table = new or old
        rows = [TableRow(row=n, cells=cells) for n, cells in enumerate(table.rows, start=1)]  # type: ignore[union-attr]
        return TableChange(
            kind="added" if old is None else "removed",
            old_table=old_no,
            new_table=new_no,
            old_shape=_shape(old) if old else None,
            new_shape=_shape(new) if new else None,
            rows_added=rows if old is None else [],
            rows_removed=rows if new is None else [],
        )
    old_rows = [tuple(row) for row in old.rows]
    new_rows = [tuple(row) for row in new.rows]
    change = TableChange(
        kind="changed",
        old_table=old_no,
        new_table=new_no,
        old_shape=_shape(old),
        new_shape=_shape(new),
    )
    for i, j in _steps(old_rows, new_rows, lambda i, j: _row_similarity(old_rows[i], new_rows[j])):
        if i is None:
            change.rows_added.append(TableRow(row=j + 1, cells=new.rows[j]))  # type: ignore[operator]
        elif j is None:
            change.rows_removed.append(TableRow(row=i + 1, cells=old.rows[i]))
        else:
            change.cells += _table_cells(
                new_no or 0, i, j, old.rows[i], new.rows[j], new.rows[0] if new.rows else []
            )
    return change if change.change_count else None


def _table_cells(
    table: int, i: int, j: int, old: list[str], new: list[str], header: list[str]
) -> list[TableCellChange]:
    """The cells that differ in aligned rows, named by the new table's headers (its first
    row for the column, its first column for the row) where it has them."""
    changes = []
    for c in range(max(len(old), len(new))):
        a = old[c] if c < len(old) else None
        b = new[c] if c < len(new) else None
        if (a or "") == (b or ""):
            continue
        kind: ChangeKind = "added" if not a else "removed" if not b else "changed"
        changes.append(
            TableCellChange(
                table=table,
                old_row=i + 1,
                new_row=j + 1,
                col=c + 1,
                old=a,
                new=b,
                kind=kind,
                row_name=(new[0].strip() or None) if c > 0 and new else None,
                col_name=(header[c].strip() or None) if j > 0 and c < len(header) else None,
            )
        )
    return changes
