"""Format-aware diffs of documents, as a reviewer reads them before a doc job is published.

- `diff_xlsx` compares two workbooks cell by cell: sheets added and removed, rows inserted and
  deleted (aligned, so a row inserted in the middle is reported once, not as a change to every
  row below it), and changed cells with their old and new A1 addresses.
- `diff_docx` compares two DOCX bodies: paragraphs changed, added and removed, and for tables
  cells changed and rows added or removed.
- `diff_text` is a unified diff for Markdown and CSV.
- `render_workbook_diff` / `render_document_diff` turn a diff into plain text for a terminal or
  a Slack code block (capped at a number of lines; the diff objects keep everything), and
  `preview_workbook` / `preview_document` / `preview_text` give a short look at a file.
- `review` is the dispatcher: bytes of the old and new version in, a `Review` out. It is the
  only function here that calls runtime.doc_formats (to check and load); everything else takes
  loaded data and does no I/O.

How rows are aligned (sheet rows, DOCX blocks and table rows): the common head and tail are
dropped; rows that occur once on each side and keep their order anchor the alignment (as in
patience diff); the gaps between anchors are aligned the same way, and a gap without such rows
by difflib.SequenceMatcher (autojunk off). Equal rows produce nothing, so rows inserted or
deleted in the middle are reported once and nothing below them is. In a replaced block rows are
paired by similarity (most equal cells, at least half of the filled ones; blocks up to PAIR_CAP
row pairs), otherwise by position, and unpaired rows count as inserted or deleted. Cells of a
pair are compared by column index, so a column inserted in the middle shows as changes to the
cells right of it. Costs stay near-linear: SequenceMatcher only sees gaps up to SM_LIMIT rows,
and rows repeated thousands of times are junk to it (see _repeated).

Formulas are compared and shown as their text, with one exception: when rows are inserted or
deleted Excel rewrites the references to the rows that moved (=B5*C5 in row 5 becomes =B25*C25
in row 25, =SUM(B2:B100) becomes =SUM(B2:B120)); a formula whose new text is exactly that
rewrite of the old one, by the alignment's row mapping, is unchanged. For alignment a formula
counts without the row numbers of its own-sheet references. Any other difference is a change.
"""

from __future__ import annotations

import bisect
import csv
import difflib
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal

from openpyxl.utils import get_column_letter
from pydantic import BaseModel, Field

from runtime import doc_formats
from runtime.doc_formats import MAX_BYTES, Cell, Document, Paragraph, Table, Workbook

__all__ = [
    "MAX_LINES",
    "CellChange",
    "DocumentDiff",
    "ParagraphChange",
    "Review",
    "RowHunk",
    "SheetDiff",
    "TableCellChange",
    "TableChange",
    "TableRow",
    "WorkbookDiff",
    "diff_docx",
    "diff_text",
    "diff_xlsx",
    "preview_document",
    "preview_text",
    "preview_workbook",
    "render_document_diff",
    "render_workbook_diff",
    "review",
    "summarize_document",
    "summarize_workbook",
]

MAX_LINES = 400  # rendered diff lines, "... N more changes" included
PAIR_CAP = 10_000  # replaced blocks up to this many old x new rows are paired by similarity
MATCH_BUDGET = 200_000  # old x new occurrences of equal rows SequenceMatcher may compare
SM_LIMIT = 4_000  # old + new rows of a gap without unique rows that SequenceMatcher may align
MAX_DEPTH = 16  # levels of patience anchoring before SequenceMatcher takes over
VALUE_WIDTH = 60  # characters of a cell value shown in a rendered diff
ROW_WIDTH = 200  # characters of an inserted or deleted row shown on one line

FileStatus = Literal["added", "removed", "changed", "unchanged"]
ChangeKind = Literal["added", "removed", "changed"]


# --- the diff data -------------------------------------------------------------------------


class CellChange(BaseModel):
    """One cell that differs. Addresses are A1 style in the old and the new sheet (None on the
    side where the row does not exist); `old` / `new` are None for an empty cell."""

    sheet: str
    old_cell: str | None
    new_cell: str | None
    old: Cell
    new: Cell
    kind: ChangeKind


class RowHunk(BaseModel):
    """Consecutive rows of a sheet that were inserted, deleted, or paired and changed.

    Row ranges are 1-based and inclusive: `old_rows` in the old sheet, `new_rows` in the new.
    Inserted rows list their non-empty cells as added (new addresses), deleted rows as removed
    (old addresses), changed rows the cells that differ.
    """

    kind: Literal["changed", "inserted", "deleted"]
    old_rows: tuple[int, int] | None = None
    new_rows: tuple[int, int] | None = None
    changes: list[CellChange] = []

    @property
    def row_count(self) -> int:
        first, last = self.new_rows or self.old_rows or (1, 0)
        return last - first + 1


class SheetDiff(BaseModel):
    """The differences in one sheet; an added or removed sheet is one inserted / deleted hunk."""

    name: str
    status: Literal["added", "removed", "changed"]
    hunks: list[RowHunk] = []

    @property
    def changes(self) -> list[CellChange]:
        return [change for hunk in self.hunks for change in hunk.changes]


class WorkbookDiff(BaseModel):
    """What differs between two workbooks: sheets with differences in the new workbook's order,
    then removed sheets; `reordered` when the sheets both have are in another order."""

    status: FileStatus
    sheets: list[SheetDiff] = []
    reordered: bool = False

    def _hunks(self, kind: str) -> list[RowHunk]:
        return [h for s in self.sheets if s.status == "changed" for h in s.hunks if h.kind == kind]

    @property
    def cells_changed(self) -> int:
        """Cells that differ in rows both sheets have (not counting inserted / deleted rows)."""
        return sum(len(h.changes) for h in self._hunks("changed"))

    @property
    def rows_inserted(self) -> int:
        return sum(h.row_count for h in self._hunks("inserted"))

    @property
    def rows_deleted(self) -> int:
        return sum(h.row_count for h in self._hunks("deleted"))

    @property
    def sheets_added(self) -> list[str]:
        return [s.name for s in self.sheets if s.status == "added"]

    @property
    def sheets_removed(self) -> list[str]:
        return [s.name for s in self.sheets if s.status == "removed"]

    @property
    def change_count(self) -> int:
        """Every cell change, including the cells of inserted and deleted rows and sheets."""
        return sum(len(h.changes) for s in self.sheets for h in s.hunks)


class ParagraphChange(BaseModel):
    """A paragraph added, removed or changed (text or style). `section` is the heading above it
    (in the new document; in the old one for a removed paragraph)."""

    what: Literal["paragraph"] = "paragraph"
    kind: ChangeKind
    section: str | None = None
    old_style: str | None = None
    new_style: str | None = None
    old_text: str | None = None
    new_text: str | None = None


class TableCellChange(BaseModel):
    """One table cell that differs, in a row both versions of the table have (1-based)."""

    table: int
    old_row: int
    new_row: int
    col: int
    old: str | None
    new: str | None
    kind: ChangeKind


class TableRow(BaseModel):
    """A table row added (row number in the new table) or removed (in the old table)."""

    row: int
    cells: list[str]


class TableChange(BaseModel):
    """A table added, removed or changed. Tables are numbered from 1 in each document; shapes
    are (rows, columns). An added table lists all its rows as added, a removed one as removed."""

    what: Literal["table"] = "table"
    kind: ChangeKind
    section: str | None = None
    old_table: int | None = None
    new_table: int | None = None
    old_shape: tuple[int, int] | None = None
    new_shape: tuple[int, int] | None = None
    cells: list[TableCellChange] = []
    rows_added: list[TableRow] = []
    rows_removed: list[TableRow] = []

    @property
    def change_count(self) -> int:
        return len(self.cells) + len(self.rows_added) + len(self.rows_removed)


BlockChange = Annotated[ParagraphChange | TableChange, Field(discriminator="what")]


class DocumentDiff(BaseModel):
    """What differs between two DOCX bodies, in document order."""

    status: FileStatus
    changes: list[BlockChange] = []

    def _count(self, what: str, kind: str) -> int:
        return sum(1 for c in self.changes if c.what == what and c.kind == kind)

    @property
    def tables_changed(self) -> list[TableChange]:
        return [c for c in self.changes if isinstance(c, TableChange) and c.kind == "changed"]

    @property
    def change_count(self) -> int:
        return sum(c.change_count if isinstance(c, TableChange) else 1 for c in self.changes)


class Review(BaseModel):
    """One document as a reviewer sees it: the rendered diff, a preview, a one-line summary,
    and the structured diff (None for Markdown and CSV, whose diff is text)."""

    path: str
    format: str
    status: FileStatus
    summary: str
    diff_text: str
    preview: str
    diff: WorkbookDiff | DocumentDiff | None = None


# --- aligning rows and blocks ----------------------------------------------------------------

Step = tuple[int | None, int | None]  # (old index, new index); None on the side it is missing


def _opcodes(a: Sequence[Any], b: Sequence[Any]) -> list[tuple[str, int, int, int, int]]:
    """The non-equal opcodes ("replace", "delete", "insert") aligning a with b, in order."""
    ids: dict[Any, int] = {}
    a_ids = [ids.setdefault(key, len(ids)) for key in a]
    b_ids = [ids.setdefault(key, len(ids)) for key in b]
    out: list[tuple[str, int, int, int, int]] = []
    _align(a_ids, b_ids, 0, len(a_ids), 0, len(b_ids), out, 0)
    return out


def _align(
    a: list[int],
    b: list[int],
    alo: int,
    ahi: int,
    blo: int,
    bhi: int,
    out: list[tuple[str, int, int, int, int]],
    depth: int,
) -> None:
    """Align a[alo:ahi] with b[blo:bhi], appending non-equal opcodes to `out`.

    The common head and tail are dropped; then rows that occur once on each side and keep
    their order (patience anchors: the longest increasing run) split the range, and each gap
    is aligned the same way. A gap with no such rows goes to SequenceMatcher (autojunk off),
    which finds the longest common runs but is quadratic when it finds many short ones, so it
    only sees gaps up to SM_LIMIT rows; a bigger gap is one replaced block.
    """
    while alo < ahi and blo < bhi and a[alo] == b[blo]:
        alo, blo = alo + 1, blo + 1
    while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:
        ahi, bhi = ahi - 1, bhi - 1
    if alo == ahi or blo == bhi:
        if alo < ahi:
            out.append(("delete", alo, ahi, blo, blo))
        elif blo < bhi:
            out.append(("insert", alo, alo, blo, bhi))
        return
    anchors = _unique_anchors(a, b, alo, ahi, blo, bhi) if depth < MAX_DEPTH else []
    if anchors:
        i, j = alo, blo
        for ai, bj in [*anchors, (ahi, bhi)]:
            _align(a, b, i, ai, j, bj, out, depth + 1)
            i, j = ai + 1, bj + 1
        return
    if (ahi - alo) + (bhi - blo) > SM_LIMIT:
        out.append(("replace", alo, ahi, blo, bhi))
        return
    sub_a, sub_b = a[alo:ahi], b[blo:bhi]
    junk = _repeated(sub_a, sub_b)
    matcher = difflib.SequenceMatcher(
        junk.__contains__ if junk else None, sub_a, sub_b, autojunk=False
    )
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            out.append((tag, i1 + alo, i2 + alo, j1 + blo, j2 + blo))


def _unique_anchors(
    a: list[int], b: list[int], alo: int, ahi: int, blo: int, bhi: int
) -> list[tuple[int, int]]:
    """Pairs (i, j) of rows occurring once in each range, the longest run in the same order."""
    count_a = Counter(a[alo:ahi])
    count_b = Counter(b[blo:bhi])
    where_b = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1}
    pairs = [(i, where_b[a[i]]) for i in range(alo, ahi) if count_a[a[i]] == 1 and a[i] in where_b]
    tails: list[int] = []  # smallest j ending an increasing run of each length
    ends: list[int] = []  # index in pairs of that j
    before = [-1] * len(pairs)
    for n, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            ends.append(n)
        else:
            tails[k], ends[k] = j, n
        before[n] = ends[k - 1] if k else -1
    run: list[tuple[int, int]] = []
    n = ends[-1] if ends else -1
    while n >= 0:
        run.append(pairs[n])
        n = before[n]
    return run[::-1]


def _repeated(a: Sequence[Any], b: Sequence[Any]) -> set[Any]:
    """Keys repeated so often on both sides that matching them would be quadratic.

    SequenceMatcher (autojunk off) compares every old occurrence of a key with every new one,
    so a sheet with thousands of identical rows would take minutes. The keys with the most
    old x new occurrences, until the rest is under MATCH_BUDGET, are treated as junk: they do
    not start a match, but still extend one, so runs of them next to other rows still align.
    Ordinary sheets have no such keys and are aligned exactly.
    """
    old_counts, new_counts = Counter(a), Counter(b)
    cost = {key: n * new_counts[key] for key, n in old_counts.items() if key in new_counts}
    total = sum(cost.values())
    junk: set[Any] = set()
    for key, pairs in sorted(cost.items(), key=lambda item: -item[1]):
        if total <= MATCH_BUDGET:
            break
        junk.add(key)
        total -= pairs
    return junk


def _steps(
    old_keys: Sequence[Any],
    new_keys: Sequence[Any],
    similarity: Callable[[int, int], float],
    compatible: Callable[[int, int], bool] | None = None,
    *,
    equal: bool = False,
) -> Iterator[Step]:
    """Every old / new position that is not part of an equal run, in order; with `equal`,
    the pairs of equal runs too."""
    i = j = 0
    for tag, i1, i2, j1, j2 in _opcodes(old_keys, new_keys):
        if equal:
            yield from zip(range(i, i1), range(j, j1), strict=True)
        i, j = i2, j2
        if tag == "delete":
            yield from ((i, None) for i in range(i1, i2))
        elif tag == "insert":
            yield from ((None, j) for j in range(j1, j2))
        else:
            yield from _replace_steps(i1, i2, j1, j2, similarity, compatible)
    if equal:
        yield from zip(range(i, len(old_keys)), range(j, len(new_keys)), strict=True)


def _replace_steps(
    i1: int,
    i2: int,
    j1: int,
    j2: int,
    similarity: Callable[[int, int], float],
    compatible: Callable[[int, int], bool] | None,
) -> Iterator[Step]:
    """A replaced block: similar pairs first, positions in the gaps between them."""
    pairs = _similar_pairs(i1, i2, j1, j2, similarity) if (i2 - i1) * (j2 - j1) <= PAIR_CAP else []
    i, j = i1, j1
    for pi, pj in [*pairs, (i2, j2)]:
        yield from _positional_steps(i, pi, j, pj, compatible)
        if pi < i2:
            yield pi, pj
        i, j = pi + 1, pj + 1


def _positional_steps(
    i1: int, i2: int, j1: int, j2: int, compatible: Callable[[int, int], bool] | None
) -> Iterator[Step]:
    n = min(i2 - i1, j2 - j1)
    for k in range(n):
        if compatible is None or compatible(i1 + k, j1 + k):
            yield i1 + k, j1 + k
        else:
            yield i1 + k, None
            yield None, j1 + k
    yield from ((i, None) for i in range(i1 + n, i2))
    yield from ((None, j) for j in range(j1 + n, j2))


def _similar_pairs(
    i1: int, i2: int, j1: int, j2: int, similarity: Callable[[int, int], float]
) -> list[tuple[int, int]]:
    """The in-order pairing of old[i1:i2] with new[j1:j2] with the most total similarity."""
    n, m = i2 - i1, j2 - j1
    score = [[similarity(i1 + a, j1 + b) for b in range(m)] for a in range(n)]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for a in range(n):
        above, row, scores = best[a], best[a + 1], score[a]
        for b in range(m):
            value = max(above[b + 1], row[b])
            if scores[b] > 0 and above[b] + scores[b] > value:
                value = above[b] + scores[b]
            row[b + 1] = value
    pairs: list[tuple[int, int]] = []
    a, b = n, m
    while a and b:
        s = score[a - 1][b - 1]
        if s > 0 and best[a][b] == best[a - 1][b - 1] + s:
            pairs.append((i1 + a - 1, j1 + b - 1))
            a, b = a - 1, b - 1
        elif best[a][b] == best[a - 1][b]:
            a -= 1
        else:
            b -= 1
    return pairs[::-1]


def _row_similarity(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Equal non-empty cells at the same column, if at least half of the filled ones; else 0."""
    matches = sum(1 for x, y in zip(a, b, strict=False) if x == y and x is not None and x != "")
    filled = max(_filled(a), _filled(b))
    return float(matches) if matches and 2 * matches >= filled else 0.0


def _filled(row: Sequence[Any]) -> int:
    return sum(1 for x in row if x is not None and x != "")


def _runs(items: Iterator[tuple[Step, Any]]) -> Iterator[list[tuple[Step, Any]]]:
    """(step, payload) grouped into runs of one kind (paired, inserted, deleted) at
    consecutive rows."""
    run: list[tuple[Step, Any]] = []
    for item in items:
        step = item[0]
        if run and _kind(step) == _kind(run[-1][0]) and _follows(run[-1][0], step):
            run.append(item)
            continue
        if run:
            yield run
        run = [item]
    if run:
        yield run


def _kind(step: Step) -> Literal["changed", "inserted", "deleted"]:
    return "deleted" if step[1] is None else "inserted" if step[0] is None else "changed"


def _follows(prev: Step, step: Step) -> bool:
    """Whether `step` is the row after `prev` on each side both have."""
    return all(p is None or s == p + 1 for p, s in zip(prev, step, strict=True) if s is not None)


# --- workbooks -------------------------------------------------------------------------------

# A1 references in a formula. String literals and quoted sheet names are matched (and kept)
# so that nothing inside them counts; group 1 is "!" for a reference to another sheet.
_REF = re.compile(
    r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'"
    r"|(!)?(?<![A-Za-z0-9_.$])(\$?[A-Z]{1,3}\$?)([0-9]{1,7})(?![0-9A-Za-z_(!])"
)


def _own_reference(m: re.Match[str]) -> bool:
    """Whether a _REF match is a reference to a row of the formula's own sheet."""
    column = m.group(2)
    if column is None or m.group(1):  # a literal, or another sheet's cell
        return False
    letters = column.replace("$", "")
    return not (len(letters) == 3 and letters > "XFD")  # a name like TAX2023, not a cell


def _formula_shape(formula: str) -> str:
    """The formula without the row numbers of references to its own sheet: the same wherever
    rows moved (=B5*C5 in row 5 and =B25*C25 in row 25 are both =B_*C_)."""
    return _REF.sub(lambda m: f"{m.group(2)}\x00" if _own_reference(m) else m.group(0), formula)


class _RowMap:
    """Where each old row went in the new sheet (from the alignment), to move formulas."""

    def __init__(self, old_rows: int, pairs: list[tuple[int, int]]) -> None:
        self.to_new = [0] * old_rows  # 1-based new row, 0 for a deleted row
        for i, j in pairs:
            self.to_new[i] = j + 1
        last = max(pairs, default=(old_rows - 1, old_rows - 1))
        self.tail_shift = last[1] - last[0]  # for rows below the data
        self.moved: dict[str, str | None] = {}

    def move(self, formula: str) -> str | None:
        """The formula with its own-sheet row numbers moved as Excel moves them when rows are
        inserted or deleted; None if it refers to a deleted row."""
        if formula in self.moved:
            return self.moved[formula]
        deleted = False

        def moved(m: re.Match[str]) -> str:
            nonlocal deleted
            if not _own_reference(m):
                return m.group(0)
            row = int(m.group(3))
            new_row = self.to_new[row - 1] if row <= len(self.to_new) else row + self.tail_shift
            deleted = deleted or not new_row
            return f"{m.group(2)}{new_row}"

        result = _REF.sub(moved, formula)
        self.moved[formula] = None if deleted else result
        return self.moved[formula]


def _same_cell(a: Cell, b: Cell, rows: _RowMap) -> bool:
    """Whether an old and a new cell of aligned rows hold the same thing: equal values of one
    type family (TRUE is not 1), or a formula that Excel would have rewritten into the new one
    when the rows above or inside its ranges were inserted or deleted."""
    if a == b:
        return (a.__class__ is bool) == (b.__class__ is bool)
    if a.__class__ is str and b.__class__ is str and a[:1] == "=" == b[:1]:  # type: ignore[index]
        return rows.move(a) == b  # type: ignore[arg-type]
    return False


class _Keys:
    """A sheet's rows as hashable keys for alignment (booleans tagged, formulas as their
    shape), and per row the columns holding a formula (None when there are none)."""

    def __init__(self, rows: list[list[Cell]], shapes: dict[str, str]) -> None:
        self.keys: list[tuple[Any, ...]] = []
        self.formulas: list[list[int] | None] = []
        for row in rows:
            special = [
                c
                for c, v in enumerate(row)
                if v.__class__ is bool or (v.__class__ is str and v.startswith("="))  # type: ignore[union-attr]
            ]
            if not special:
                self.keys.append(tuple(row))
                self.formulas.append(None)
                continue
            key: list[Any] = list(row)
            formulas = []
            for c in special:
                value = row[c]
                if isinstance(value, bool):
                    key[c] = ("bool", value)
                else:
                    if (shape := shapes.get(value)) is None:  # type: ignore[arg-type]
                        shape = shapes[value] = _formula_shape(value)  # type: ignore[index, arg-type]
                    key[c] = shape
                    formulas.append(c)
            self.keys.append(tuple(key))
            self.formulas.append(formulas or None)


def _address(col: int, row: int) -> str:
    """0-based column and row as an A1 address."""
    return f"{get_column_letter(col + 1)}{row + 1}"


def diff_xlsx(old: Workbook | None, new: Workbook | None) -> WorkbookDiff:
    """Cell-level differences between two workbooks (None: the workbook does not exist).

    Sheets are matched by name (a renamed sheet is one removed and one added). See the module
    docstring for how rows are aligned.
    """
    if old is None and new is None:
        return WorkbookDiff(status="unchanged")
    old_sheets = old.sheets if old is not None else {}
    new_sheets = new.sheets if new is not None else {}
    sheets: list[SheetDiff] = []
    for name, rows in new_sheets.items():
        if name not in old_sheets:
            sheets.append(_whole_sheet(name, rows, "added"))
        elif (diff := _diff_sheet(name, old_sheets[name], rows)) is not None:
            sheets.append(diff)
    sheets += [
        _whole_sheet(n, rows, "removed") for n, rows in old_sheets.items() if n not in new_sheets
    ]
    common_old = [n for n in old_sheets if n in new_sheets]
    common_new = [n for n in new_sheets if n in old_sheets]
    reordered = common_old != common_new
    status: FileStatus = (
        "added"
        if old is None
        else "removed"
        if new is None
        else "changed"
        if sheets or reordered
        else "unchanged"
    )
    return WorkbookDiff(status=status, sheets=sheets, reordered=reordered)


def _whole_sheet(
    name: str, rows: list[list[Cell]], status: Literal["added", "removed"]
) -> SheetDiff:
    added = status == "added"
    changes = [
        CellChange(
            sheet=name,
            old_cell=None if added else _address(c, r),
            new_cell=_address(c, r) if added else None,
            old=None if added else value,
            new=value if added else None,
            kind=status,
        )
        for r, row in enumerate(rows)
        for c, value in enumerate(row)
        if value is not None
    ]
    hunks = []
    if rows:
        span = (1, len(rows))
        hunk = RowHunk(
            kind="inserted" if added else "deleted",
            old_rows=None if added else span,
            new_rows=span if added else None,
            changes=changes,
        )
        hunks.append(hunk)
    return SheetDiff(name=name, status=status, hunks=hunks)


def _diff_sheet(name: str, old: list[list[Cell]], new: list[list[Cell]]) -> SheetDiff | None:
    shapes: dict[str, str] = {}
    a, b = _Keys(old, shapes), _Keys(new, shapes)

    def similar(i: int, j: int) -> float:
        return _row_similarity(a.keys[i], b.keys[j])

    steps = list(_steps(a.keys, b.keys, similar, equal=True))
    rows = _RowMap(len(old), [(i, j) for i, j in steps if i is not None and j is not None])
    hunks = []
    for run in _runs(_sheet_changes(name, old, new, a, b, steps, rows)):
        (i0, j0), _ = run[0]
        (i1, j1), _ = run[-1]
        hunk = RowHunk(
            kind=_kind(run[0][0]),
            old_rows=None if i0 is None or i1 is None else (i0 + 1, i1 + 1),
            new_rows=None if j0 is None or j1 is None else (j0 + 1, j1 + 1),
            changes=[change for _, changes in run for change in changes],
        )
        hunks.append(hunk)
    return SheetDiff(name=name, status="changed", hunks=hunks) if hunks else None


def _sheet_changes(
    name: str,
    old: list[list[Cell]],
    new: list[list[Cell]],
    a: _Keys,
    b: _Keys,
    steps: list[Step],
    rows: _RowMap,
) -> Iterator[tuple[Step, list[CellChange]]]:
    """The steps that change something, with their cell changes. Aligned rows with equal keys
    differ only in formulas (see _same_cell)."""
    for i, j in steps:
        if i is not None and j is not None:
            if a.keys[i] == b.keys[j]:
                columns = a.formulas[i]
                if columns is None or all(old[i][c] == new[j][c] for c in columns):
                    continue
                changes = _row_changes(name, i, j, old[i], new[j], rows, columns)
            else:
                changes = _row_changes(name, i, j, old[i], new[j], rows)
            if changes:
                yield (i, j), changes
        elif j is not None:
            yield (i, j), _row_cells(name, j, new[j], "added")
        elif i is not None:
            yield (i, j), _row_cells(name, i, old[i], "removed")


def _row_cells(
    sheet: str, r: int, row: list[Cell], kind: Literal["added", "removed"]
) -> list[CellChange]:
    added = kind == "added"
    return [
        CellChange(
            sheet=sheet,
            old_cell=None if added else _address(c, r),
            new_cell=_address(c, r) if added else None,
            old=None if added else value,
            new=value if added else None,
            kind=kind,
        )
        for c, value in enumerate(row)
        if value is not None
    ]


def _row_changes(
    sheet: str,
    i: int,
    j: int,
    old: list[Cell],
    new: list[Cell],
    rows: _RowMap,
    columns: list[int] | None = None,
) -> list[CellChange]:
    """The cells that differ between aligned rows (only `columns` when given)."""
    changes = []
    for c in range(max(len(old), len(new))) if columns is None else columns:
        x = old[c] if c < len(old) else None
        y = new[c] if c < len(new) else None
        if _same_cell(x, y, rows):
            continue
        kind: ChangeKind = "added" if x is None else "removed" if y is None else "changed"
        changes.append(
            CellChange(
                sheet=sheet,
                old_cell=_address(c, i),
                new_cell=_address(c, j),
                old=x,
                new=y,
                kind=kind,
            )
        )
    return changes


# --- documents -------------------------------------------------------------------------------


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
            change.cells += _table_cells(new_no or 0, i, j, old.rows[i], new.rows[j])
    return change if change.change_count else None


def _table_cells(
    table: int, i: int, j: int, old: list[str], new: list[str]
) -> list[TableCellChange]:
    changes = []
    for c in range(max(len(old), len(new))):
        a = old[c] if c < len(old) else None
        b = new[c] if c < len(new) else None
        if (a or "") == (b or ""):
            continue
        kind: ChangeKind = "added" if not a else "removed" if not b else "changed"
        changes.append(
            TableCellChange(
                table=table, old_row=i + 1, new_row=j + 1, col=c + 1, old=a, new=b, kind=kind
            )
        )
    return changes


# --- text --------------------------------------------------------------------------------------


def diff_text(old: str | None, new: str | None, path: str) -> str:
    """A unified diff (3 lines of context) with a/path and b/path headers; "" when equal.

    Line endings are ignored (a file rewritten with CRLF is not all changed). A new file is
    every line added; a deleted one every line removed.
    """
    a = old.splitlines() if old is not None else []
    b = new.splitlines() if new is not None else []
    lines = list(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", lineterm=""))
    return "\n".join(lines) + "\n" if lines else ""


def _text_summary(old: str | None, new: str | None, diff: str) -> str:
    if old is None:
        return f"new file: {_plural(len((new or '').splitlines()), 'line')}"
    if new is None:
        return f"file deleted: {_plural(len(old.splitlines()), 'line')}"
    added = removed = 0
    for line in diff.splitlines()[2:]:
        added += line.startswith("+")
        removed += line.startswith("-")
    if not added and not removed:
        return "no changes"
    return f"{_plural(added, 'line')} added, {_plural(removed, 'line')} removed"


# --- rendering ---------------------------------------------------------------------------------


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cut(text: str, width: int) -> str:
    text = text.replace("\r\n", "\n").replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _show(value: Cell, width: int = VALUE_WIDTH) -> str:
    """A cell value for a diff line: 'text', 12, 1.5, TRUE, =SUM(A1:A3), (empty)."""
    if value is None or value == "":
        return "(empty)"
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return _cut(value, width) if value.startswith("=") else repr(_cut(value, width))
    return str(value)


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def summarize_workbook(diff: WorkbookDiff) -> str:
    """One line: "3 cells changed, 2 rows inserted, sheet 'Q4' added"."""
    if diff.status == "unchanged":
        return "no changes"
    if diff.status in ("added", "removed"):
        what = "new workbook" if diff.status == "added" else "workbook deleted"
        cells = diff.change_count
        return f"{what}: {_plural(len(diff.sheets), 'sheet')}, {_plural(cells, 'cell')}"
    parts = []
    if diff.cells_changed:
        parts.append(f"{_plural(diff.cells_changed, 'cell')} changed")
    if diff.rows_inserted:
        parts.append(f"{_plural(diff.rows_inserted, 'row')} inserted")
    if diff.rows_deleted:
        parts.append(f"{_plural(diff.rows_deleted, 'row')} deleted")
    for names, verb in ((diff.sheets_added, "added"), (diff.sheets_removed, "removed")):
        if names:
            parts.append(f"{'sheet' if len(names) == 1 else 'sheets'} {_names(names)} {verb}")
    if diff.reordered:
        parts.append("sheets reordered")
    return ", ".join(parts)


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
                f"... {_plural(more, 'more change')} not shown"
                if more
                else "... more lines not shown"
            )
        return "\n".join(self.lines) + "\n"


def render_workbook_diff(path: str, diff: WorkbookDiff, max_lines: int = MAX_LINES) -> str:
    """The diff as plain text: a summary line, then per sheet its changed cells (address, old ->
    new) and inserted / deleted rows with their cells, at most `max_lines` lines."""
    out = _Lines(max_lines)
    out.add(f"{path} (xlsx): {summarize_workbook(diff)}")
    for sheet in diff.sheets:
        if sheet.status == "changed":
            title = f"  sheet {sheet.name!r}"
        else:
            rows = sum(h.row_count for h in sheet.hunks)
            title = f"  sheet {sheet.name!r} {sheet.status} ({_plural(rows, 'row')})"
        if not out.add(title):
            break
        for hunk in sheet.hunks:
            if not _render_hunk(out, hunk, with_header=sheet.status == "changed"):
                break
    return out.text(diff.change_count)


def _rows_label(span: tuple[int, int]) -> str:
    return f"row {span[0]}" if span[0] == span[1] else f"rows {span[0]}-{span[1]}"


def _render_hunk(out: _Lines, hunk: RowHunk, with_header: bool) -> bool:
    if hunk.kind == "changed":
        for c in hunk.changes:
            where = c.new_cell if c.old_cell == c.new_cell else f"{c.new_cell} (was {c.old_cell})"
            if not out.add(f"    {where:<7} {_show(c.old)} -> {_show(c.new)}", 1):
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


def summarize_document(diff: DocumentDiff) -> str:
    """One line: "1 paragraph changed, 2 paragraphs added, 1 table changed (3 cells changed)"."""
    if diff.status == "unchanged":
        return "no changes"
    if diff.status in ("added", "removed"):
        what = "new document" if diff.status == "added" else "document deleted"
        paragraphs = sum(1 for c in diff.changes if c.what == "paragraph")
        tables = len(diff.changes) - paragraphs
        return f"{what}: {_plural(paragraphs, 'paragraph')}, {_plural(tables, 'table')}"
    parts = []
    for kind in ("changed", "added", "removed"):
        if n := diff._count("paragraph", kind):
            parts.append(f"{_plural(n, 'paragraph')} {kind}")
    for kind in ("changed", "added", "removed"):
        if n := diff._count("table", kind):
            parts.append(f"{_plural(n, 'table')} {kind}")
            if kind == "changed":
                parts[-1] += f" ({_table_details(diff.tables_changed)})"
    return ", ".join(parts)


def _table_details(tables: list[TableChange]) -> str:
    """What changed inside tables, e.g. "3 cells changed, 1 row added"."""
    details = []
    if cells := sum(len(t.cells) for t in tables):
        details.append(f"{_plural(cells, 'cell')} changed")
    if rows := sum(len(t.rows_added) for t in tables):
        details.append(f"{_plural(rows, 'row')} added")
    if rows := sum(len(t.rows_removed) for t in tables):
        details.append(f"{_plural(rows, 'row')} removed")
    return ", ".join(details)


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
    """The diff as plain text: a summary line, then changes by section (the heading above):
    ~ changed paragraphs as a word diff, + added and - removed ones, and tables with their
    changed cells and added / removed rows; at most `max_lines` lines."""
    out = _Lines(max_lines)
    out.add(f"{path} (docx): {summarize_document(diff)}")
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
        elif not _render_table(out, change):
            break
    return out.text(diff.change_count)


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
    for c in change.cells:
        where = f"r{c.new_row}c{c.col}" + (f" (was r{c.old_row})" if c.old_row != c.new_row else "")
        if not out.add(f"        {where:<7} {_show(c.old)} -> {_show(c.new)}", 1):
            return False
    for sign, rows in (("+", change.rows_added), ("-", change.rows_removed)):
        for row in rows:
            cells = " | ".join(repr(_cut(cell, 30)) for cell in row.cells)
            if not out.add(f"        {sign} row {row.row}: {_cut(cells, ROW_WIDTH)}", 1):
                return False
    return True


# --- previews ------------------------------------------------------------------------------------


def _preview_value(value: Any, width: int) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "TRUE" if value else "FALSE"
    return _cut(str(value), width)


def _grid(rows: list[list[Any]], first_row: int = 1, cols: int = 8, width: int = 20) -> list[str]:
    """Rows as an aligned text table with column letters and row numbers."""
    ncols = min(max((len(r) for r in rows), default=0), cols)
    more = any(len(r) > cols for r in rows)
    table = [[get_column_letter(c + 1) for c in range(ncols)]]
    table += [
        [_preview_value(r[c] if c < len(r) else None, width) for c in range(ncols)] for r in rows
    ]
    widths = [max(len(row[c]) for row in table) for c in range(ncols)]
    label = len(str(first_row + len(rows) - 1))
    lines = []
    for n, row in enumerate(table):
        number = "" if n == 0 else str(first_row + n - 1)
        cells = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True))
        lines.append(f"  {number:>{label}}  {cells}{'  …' if more else ''}".rstrip())
    return lines


def preview_workbook(wb: Workbook, rows: int = 5, sheets: int = 3) -> str:
    """The first `rows` rows of the first `sheets` sheets, as aligned text tables."""
    lines: list[str] = []
    names = list(wb.sheets)
    for name in names[:sheets]:
        data = wb.sheets[name]
        if not data:
            lines.append(f"sheet {name!r} (empty)")
            continue
        width = max(len(r) for r in data)
        lines.append(f"sheet {name!r} ({_plural(len(data), 'row')} x {_plural(width, 'column')})")
        lines += _grid(data[:rows])
        if len(data) > rows:
            lines.append(f"  … {_plural(len(data) - rows, 'more row')}")
    if len(names) > sheets:
        lines.append(f"… {_plural(len(names) - sheets, 'more sheet')}: {_names(names[sheets:])}")
    return "\n".join(lines or ["(no sheets)"]) + "\n"


def _heading_level(style: str) -> int | None:
    if style == "Title":
        return 1
    if style.startswith("Heading ") and style[8:].isdigit():
        return int(style[8:])
    return None


def _outline(headings: list[tuple[int, str]], limit: int = 40) -> list[str]:
    lines = ["  " * (level - 1) + _cut(text, 80) for level, text in headings[:limit]]
    if len(headings) > limit:
        lines.append(f"… {_plural(len(headings) - limit, 'more heading')}")
    return lines


def preview_document(doc: Document) -> str:
    """The headings outline (indented by level), then the number of paragraphs and tables."""
    headings = []
    for p in doc.paragraphs:
        if (level := _heading_level(p.style)) is not None:
            headings.append((level, p.text))
    lines = _outline(headings)
    if not headings:
        first = next((p.text for p in doc.paragraphs if p.text.strip()), None)
        lines = ["(no headings)"] + ([f"starts: {_cut(first, 80)}"] if first else [])
    counts = f"{_plural(len(doc.paragraphs), 'paragraph')}, {_plural(len(doc.tables), 'table')}"
    return "\n".join([*lines, counts]) + "\n"


_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_MD_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def preview_text(path: str, text: str) -> str:
    """Markdown: the headings outline and line count. CSV: the first 5 rows as a table and the
    row count. Anything else: the first 5 lines."""
    fmt = doc_formats.format_of(path)
    lines = text.splitlines()
    if fmt == "markdown":
        headings, fenced = [], False
        for line in lines:
            if _MD_FENCE.match(line):
                fenced = not fenced
            elif not fenced and (m := _MD_HEADING.match(line)):
                headings.append((len(m[1]), m[2]))
        outline = _outline(headings) or ["(no headings)"]
        return "\n".join([*outline, _plural(len(lines), "line")]) + "\n"
    if fmt == "csv":
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error:
            rows = [[line] for line in lines]
        out = [f"{_plural(len(rows), 'row')} (header included)", *_grid(rows[:5])]
        if len(rows) > 5:
            out.append(f"  … {_plural(len(rows) - 5, 'more row')}")
        return "\n".join(out) + "\n"
    return "\n".join([_cut(line, 120) for line in lines[:5]]) + "\n"


# --- the dispatcher ------------------------------------------------------------------------------


# Workbooks and Word documents: loader, diff, one-line summary, rendering, preview.
_STRUCTURED: dict[str, tuple[Callable[..., Any], ...]] = {
    "xlsx": (
        doc_formats.load_xlsx, diff_xlsx, summarize_workbook, render_workbook_diff,
        preview_workbook,
    ),
    "docx": (
        doc_formats.load_docx, diff_docx, summarize_document, render_document_diff,
        preview_document,
    ),
}  # fmt: skip


def review(
    path: str,
    old: bytes | None,
    new: bytes | None,
    max_bytes: int = MAX_BYTES,
    *,
    max_lines: int = MAX_LINES,
) -> Review | None:
    """The review of one document from its old and new bytes (None: it did not / does not
    exist), or None when `path` is not a format reviewed here (fall back to git's diff).

    Both versions are checked and loaded by runtime.doc_formats, so a bad file raises
    DocumentError naming the path ("(old version)" for the version before the job).
    """
    fmt = doc_formats.format_of(path)
    if fmt is None:
        return None
    if old is None and new is None:
        raise ValueError(f"review of {path} needs an old or a new version")
    if fmt in _STRUCTURED:
        load, differ, summarize, render, preview = _STRUCTURED[fmt]
        old_data = _load(load, path, old, max_bytes)
        new_data = _load(load, path, new, max_bytes, old_version=False)
        diff = differ(old_data, new_data)
        return Review(
            path=path,
            format=fmt,
            status=diff.status,
            summary=summarize(diff),
            diff_text=render(path, diff, max_lines),
            preview=preview(new_data or old_data),
            diff=diff,
        )
    old_text = _load(doc_formats.load_text, path, old, max_bytes)
    new_text = _load(doc_formats.load_text, path, new, max_bytes, old_version=False)
    text = diff_text(old_text, new_text, path)
    summary = _text_summary(old_text, new_text, text)
    status: FileStatus = (
        "added" if old is None else "removed" if new is None else "changed" if text else "unchanged"
    )
    return Review(
        path=path,
        format=fmt,
        status=status,
        summary=summary,
        diff_text=_cap_lines(text, max_lines),
        preview=preview_text(path, new_text if new_text is not None else old_text or ""),
    )


def _load(
    loader: Callable[[str, bytes, int], Any],
    path: str,
    data: bytes | None,
    max_bytes: int,
    *,
    old_version: bool = True,
) -> Any:
    """loader(path, data), None for no data; errors about the old version say so."""
    if data is None:
        return None
    try:
        return loader(path, data, max_bytes)
    except doc_formats.DocumentError as exc:
        if not old_version:
            raise
        message = exc.message.replace(path, f"{path} (old version)", 1)
        raise doc_formats.DocumentError(message, hint=exc.hint) from exc


def _cap_lines(text: str, max_lines: int) -> str:
    lines = text.splitlines()
    if len(lines) <= max_lines:
        return text
    keep = max(max_lines - 1, 1)
    return "\n".join([*lines[:keep], f"... {_plural(len(lines) - keep, 'more diff line')}"]) + "\n"
