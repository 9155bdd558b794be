"""Cell diff of two 100,000-cell sheets: time and peak memory.

Two real XLSX files, 10,000 rows x 10 columns (an id, eight numbers, and a per-row formula
=SUM(Bn:In)). The second has about 1% of the number cells changed, 20 rows inserted in the
middle and 10 deleted further down, and a few formulas changed; its per-row formulas refer to
their new rows, as Excel (or a script that regenerates the sheet) writes them.

Ours, timed separately (medians and p90 over --rounds): (a) load both with load_xlsx,
(b) diff_xlsx on the loaded data, (c) render_workbook_diff, (d) the whole review().
Both files have a look (a bold filled header, number formats on the numbers); the second has
200 amounts in another number format. Baselines, same run: openpyxl loading the same two files
read-only (values only) into lists, and a naive cell-by-cell comparison by position, which
reports every row below an inserted one; and a naive comparison by position through openpyxl's
cell objects of value and look (number format, font, fill, border, alignment), on the files
loaded in full by openpyxl (timed separately, and compared with our load + diff).
Peak memory: tracemalloc for the diff alone and for the whole review (each in a fresh process,
with the growth of its peak resident size, VmHWM / ru_maxrss).

    .venv/bin/python bench/doc_diff.py [--rounds 5] [--rows 10000]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from itertools import zip_longest
from pathlib import Path

import openpyxl
from openpyxl.styles import Font, PatternFill

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime import doc_formats  # noqa: E402
from runtime.doc_formats import Workbook  # noqa: E402
from runtime.kinds.doc import diff as doc_diff  # noqa: E402

COLS = 10
PATH = "reports/bench.xlsx"


def _sheets(rows: int, seed: int = 7) -> tuple[list[list], list[list], dict[str, int]]:
    """Old and new rows (header included) and what was done to the new ones."""
    rng = random.Random(seed)
    old = [["id", *(f"m{c}" for c in range(1, COLS - 1)), "total"]]
    for r in range(2, rows + 1):
        numbers = [
            rng.randint(0, 10_000) if c % 2 else round(rng.uniform(0, 1000), 2) for c in range(8)
        ]
        old.append([f"item-{r - 1:05d}", *numbers, f"=SUM(B{r}:I{r})"])
    new = [list(row) for row in old]
    changed = 0
    for r in rng.sample(range(1, len(new)), k=rows * COLS // 100):
        new[r][rng.randint(1, 8)] = -rng.randint(1, 10_000)
        changed += 1
    formulas = 0
    for r in rng.sample(range(1, len(new) // 2), k=5):
        new[r][COLS - 1] = f"=AVERAGE(B{r + 1}:I{r + 1})"
        formulas += 1
    middle = len(new) // 2
    inserted = [[f"new-{k:02d}", *range(k, k + 8), None] for k in range(20)]
    new[middle:middle] = inserted
    deleted_at = len(new) * 3 // 4
    del new[deleted_at : deleted_at + 10]
    for r, row in enumerate(new[1:], start=2):  # formulas follow their rows, as Excel does
        if isinstance(row[-1], str) and row[-1].startswith("=SUM("):
            row[-1] = f"=SUM(B{r}:I{r})"
    done = {"cells changed": changed, "formulas changed": formulas, "rows inserted": 20}
    done["rows deleted"] = 10
    return old, new, done


def _baseline_load(data: bytes) -> list[list]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    try:
        return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def _styled(data: bytes, *, reformat: int) -> bytes:
    """The workbook with a look: a bold, filled header, number formats on the number columns,
    and in the new version `reformat` amounts given another format."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book.worksheets[0]
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for column in sheet.iter_cols(min_col=2, max_col=COLS - 1, min_row=2):
        for cell in column:
            cell.number_format = "#,##0.00"
    for r in range(2, 2 + reformat):
        sheet.cell(r, 3).number_format = '"$"#,##0'
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _naive_styled_diff(old, new) -> int:
    """Cells that differ at the same position in value or look, compared through openpyxl's
    cell objects (value, number format, font, fill, border, alignment)."""
    changed = 0
    a, b = old.worksheets[0], new.worksheets[0]
    rows = max(a.max_row, b.max_row)
    cols = max(a.max_column, b.max_column)
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            x, y = a.cell(r, c), b.cell(r, c)
            changed += (
                x.value != y.value
                or x.number_format != y.number_format
                or x.font != y.font
                or x.fill != y.fill
                or x.border != y.border
                or x.alignment != y.alignment
            )
    return changed


def _naive_diff(old: list[list], new: list[list]) -> int:
    """Cells that differ at the same position (every shifted row counts)."""
    changed = 0
    for a, b in zip_longest(old, new, fillvalue=()):
        for x, y in zip_longest(a, b):
            changed += x != y
    return changed


def _timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return (time.perf_counter() - started) * 1000, result


def _peak_rss_kb() -> int:
    """This process's peak resident size: VmHWM (reset by exec, unlike ru_maxrss, which a
    spawned child inherits from its parent on Linux), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _memory(kind: str, old_file: str, new_file: str) -> tuple[float, float]:
    """Peak traced MB and ru_maxrss growth MB of one diff or review, in this (fresh) process."""
    old, new = Path(old_file).read_bytes(), Path(new_file).read_bytes()
    loaded = None
    if kind == "diff":
        loaded = (doc_formats.load_xlsx(PATH, old), doc_formats.load_xlsx(PATH, new))
    rss_before = _peak_rss_kb()
    tracemalloc.start()
    if loaded is not None:
        doc_diff.diff_xlsx(*loaded)
    else:
        doc_diff.review(PATH, old, new)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, (_peak_rss_kb() - rss_before) / 1024


def _stats(values: list[float]) -> str:
    p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
    return f"{statistics.median(values):9.1f} {p90:9.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()

    old_rows, new_rows, done = _sheets(args.rows)
    old_bytes = _styled(doc_formats.write_xlsx(Workbook(sheets={"Data": old_rows})), reformat=0)
    new_bytes = _styled(doc_formats.write_xlsx(Workbook(sheets={"Data": new_rows})), reformat=200)
    done["number formats changed"] = 200
    print(
        f"Cell diff of two {args.rows * COLS:,}-cell sheets ({args.rows:,} rows x {COLS} columns)"
    )
    print(f"files: {len(old_bytes) / 2**20:.2f} MB and {len(new_bytes) / 2**20:.2f} MB; made: ")
    print("  " + ", ".join(f"{n} {what}" for what, n in done.items()))
    print(f"{args.rounds} rounds; ms, median and p90\n")

    times: dict[str, list[float]] = {}
    result = {}
    for _ in range(args.rounds):
        ms, (old_wb, new_wb) = _timed(
            lambda: (
                doc_formats.load_xlsx(PATH, old_bytes),
                doc_formats.load_xlsx(PATH, new_bytes),
            )
        )
        times.setdefault("(a) load_xlsx x2", []).append(ms)
        ms, diff = _timed(doc_diff.diff_xlsx, old_wb, new_wb)
        times.setdefault("(b) diff_xlsx", []).append(ms)
        ms, text = _timed(doc_diff.render_workbook_diff, PATH, diff)
        times.setdefault("(c) render", []).append(ms)
        ms, review = _timed(doc_diff.review, PATH, old_bytes, new_bytes)
        times.setdefault("(d) review() whole", []).append(ms)
        ms, (old_base, new_base) = _timed(
            lambda: (_baseline_load(old_bytes), _baseline_load(new_bytes))
        )
        times.setdefault("baseline: openpyxl load x2", []).append(ms)
        ms, naive = _timed(_naive_diff, old_base, new_base)
        times.setdefault("baseline: naive compare", []).append(ms)
        ms, full = _timed(
            lambda: (
                openpyxl.load_workbook(io.BytesIO(old_bytes)),
                openpyxl.load_workbook(io.BytesIO(new_bytes)),
            )
        )
        times.setdefault("baseline: openpyxl full load x2", []).append(ms)
        ms, naive_styled = _timed(_naive_styled_diff, *full)
        times.setdefault("baseline: naive + styles", []).append(ms)
        result = {"diff": diff, "text": text, "review": review, "naive": naive,
                  "naive_styled": naive_styled}  # fmt: skip

    print(f"{'':<30} {'median':>9} {'p90':>9}")
    for name, values in times.items():
        print(f"{name:<30} {_stats(values)}")

    med = {name: statistics.median(values) for name, values in times.items()}
    base_total = med["baseline: openpyxl load x2"] + med["baseline: naive compare"]
    print("\nratios (ours / baseline, medians):")
    print(f"  load:   {med['(a) load_xlsx x2'] / med['baseline: openpyxl load x2']:.2f}x")
    print(
        f"  diff:   {med['(b) diff_xlsx'] / med['baseline: naive compare']:.2f}x"
        "  (vs naive by position, values only)"
    )
    styled = med["baseline: naive + styles"] / med["(b) diff_xlsx"]
    print(f"  diff:   {styled:.1f}x faster than naive by position with styles (openpyxl cells)")
    naive_all = med["baseline: openpyxl full load x2"] + med["baseline: naive + styles"]
    ours_all = med["(a) load_xlsx x2"] + med["(b) diff_xlsx"]
    print(
        f"  load + diff: {naive_all / ours_all:.1f}x faster than openpyxl's full load + the "
        "naive compare with styles"
    )
    print(f"  review: {med['(d) review() whole'] / base_total:.2f}x  (vs openpyxl load + naive)")

    diff = result["diff"]
    print("\nchanges reported:")
    print(
        f"  ours:  {diff.cells_changed} cells changed, {diff.rows_inserted} rows inserted, "
        f"{diff.rows_deleted} rows deleted ({diff.change_count} cell entries in all)"
    )
    print(f"         summary: {result['review'].summary}")
    print(f"         formatting changed in {diff.formatted_cells} cells")
    print(f"  naive: {result['naive']} cells differ by position")
    print(f"  naive with styles: {result['naive_styled']} cells differ by position")
    print(f"  rendered diff: {len(result['text'].splitlines())} lines (cap {doc_diff.MAX_LINES})")

    with tempfile.TemporaryDirectory() as tmp:
        old_file, new_file = Path(tmp, "old.xlsx"), Path(tmp, "new.xlsx")
        old_file.write_bytes(old_bytes)
        new_file.write_bytes(new_bytes)
        context = multiprocessing.get_context("spawn")
        print("\npeak memory (fresh process each):")
        for kind in ("diff", "review"):
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                traced, rss = pool.submit(_memory, kind, str(old_file), str(new_file)).result()
            label = "diff_xlsx alone" if kind == "diff" else "whole review()"
            print(f"  {label:<16} tracemalloc peak {traced:6.1f} MB, peak RSS +{rss:6.1f} MB")

    print("\nfirst lines of the rendered diff:")
    print("\n".join("  " + line for line in result["text"].splitlines()[:12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
