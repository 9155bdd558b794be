"""The DOCX diff: `diff_docx` compares two loaded documents: the body block by block
(paragraphs on style, text and their runs' bold / italic / underline; tables cell by cell with
their rows and columns aligned), each change under the heading above it; then headers and
footers, comments, tracked changes and pictures. Pure: no I/O, no rendering.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

from runtime.doc_formats import Document, Paragraph, Table
from runtime.kinds.doc.diff.align import _row_similarity, _steps
from runtime.kinds.doc.diff.model import (
    ChangeKind,
    CommentChange,
    DocumentDiff,
    FileStatus,
    HeaderChange,
    ImageChange,
    ParagraphChange,
    RevisionChange,
    TableCellChange,
    TableChange,
    TableColumn,
    TableRow,
)


def _block_key(block: Paragraph | Table) -> tuple[Any, ...]:
    if isinstance(block, Paragraph):
        return ("p", block.style, block.text, tuple(block.marks))
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
    """The differences between two DOCX documents (None: it does not exist).

    Blocks are aligned like sheet rows, on (style, text, marks) for paragraphs and the full
    content of tables; a changed paragraph is paired with the most similar one nearby; paired
    tables get a cell diff with their columns and rows aligned. Headers and footers are compared
    by name, comments, tracked changes and pictures as collections (what one side has more of).
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
    diff = DocumentDiff(changes=changes, status="unchanged")
    _parts(diff, old or Document.model_construct(), new or Document.model_construct())
    # Tracked changes kept as they were are no change; a part the new version lost is one.
    lost = [p for p in getattr(new, "unread", []) if p not in getattr(old, "unread", [])]
    lost = lost if new is not None and old is not None else []
    changed = diff.change_count > 0 or bool(lost)
    status: FileStatus = (
        "added"
        if old is None
        else "removed"
        if new is None
        else "changed"
        if changed
        else "unchanged"
    )
    diff.status = status
    return diff


def _parts(diff: DocumentDiff, old: Document, new: Document) -> None:
    """Headers and footers, comments, tracked changes, pictures and unread parts into `diff`."""
    old_headers, new_headers = getattr(old, "headers", {}), getattr(new, "headers", {})
    for name in [*new_headers, *(n for n in old_headers if n not in new_headers)]:
        a, b = old_headers.get(name), new_headers.get(name)
        if a != b:
            kind: ChangeKind = "added" if a is None else "removed" if b is None else "changed"
            diff.headers.append(HeaderChange(kind=kind, name=name, old=a, new=b))
    old_comments = [(c.author, c.text, c.anchor) for c in getattr(old, "comments", [])]
    new_comments = [(c.author, c.text, c.anchor) for c in getattr(new, "comments", [])]
    for kind, (author, text, anchor) in _unmatched(old_comments, new_comments):
        diff.comments.append(CommentChange(kind=kind, author=author, text=text, anchor=anchor))
    old_revisions = [(r.kind, r.author, r.text) for r in getattr(old, "revisions", [])]
    new_revisions = [(r.kind, r.author, r.text) for r in getattr(new, "revisions", [])]
    for kind, (revision, author, text) in _unmatched(old_revisions, new_revisions):
        diff.revisions.append(
            RevisionChange(kind=kind, revision=revision, author=author, text=text)
        )
    diff.tracked = len(new_revisions)
    diff.images = _images(old, new)
    for side, doc in (("old version", old), ("new version", new)):
        diff.unread += [f"{side}: {problem}" for problem in getattr(doc, "unread", [])]


def _unmatched(old: list[Any], new: list[Any]) -> list[tuple[Any, Any]]:
    """("added", item) for what only `new` has (counting repeats), ("removed", item) for what
    only `old` has, each in its document order."""
    spare_old, spare_new = Counter(old) - Counter(new), Counter(new) - Counter(old)
    out: list[tuple[Any, Any]] = []
    for kind, items, spare in (("added", new, spare_new), ("removed", old, spare_old)):
        for item in items:
            if spare[item] > 0:
                spare[item] -= 1
                out.append((kind, item))
    return out


def _images(old: Document, new: Document) -> list[ImageChange]:
    """Pictures only one side has, by their bytes (a part renamed on saving is the same
    picture); one gone and one new under the same part name is that picture changed."""
    olds, news = list(getattr(old, "images", [])), list(getattr(new, "images", []))
    gone = [olds[n] for kind, n in _unmatched_at(olds, news) if kind == "removed"]
    out: list[ImageChange] = []
    for kind, n in _unmatched_at(olds, news):
        if kind == "removed":
            continue
        image = news[n]
        was = next((g for g in gone if g.name == image.name), None)
        if was is None:
            out.append(
                ImageChange(
                    kind="added", name=image.name, new_sha256=image.sha256, new_size=image.size
                )
            )
            continue
        gone.remove(was)
        out.append(
            ImageChange(
                kind="changed",
                name=image.name,
                old_sha256=was.sha256,
                new_sha256=image.sha256,
                old_size=was.size,
                new_size=image.size,
            )
        )
    for was in gone:
        out.append(
            ImageChange(kind="removed", name=was.name, old_sha256=was.sha256, old_size=was.size)
        )
    return out


def _unmatched_at(olds: list[Any], news: list[Any]) -> list[tuple[str, int]]:
    """_unmatched on pictures' bytes, as (kind, index in its side's list)."""
    old_keys = [(i.sha256, i.size, n) for n, i in enumerate(olds)]
    new_keys = [(i.sha256, i.size, n) for n, i in enumerate(news)]
    spare_old = Counter(k[:2] for k in old_keys) - Counter(k[:2] for k in new_keys)
    spare_new = Counter(k[:2] for k in new_keys) - Counter(k[:2] for k in old_keys)
    out: list[tuple[str, int]] = []
    for kind, keys, spare in (("added", new_keys, spare_new), ("removed", old_keys, spare_old)):
        for sha, size, n in keys:
            if spare[(sha, size)] > 0:
                spare[(sha, size)] -= 1
                out.append((kind, n))
    return out


def _paragraph_change(
    old: Paragraph | None, new: Paragraph | None, section: str | None
) -> ParagraphChange:
    kind: ChangeKind = "added" if old is None else "removed" if new is None else "changed"
    change = ParagraphChange(
        kind=kind,
        section=section,
        old_style=old.style if old else None,
        new_style=new.style if new else None,
        old_text=old.text if old else None,
        new_text=new.text if new else None,
    )
    if old is not None and new is not None:
        for sign, (what, text) in _unmatched(_marked(old), _marked(new)):
            (change.marks_added if sign == "added" else change.marks_removed).append((what, text))
    return change


def _marked(paragraph: Paragraph) -> list[tuple[str, str]]:
    """(what, text) for each bold / italic / underline span of a paragraph."""
    text = paragraph.text
    return [(what, text[a:b]) for what, a, b in getattr(paragraph, "marks", [])]


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
    change = TableChange(
        kind="changed",
        old_table=old_no,
        new_table=new_no,
        old_shape=_shape(old),
        new_shape=_shape(new),
    )
    columns = _column_steps(old, new)
    paired = [(i, j) for i, j in columns if i is not None and j is not None]
    for i, j in columns:
        if i is None:
            change.columns_added.append(TableColumn(col=j + 1, cells=[r[j] for r in new.rows]))  # type: ignore[index, operator]
        elif j is None:
            change.columns_removed.append(TableColumn(col=i + 1, cells=[r[i] for r in old.rows]))
    old_rows = [tuple(row[i] for i, _ in paired) for row in old.rows]
    new_rows = [tuple(row[j] for _, j in paired) for row in new.rows]
    for i, j in _steps(old_rows, new_rows, lambda i, j: _row_similarity(old_rows[i], new_rows[j])):
        if i is None:
            change.rows_added.append(TableRow(row=j + 1, cells=new.rows[j]))  # type: ignore[operator]
        elif j is None:
            change.rows_removed.append(TableRow(row=i + 1, cells=old.rows[i]))
        else:
            change.cells += _table_cells(
                new_no or 0,
                i,
                j,
                old.rows[i],
                new.rows[j],
                new.rows[0] if new.rows else [],
                paired,
            )
    return change if change.change_count else None


def _column_steps(old: Table, new: Table) -> list[tuple[int | None, int | None]]:
    """Old and new column indexes paired, with None for a column only one side has. Tables of
    one width keep their columns; otherwise columns are aligned like rows, on their cells
    (a column's similarity: the cells it shares with the other, as a multiset)."""
    old_width, new_width = _shape(old)[1], _shape(new)[1]
    if old_width == new_width:
        return [(c, c) for c in range(new_width)]
    old_cols = [tuple(row[c] for row in old.rows) for c in range(old_width)]
    new_cols = [tuple(row[c] for row in new.rows) for c in range(new_width)]
    counts = [Counter(x for x in col if x) for col in old_cols]
    new_counts = [Counter(x for x in col if x) for col in new_cols]

    def similarity(i: int, j: int) -> float:
        a, b = counts[i], new_counts[j]
        filled = max(sum(a.values()), sum(b.values()))
        common = sum((a & b).values())
        return float(common) if common and 2 * common >= filled else 0.0

    return list(_steps(old_cols, new_cols, similarity, equal=True))


def _table_cells(
    table: int,
    i: int,
    j: int,
    old: list[str],
    new: list[str],
    header: list[str],
    columns: list[tuple[int, int]],
) -> list[TableCellChange]:
    """The cells that differ in aligned rows, in paired (old, new) columns, named by the new
    table's headers (its first row for the column, its first column for the row) where it has
    them."""
    changes = []
    for oc, c in columns:
        a = old[oc] if oc < len(old) else None
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
                old_col=oc + 1 if oc != c else None,
            )
        )
    return changes
