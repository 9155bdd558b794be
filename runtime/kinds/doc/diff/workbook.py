"""The workbook diff: `diff_xlsx` compares two loaded workbooks cell by cell, sheets matched
by name, rows aligned by runtime.kinds.doc.diff.align and formulas compared by
runtime.kinds.doc.diff.formulas. Pure: no I/O, no rendering.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from openpyxl.utils import get_column_letter

from runtime.doc_formats import Cell, Workbook
from runtime.doc_formatting import SheetLook
from runtime.kinds.doc.diff.align import Step, _kind, _row_similarity, _runs, _steps
from runtime.kinds.doc.diff.formatting import diff_looks
from runtime.kinds.doc.diff.formulas import _formula_shape, _RowMap, _same_cell
from runtime.kinds.doc.diff.model import (
    CellChange,
    ChangeKind,
    FileStatus,
    FormulaShift,
    RowHunk,
    SheetDiff,
    WorkbookDiff,
)


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
    renamed = _renames(old_sheets, new_sheets)  # new name -> old name
    sheets: list[SheetDiff] = []
    for name, rows in new_sheets.items():
        looks = (old.looks if old is not None else {}, new.looks if new is not None else {})
        if name in renamed:
            was = renamed[name]
            diff = _diff_sheet(
                name, old_sheets[was], rows, looks[0].get(was), looks[1].get(name)
            ) or SheetDiff(name=name, status="changed")
            sheets.append(diff.model_copy(update={"renamed_from": was}))
        elif name not in old_sheets:
            sheets.append(_whole_sheet(name, rows, "added"))
        elif (
            diff := _diff_sheet(
                name, old_sheets[name], rows, looks[0].get(name), looks[1].get(name)
            )
        ) is not None:
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


def _diff_sheet(
    name: str,
    old: list[list[Cell]],
    new: list[list[Cell]],
    old_look: SheetLook | None = None,
    new_look: SheetLook | None = None,
) -> SheetDiff | None:
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
    pairs = [(i, j) for i, j in steps if i is not None and j is not None]
    formats, formatted, features = diff_looks(old_look, new_look, pairs, rows)
    if not hunks and not formats and not features:
        return None
    return SheetDiff(name=name, status="changed", hunks=hunks, shifted=_shifts(hunks),
                     formats=formats, formatted_cells=formatted, features=features)  # fmt: skip


def _shifts(hunks: list[RowHunk]) -> list[FormulaShift]:
    """The changed formulas whose text is the same in a row that moved, by column and by how
    far they now refer from where they did."""
    counts: dict[tuple[str, int], int] = {}
    for hunk in hunks:
        if hunk.kind != "changed":
            continue
        for c in hunk.changes:
            if (c.old.__class__ is not str or not c.old.startswith("=") or c.old != c.new  # type: ignore[union-attr]
                    or c.old_cell is None or c.new_cell is None):  # fmt: skip
                continue
            column = c.new_cell.rstrip("0123456789")
            moved = int(c.old_cell[len(column) :]) - int(c.new_cell[len(column) :])
            if moved:
                counts[(column, moved)] = counts.get((column, moved), 0) + 1
    return [
        FormulaShift(column=column, count=n, rows=moved)
        for (column, moved), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


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
                if columns is None or (
                    rows.identity and all(old[i][c] == new[j][c] for c in columns)
                ):
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
