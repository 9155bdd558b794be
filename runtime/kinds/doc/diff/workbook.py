"""The workbook diff: `diff_xlsx` compares two loaded workbooks cell by cell, sheets matched
by name (or paired as renamed by their rows), columns aligned when the sheets' widths differ
(inserted and deleted columns reported once), rows aligned by runtime.kinds.doc.diff.align and
formulas compared by meaning by runtime.kinds.doc.diff.formulas (their rows and columns moved
as Excel moves them). Pure: no I/O, no rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from openpyxl.utils import get_column_letter

from runtime.doc_formats import Cell, Workbook
from runtime.doc_formatting import SheetLook
from runtime.kinds.doc.diff.align import Step, _kind, _row_similarity, _runs, _steps
from runtime.kinds.doc.diff.formatting import diff_looks
from runtime.kinds.doc.diff.formulas import (
    SheetMoves,
    _formula_shape,
    _loose_shape,
    _Moves,
    _RowMap,
    _same_cell,
    move_columns,
)
from runtime.kinds.doc.diff.model import (
    CellChange,
    ChangeKind,
    ColumnHunk,
    FeatureChange,
    FileStatus,
    FormulaShift,
    RowHunk,
    SheetDiff,
    WorkbookDiff,
)


class _Keys:
    """A sheet's rows as hashable keys for alignment (booleans tagged, formulas as their
    shape), and per row the columns holding a formula (None when there are none)."""

    def __init__(
        self,
        rows: list[list[Cell]],
        shapes: dict[str, str],
        rewrite: Callable[[str], str] | None = None,
    ) -> None:
        """`rewrite`: applied to each formula before its shape is taken (the old sheet's
        formulas with their columns moved, when columns were inserted or deleted)."""
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
                        text = value if rewrite is None else rewrite(value)  # type: ignore[arg-type]
                        shape = shapes[value] = _formula_shape(text)  # type: ignore[index]
                    key[c] = shape
                    formulas.append(c)
            self.keys.append(tuple(key))
            self.formulas.append(formulas or None)


def _address(col: int, row: int) -> str:
    """0-based column and row as an A1 address."""
    return f"{get_column_letter(col + 1)}{row + 1}"


class _Columns:
    """The columns two sheets' rows are compared by: pairs of old and new column indexes
    (0-based). By position unless columns were inserted or deleted; then the inserted and
    deleted ones are left out (reported once as ColumnHunks) and the rest compared with the
    column each moved to."""

    def __init__(self, steps: list[Step] | None, old_width: int) -> None:
        self.steps = steps
        pairs = [(i, j) for i, j in steps or () if i is not None and j is not None]
        self.old = [i for i, _ in pairs]
        self.new = [j for _, j in pairs]
        self.moves = _Moves(old_width, pairs) if steps is not None else None

    def project(self, rows: list[list[Cell]], side: list[int]) -> list[list[Cell]]:
        """Rows with only the compared columns, in order (trailing empty cells dropped)."""
        out = []
        for row in rows:
            cells = [row[c] if c < len(row) else None for c in side]
            while cells and cells[-1] is None:
                cells.pop()
            out.append(cells)
        return out


COLUMN_SIMILARITY = 0.5  # share of a column's values found in the other to pair them


def _column_steps(old: list[list[Cell]], new: list[list[Cell]]) -> list[Step] | None:
    """How two sheets' columns line up when columns were inserted or deleted (steps over
    columns, aligned like rows: equal columns anchor, the rest paired by their shared
    values), or None when they line up by position. Checked only when the sheets' widths
    differ or their first rows line up shifted (a column inserted and another deleted),
    which keeps an ordinary edit at the cost of one pass over the row lengths."""
    old_width = max((len(row) for row in old), default=0)
    new_width = max((len(row) for row in new), default=0)
    if old_width == new_width and not _header_shifted(old, new):
        return None
    a, b = _column_values(old, old_width), _column_values(new, new_width)
    sets_a = [{v for v in column if v is not None} for column in a]
    sets_b = [{v for v in column if v is not None} for column in b]

    def similar(i: int, j: int) -> float:
        x, y = sets_a[i], sets_b[j]
        if not x or not y:
            return 1.0 if x == y else 0.0
        share = len(x & y) / max(len(x), len(y))
        return share if share >= COLUMN_SIMILARITY else 0.0

    steps = list(_steps(a, b, similar, equal=True))
    if all(i == j for i, j in steps if i is not None and j is not None):
        return None  # columns added or dropped at the end only: compared by position
    return steps


def _header_shifted(old: list[list[Cell]], new: list[list[Cell]]) -> bool:
    """Whether the sheets' first rows line up with a shift: some equal cells at other
    columns (a column inserted and another deleted keep the width)."""
    if not old or not new or old[0] == new[0]:
        return False
    a, b = [(c.__class__, c) for c in old[0]], [(c.__class__, c) for c in new[0]]
    return any(i != j for i, j in _steps(a, b, lambda i, j: 0.0, equal=True)
               if i is not None and j is not None and a[i][1] is not None)  # fmt: skip


def _column_values(rows: list[list[Cell]], width: int) -> list[tuple[Any, ...]]:
    """Each column's values top to bottom, as a key: formulas without their own-sheet
    references (a column's formulas are rewritten when columns move), booleans tagged."""
    shapes: dict[str, str] = {}

    def key(value: Cell) -> Any:
        if value.__class__ is bool:
            return ("bool", value)
        if value.__class__ is str and value.startswith("="):  # type: ignore[union-attr]
            if (shape := shapes.get(value)) is None:  # type: ignore[arg-type]
                shape = shapes[value] = _loose_shape(value)  # type: ignore[index, arg-type]
            return ("=", shape)
        return value

    return [tuple(key(row[c]) if c < len(row) else None for row in rows) for c in range(width)]


def _column_hunks(
    name: str, old: list[list[Cell]], new: list[list[Cell]], steps: list[Step]
) -> list[ColumnHunk]:
    """The inserted and deleted columns of a column alignment, runs of them together, each
    with its non-empty cells (every row of its sheet)."""
    hunks: list[ColumnHunk] = []
    for run in _runs((step, None) for step in steps if None in step):
        kind = _kind(run[0][0])
        side = 1 if kind == "inserted" else 0
        first, last = run[0][0][side], run[-1][0][side]
        rows = new if side else old
        changes = [
            CellChange(
                sheet=name,
                old_cell=None if side else _address(c, r),
                new_cell=_address(c, r) if side else None,
                old=None if side else row[c],
                new=row[c] if side else None,
                kind="added" if side else "removed",
            )
            for c in range(first, last + 1)  # type: ignore[operator]
            for r, row in enumerate(rows)
            if c < len(row) and row[c] is not None
        ]
        hunks.append(ColumnHunk(
            kind=kind,  # type: ignore[arg-type]
            first=get_column_letter(first + 1),  # type: ignore[operator]
            last=get_column_letter(last + 1),  # type: ignore[operator]
            changes=changes,
        ))  # fmt: skip
    return hunks


def diff_xlsx(old: Workbook | None, new: Workbook | None) -> WorkbookDiff:
    """Cell-level differences between two workbooks (None: the workbook does not exist).

    Sheets are matched by name (a renamed sheet is one removed and one added). See the module
    docstring for how rows are aligned.
    """
    if old is None and new is None:
        return WorkbookDiff(status="unchanged")
    old_sheets = old.sheets if old is not None else {}
    new_sheets = new.sheets if new is not None else {}
    renamed = _renames(old_sheets, new_sheets)  # new name -> old name
    # First every sheet both have is aligned, so that a formula's references to another
    # sheet move with that sheet's rows, columns and name; then each is compared.
    aligned: dict[str, tuple[str, _Aligned]] = {}  # new name -> (old name, alignment)
    for name, rows in new_sheets.items():
        was = renamed.get(name, name)
        if was in old_sheets:
            aligned[name] = (was, _align_sheet(name, old_sheets[was], rows))
    others = {was: SheetMoves(name, al.rows.rows, al.rows.columns)
              for name, (was, al) in aligned.items()}  # fmt: skip
    old_looks = old.looks if old is not None else {}
    new_looks = new.looks if new is not None else {}
    sheets: list[SheetDiff] = []
    for name, rows in new_sheets.items():
        if name not in aligned:
            sheets.append(_whole_sheet(name, rows, "added"))
            continue
        was, al = aligned[name]
        al.rows.read_others(others)
        diff = _diff_aligned(al, old_looks.get(was), new_looks.get(name))
        if name in renamed:
            diff = diff or SheetDiff(name=name, status="changed")
            sheets.append(diff.model_copy(update={"renamed_from": was}))
        elif diff is not None:
            sheets.append(diff)
    gone = set(renamed.values())
    sheets += [
        _whole_sheet(n, rows, "removed")
        for n, rows in old_sheets.items()
        if n not in new_sheets and n not in gone
    ]
    now_named = {was: name for name, was in renamed.items()}  # old name -> new name
    common_old = [now_named.get(n, n) for n in old_sheets if n in new_sheets or n in now_named]
    common_new = [n for n in new_sheets if n in old_sheets or n in renamed]
    reordered = common_old != common_new
    parts = _part_changes(
        old.parts if old is not None else {}, new.parts if new is not None else {}
    )
    status: FileStatus = (
        "added"
        if old is None
        else "removed"
        if new is None
        else "changed"
        if sheets or reordered or parts
        else "unchanged"
    )
    return WorkbookDiff(status=status, sheets=sheets, reordered=reordered, parts=parts,
                        risks=_risks(parts))  # fmt: skip


# Parts a workbook opened by a person acts on: code that runs, data read from elsewhere.
RISKS = {
    "macros": "it runs code when a person opens the workbook and enables it",
    "external links": "its formulas read values from another file",
    "data connections": "it fetches data from outside when refreshed",
}


def _part_changes(old: dict[str, str], new: dict[str, str]) -> list[FeatureChange]:
    return [
        FeatureChange(what=what, old=old.get(what, "(none)"), new=new.get(what, "(none)"))
        for what in sorted(set(old) | set(new))
        if old.get(what) != new.get(what)
    ]


def _risks(parts: list[FeatureChange]) -> list[str]:
    """A sentence for each risky part the change adds or alters (removing one is no risk)."""
    out = []
    for part in parts:
        if part.what in RISKS and part.new != "(none)":
            verb = "added" if part.old == "(none)" else "changed"
            out.append(f"{part.what} {verb}: {part.new} ({RISKS[part.what]})")
    return out


RENAME_SIMILARITY = 0.6  # share of a sheet's rows found in the other for a rename


def _renames(old: dict[str, list[list[Cell]]], new: dict[str, list[list[Cell]]]) -> dict[str, str]:
    """Sheets only the new workbook has, paired with a sheet only the old one has whose rows
    are mostly the same (a rename, perhaps with edits), best match first."""
    gone = {n: {tuple(row) for row in rows} for n, rows in old.items() if n not in new}
    found: dict[str, str] = {}
    for name, rows in new.items():
        if name in old or not gone:
            continue
        mine = {tuple(row) for row in rows}
        best, score = None, 0.0
        for was, theirs in gone.items():
            if not mine and not theirs:
                share = 1.0
            else:
                share = len(mine & theirs) / max(len(mine), len(theirs))
            if share > score:
                best, score = was, share
        if best is not None and score >= RENAME_SIMILARITY:
            found[name] = best
            del gone[best]
    return found


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


@dataclass
class _Aligned:
    """One sheet both workbooks have, aligned: its rows (with only the columns compared when
    columns were inserted or deleted), their keys and steps, and where rows and columns went."""

    name: str
    old: list[list[Cell]]
    new: list[list[Cell]]
    a: _Keys
    b: _Keys
    steps: list[Step]
    pairs: list[tuple[int, int]]
    rows: _RowMap
    cols: _Columns
    column_hunks: list[ColumnHunk]


def _align_sheet(name: str, old: list[list[Cell]], new: list[list[Cell]]) -> _Aligned:
    column_steps = _column_steps(old, new)
    cols = _Columns(column_steps, max((len(row) for row in old), default=0))
    column_hunks: list[ColumnHunk] = []
    rewrite = None
    if column_steps is not None:
        column_hunks = _column_hunks(name, old, new, column_steps)
        old, new = cols.project(old, cols.old), cols.project(new, cols.new)
        rewrite = partial(move_columns, columns=cols.moves)
    shapes: dict[str, str] = {}  # shared unless the old formulas are rewritten first
    a = _Keys(old, shapes, rewrite)
    b = _Keys(new, {} if rewrite else shapes)

    def similar(i: int, j: int) -> float:
        return _row_similarity(a.keys[i], b.keys[j])

    steps = list(_steps(a.keys, b.keys, similar, equal=True))
    pairs = [(i, j) for i, j in steps if i is not None and j is not None]
    rows = _RowMap(len(old), pairs, cols.moves)
    return _Aligned(name, old, new, a, b, steps, pairs, rows, cols, column_hunks)


def _diff_aligned(
    al: _Aligned, old_look: SheetLook | None, new_look: SheetLook | None
) -> SheetDiff | None:
    """The differences of an aligned sheet (its row map knowing how the other sheets moved)."""
    name, rows, cols = al.name, al.rows, al.cols
    hunks = []
    for run in _runs(_sheet_changes(name, al.old, al.new, al.a, al.b, al.steps, rows, cols)):
        (i0, j0), _ = run[0]
        (i1, j1), _ = run[-1]
        hunk = RowHunk(
            kind=_kind(run[0][0]),
            old_rows=None if i0 is None or i1 is None else (i0 + 1, i1 + 1),
            new_rows=None if j0 is None or j1 is None else (j0 + 1, j1 + 1),
            changes=[change for _, changes in run for change in changes],
        )
        hunks.append(hunk)
    column_pairs = list(zip(cols.old, cols.new, strict=True)) if cols.steps else None
    formats, formatted, features = diff_looks(old_look, new_look, al.pairs, rows, column_pairs)
    if not hunks and not al.column_hunks and not formats and not features:
        return None
    return SheetDiff(name=name, status="changed", hunks=hunks, columns=al.column_hunks,
                     shifted=_shifts(hunks), formats=formats, formatted_cells=formatted,
                     features=features)  # fmt: skip


def _shifts(hunks: list[RowHunk]) -> list[FormulaShift]:
    """The changed formulas whose text is the same in a row (or column) that moved, by
    column and by how far they now refer from where they did."""
    from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

    counts: dict[tuple[str, int, int], int] = {}
    for hunk in hunks:
        if hunk.kind != "changed":
            continue
        for c in hunk.changes:
            if (c.old.__class__ is not str or not c.old.startswith("=") or c.old != c.new  # type: ignore[union-attr]
                    or c.old_cell is None or c.new_cell is None):  # fmt: skip
                continue
            old_column, old_row = coordinate_from_string(c.old_cell)
            column, row = coordinate_from_string(c.new_cell)
            moved = old_row - row
            across = column_index_from_string(old_column) - column_index_from_string(column)
            if moved or across or "!" in c.old:  # type: ignore[operator]
                # Not moved itself but naming a sheet: what it reads there moved.
                counts[(column, moved, across)] = counts.get((column, moved, across), 0) + 1
    return [
        FormulaShift(column=column, count=n, rows=moved, columns=across)
        for (column, moved, across), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def _sheet_changes(
    name: str,
    old: list[list[Cell]],
    new: list[list[Cell]],
    a: _Keys,
    b: _Keys,
    steps: list[Step],
    rows: _RowMap,
    cols: _Columns,
) -> Iterator[tuple[Step, list[CellChange]]]:
    """The steps that change something, with their cell changes. Aligned rows with equal keys
    differ only in formulas (see _same_cell)."""
    for i, j in steps:
        if i is not None and j is not None:
            if a.keys[i] == b.keys[j]:
                columns = a.formulas[i]
                if columns is None or (
                    rows.identity and all(old[i][c] == new[j][c] for c in columns)
                ):
                    continue
                changes = _row_changes(name, i, j, old[i], new[j], rows, cols, columns)
            else:
                changes = _row_changes(name, i, j, old[i], new[j], rows, cols)
            if changes:
                yield (i, j), changes
        elif j is not None:
            yield (i, j), _row_cells(name, j, new[j], "added", cols.new)
        elif i is not None:
            yield (i, j), _row_cells(name, i, old[i], "removed", cols.old)


def _row_cells(
    sheet: str, r: int, row: list[Cell], kind: Literal["added", "removed"], side: list[int]
) -> list[CellChange]:
    """The non-empty cells of an inserted or deleted row; `side` maps the compared columns
    to the sheet's (empty: by position)."""
    added = kind == "added"
    return [
        CellChange(
            sheet=sheet,
            old_cell=None if added else _address(side[c] if side else c, r),
            new_cell=_address(side[c] if side else c, r) if added else None,
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
    cols: _Columns,
    columns: list[int] | None = None,
) -> list[CellChange]:
    """The cells that differ between aligned rows (only `columns` when given); `cols` maps
    the compared columns to each sheet's."""
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
                old_cell=_address(cols.old[c] if cols.old else c, i),
                new_cell=_address(cols.new[c] if cols.new else c, j),
                old=x,
                new=y,
                kind=kind,
            )
        )
    return changes
