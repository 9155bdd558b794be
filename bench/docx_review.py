"""Loading and reviewing a 2,110-block Word document: time (medians over --rounds).

A real DOCX written by python-docx: 100 headings, each with 20 paragraphs of three runs (one
bold), and a 30 x 6 table every tenth section. The new version rewords one paragraph in
each section and inserts a column in the middle of one table. Timed: (a) load_docx of the new
version, (b) the whole review() of old -> new (both loads, the diff, the rendering).

    .venv/bin/python bench/docx_review.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime import doc_formats  # noqa: E402
from runtime.kinds.doc.diff import review  # noqa: E402


def document(edited: bool) -> bytes:
    out = docx.Document()
    for s in range(100):
        out.add_heading(f"Section {s}", 1)
        for k in range(20):
            words = "with some words " + ("reworded " if edited and k == 3 else "")
            paragraph = out.add_paragraph(f"Paragraph {s}.{k} {words}")
            paragraph.add_run("bold part").bold = True
            paragraph.add_run(" and the rest of the sentence, long enough to be a sentence.")
        if s % 10 == 0:
            table = out.add_table(rows=30, cols=7 if edited and s == 50 else 6)
            for row in table.rows:
                for c, cell in enumerate(row.cells):
                    cell.text = f"{c}"
    buf = io.BytesIO()
    out.save(buf)
    return buf.getvalue()


def median_ms(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    old, new = document(False), document(True)
    loaded = doc_formats.load_docx("bench.docx", new)
    done = review("bench.docx", old, new)
    assert done is not None
    print(f"{len(loaded.blocks):,} blocks, {len(new):,} bytes; review: {done.summary}")
    load = median_ms(lambda: doc_formats.load_docx("bench.docx", new), args.rounds)
    whole = median_ms(lambda: review("bench.docx", old, new), args.rounds)
    print(f"load_docx {load:.0f} ms, review() {whole:.0f} ms (medians of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
