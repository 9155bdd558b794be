"""The picture of one changed sheet: time to render it, before and after, against a bare
LibreOffice conversion of the same file in the same run.

A real XLSX (a "Budget" sheet of --rows x 10 cells with a formula column, and an unchanged
"Notes" sheet) and its next version with three cells of Budget changed. Arms, interleaved
round by round (medians and p90 over --rounds):

- bare: `soffice --headless --convert-to pdf` of the new file, no sandbox, a fresh profile in
  a temp HOME (the cheapest way to get any picture out of LibreOffice).
- bwrap: the same command in the runtime's bubblewrap sandbox (runtime.sandbox.bwrap), so
  `bwrap / bare` is the sandbox's cost.
- ours: runtime.kinds.doc.picture.render_pictures for the sheet: both highlighted copies
  (openpyxl), ONE sandboxed soffice run printing both, pdftoppm, cut and PNG-encoded (two
  pictures: before and after). Also shown: the marking alone (openpyxl load, fill, save, both
  sides), in-process.

    .venv/bin/python bench/doc_render.py [--rounds 7] [--rows 200]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openpyxl import Workbook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.kinds.doc import diff as doc_diff  # noqa: E402
from runtime.kinds.doc.picture import render_pictures  # noqa: E402
from runtime.kinds.doc.picture.marking import mark_workbook, regions  # noqa: E402
from runtime.sandbox.bwrap import run_sandboxed  # noqa: E402

TIMEOUT_S = 120


def workbook(rows: int, changed: bool) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "Budget"
    sheet.append(["team", *(f"m{c}" for c in range(1, 9)), "total"])
    for r in range(2, rows + 2):
        sheet.append([f"team-{r}", *((r * c) % 97 for c in range(1, 9)), f"=SUM(B{r}:I{r})"])
    if changed:
        sheet["C5"], sheet["F40"], sheet["D41"] = 1234, 5678, 9012
    book.create_sheet("Notes").append(["unchanged"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def bare(soffice: str, file: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="acp-bench-") as home:
        started = time.perf_counter()
        subprocess.run(
            [soffice, "--headless", "--norestore", f"-env:UserInstallation=file://{home}/lo",
             "--convert-to", "pdf", "--outdir", home, str(file)],
            env={"PATH": "/usr/bin:/bin", "HOME": home}, capture_output=True, check=True,
            timeout=TIMEOUT_S,
        )  # fmt: skip
        took = time.perf_counter() - started
        assert (Path(home) / f"{file.stem}.pdf").stat().st_size > 0
        return took


async def sandboxed(soffice: str, data: bytes) -> float:
    with tempfile.TemporaryDirectory(prefix="acp-bench-") as folder:
        (Path(folder) / "new.xlsx").write_bytes(data)
        command = (
            f"{shlex.quote(soffice)} --headless --norestore "
            "-env:UserInstallation=file:///render/lo --convert-to pdf --outdir /render "
            "/render/new.xlsx >/dev/null"
        )
        started = time.perf_counter()
        result = await run_sandboxed(command, Path(folder), workdir_at="/render",
                                     timeout_s=TIMEOUT_S)  # fmt: skip
        took = time.perf_counter() - started
        assert result.exit_code == 0, result.stderr
        assert (Path(folder) / "new.pdf").stat().st_size > 0
        return took


async def ours(review, old: bytes, new: bytes) -> float:
    started = time.perf_counter()
    drawn = await render_pictures([(review, old, new)])
    took = time.perf_counter() - started
    assert [p.name for p in drawn.pictures] == ["bench-Budget-before.png", "bench-Budget-after.png"]
    assert not drawn.notes, drawn.notes
    return took


def marking(review, old: bytes, new: bytes) -> float:
    started = time.perf_counter()
    for side, data in (("before", old), ("after", new)):
        mark_workbook(data, regions(review.diff.sheets, side), side)
    return time.perf_counter() - started


def line(name: str, runs: list[float], base: float | None = None) -> str:
    runs = sorted(runs)
    p50 = statistics.median(runs)
    p90 = runs[min(len(runs) - 1, round(0.9 * (len(runs) - 1)))]
    ratio = f"  x{p50 / base:.2f} of bare" if base else ""
    return f"  {name:<28} p50 {p50 * 1000:8.1f} ms   p90 {p90 * 1000:8.1f} ms{ratio}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    soffice = shutil.which("soffice")
    if soffice is None or shutil.which("pdftoppm") is None:
        sys.exit("doc_render: needs soffice and pdftoppm (scripts/setup.sh installs them)")
    old, new = workbook(args.rows, False), workbook(args.rows, True)
    review = doc_diff.review("reports/bench.xlsx", old, new)
    assert review is not None and review.diff is not None
    print(f"doc_render: one changed sheet of {args.rows + 1} x 10 cells (3 changed), "
          f"{len(new):,} bytes; {args.rounds} rounds, {os.cpu_count()} cpus")  # fmt: skip
    times: dict[str, list[float]] = {"bare": [], "bwrap": [], "ours": [], "marking": []}
    with tempfile.TemporaryDirectory(prefix="acp-bench-") as folder:
        file = Path(folder) / "new.xlsx"
        file.write_bytes(new)
        await ours(review, old, new)  # warm the page cache for every arm alike
        for _ in range(args.rounds):
            times["bare"].append(await asyncio.to_thread(bare, soffice, file))
            times["bwrap"].append(await sandboxed(soffice, new))
            times["ours"].append(await ours(review, old, new))
            times["marking"].append(marking(review, old, new))
    base = statistics.median(times["bare"])
    print(line("bare soffice -> pdf", times["bare"]))
    print(line("bwrap soffice -> pdf", times["bwrap"], base))
    print(line("ours (before + after PNGs)", times["ours"], base))
    print(line("  of which marking", times["marking"], base))
    ours_p50 = statistics.median(times["ours"])
    print(f"  per picture: {ours_p50 / 2 * 1000:.1f} ms; ours / bwrap "
          f"x{ours_p50 / statistics.median(times['bwrap']):.2f}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
