"""How two versions of a sheet differ in looks: cell styles compared row by row along the
value diff's alignment (a row that moved keeps its look), summarized as ranges
("E2:E2001 number format '#,##0.00' -> '"$"#,##0'"), and the sheet's features (hidden
columns, freeze panes, autofilter, merged cells, conditional formatting, data validation).
Pure: no I/O, no rendering.
"""

from __future__ import annotations

from collections import defaultdict

from openpyxl.utils import get_column_letter

from runtime.doc_formatting import SheetLook, Style
from runtime.kinds.doc.diff.formulas import _RowMap
from runtime.kinds.doc.diff.model import FeatureChange, FormatChange

MAX_FORMAT_CHANGES = 200  # ranges listed per sheet; the count says how many cells in all
DEFAULTS = {"number format": "General", "font": "default", "bold": "no", "italic": "no",
            "font colour": "default", "fill": "none", "border": "none", "alignment": "general",
            "wrap": "no"}  # fmt: skip


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


RANGED = ("autofilter", "conditional formatting", "data validation", "merged cells")


def _features(old: SheetLook, new: SheetLook, rows: _RowMap) -> list[FeatureChange]:
    """Features that differ; and ranged ones whose text stayed while rows moved inside or
    above them (Excel moves and grows them; a tool that inserts rows may not)."""
    out = []
    for key in sorted(set(old.features) | set(new.features)):
        was, now = old.features.get(key), new.features.get(key)
        if was != now:
            out.append(FeatureChange(what=key, old=was or "(none)", new=now or "(none)"))
        elif key in RANGED and was is not None and not rows.identity:
            moved = rows.move("=" + was.replace(", ", ","))
            expected = moved[1:].replace(",", ", ") if moved else None
            if expected != was:
                out.append(FeatureChange(
                    what=f"{key} not moved with its cells", old=was,
                    new=f"{now} (Excel would have made it {expected or 'smaller'})",
                ))  # fmt: skip
    return out


def diff_looks(
    old: SheetLook | None,
    new: SheetLook | None,
    pairs: list[tuple[int, int]],
    rows: _RowMap,
    columns: list[tuple[int, int]] | None = None,
) -> tuple[list[FormatChange], int, list[FeatureChange]]:
    """The style changes (ranges, at most MAX_FORMAT_CHANGES), how many cells they cover, and
    the feature changes. `pairs` are the aligned (old row, new row), 0-based; `columns` the
    aligned (old column, new column) when columns were inserted or deleted (else by
    position; inserted and deleted columns are not compared)."""
    old, new = old or SheetLook(), new or SheetLook()
    tail_shift = rows.tail_shift
    features = _features(old, new, rows)
    if not old.cells and not new.cells:
        return [], 0, features
    canon: dict[Style, int] = {}
    old_ids = [canon.setdefault(s, len(canon)) for s in old.styles]
    new_ids = [canon.setdefault(s, len(canon)) for s in new.styles]
    aligned = list(pairs)
    paired_old = {i for i, _ in aligned}
    last_old = max(paired_old, default=-1)
    for i in range(last_old + 1, len(old.cells)):  # styled rows below the values
        if 0 <= i + tail_shift < len(new.cells):
            aligned.append((i, i + tail_shift))
    changed: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
    cells: set[tuple[int, int]] = set()
    for i, j in aligned:
        a = old.cells[i] if i < len(old.cells) else []
        b = new.cells[j] if j < len(new.cells) else []
        if columns is not None:
            a = [a[x] if x < len(a) else 0 for x, _ in columns]
            b = [b[y] if y < len(b) else 0 for _, y in columns]
        if len(a) == len(b) and all(old_ids[x] == new_ids[y] for x, y in zip(a, b, strict=True)):
            continue
        for c in range(max(len(a), len(b))):
            x = old.styles[a[c]] if c < len(a) else ()
            y = new.styles[b[c]] if c < len(b) else ()
            if x == y:
                continue
            column = columns[c][1] if columns is not None else c
            before, after = dict(x), dict(y)
            for what in sorted(set(before) | set(after)):
                was, now = before.get(what, DEFAULTS[what]), after.get(what, DEFAULTS[what])
                if was != now:
                    changed[(what, was, now, column)].append(j + 1)
                    cells.add((j, column))
    # Rows per column first, then neighbouring columns with the same rows joined.
    by_rows: dict[tuple[str, str, str, int, int], list[int]] = defaultdict(list)
    for (what, was, now, c), rows in changed.items():
        for first, last in _ranges(rows):
            by_rows[(what, was, now, first, last)].append(c)
    out: list[FormatChange] = []
    for (what, was, now, first, last), columns in sorted(
        by_rows.items(), key=lambda kv: (kv[0][3], min(kv[1]), kv[0][0])
    ):
        for c0, c1 in _ranges(columns):
            start = f"{get_column_letter(c0 + 1)}{first}"
            end = f"{get_column_letter(c1 + 1)}{last}"
            out.append(FormatChange(range=start if start == end else f"{start}:{end}",
                                    what=what, old=was, new=now))  # fmt: skip
    return out[:MAX_FORMAT_CHANGES], len(cells), features
