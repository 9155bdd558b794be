"""The evidence renderers on real material: patches git wrote, workbooks and Word documents
openpyxl and python-docx saved (reviewed by the doc kind's own differ), plans PostgreSQL
produced, artifacts in a real artifact store. What a reviewer would notice: the right files,
lines, cells and nodes, untrusted text escaped, and a broken artifact a note, not a 500."""

from __future__ import annotations

import io
import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import docx
import pytest
from openpyxl import Workbook

from bot.console.evidence import diff, render_evidence
from bot.console.evidence.document import WordReview, read_review
from bot.console.evidence.highlight import pygments_css
from bot.console.evidence.plan import read_plan
from bot.console.evidence.workbook import WorkbookReview, render_workbook
from bot.console.render import STATIC
from runtime.audit import ArtifactStore, AuditEvent
from runtime.jobs import ArtifactRef, JobRecord, JobSpec, JobState, JobType, Origin
from runtime.kinds.doc.diff.dispatch import review as review_document

HOSTILE = "<script>alert(1)</script>"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


@pytest.fixture
def patch(tmp_path: Path) -> tuple[str, str]:
    """A real git patch: a modification (with a removed line that reads like a header and a
    line holding HTML), a rename, a binary change, a deletion, a new file with a non-ASCII
    name and no newline at its end; and git's --numstat of the same change."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("def f():\n    return 1\n-- a/x\nkeep = 2\n" + "x = 0\n" * 30)
    (repo / "old_name.txt").write_text("same\ncontent\nhere\n")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (repo / "gone.md").write_text("# gone\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    (repo / "app.py").write_text(
        f"def f():\n    return '{HOSTILE}'\nkeep = 2\n" + "x = 0\n" * 29 + "y = 1\n"
    )
    git(repo, "mv", "old_name.txt", "new_name.txt")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(255, -1, -1)))
    (repo / "gone.md").unlink()
    (repo / "café.txt").write_text("no newline")
    git(repo, "add", "-A")
    numstat = git(repo, "-c", "core.quotepath=false", "diff", "--cached", "-M", "--numstat")
    return git(repo, "diff", "--cached", "-M"), numstat


def test_a_git_patch_is_read_file_by_file_as_git_counts_it(patch):
    text, numstat = patch
    files = {f.path: f for f in diff.parse_patch(text)}
    expected = {}
    for line in numstat.strip().splitlines():
        added, removed, path = line.split("\t")
        path = path.split(" => ")[-1].rstrip("}").strip('"')
        expected[path] = (added, removed)
    assert set(files) == {"app.py", "new_name.txt", "logo.png", "gone.md", "café.txt"}
    for path, (added, removed) in expected.items():
        shown = files[path if path in files else "new_name.txt"]
        if added == "-":
            assert shown.binary, path
        else:
            assert (shown.added, shown.removed) == (int(added), int(removed)), path
    assert files["new_name.txt"].status == "renamed"
    assert files["new_name.txt"].renamed_from == "old_name.txt"
    assert files["gone.md"].status == "deleted"
    assert files["café.txt"].status == "added"
    assert files["café.txt"].hunks[-1].lines[-1].no_newline
    removed = [line.text for h in files["app.py"].hunks for line in h.lines if line.kind == "del"]
    assert "-- a/x" in removed, "a removed line reading like a header stays a line"


def test_line_numbers_match_the_files_on_both_sides(patch):
    text, _ = patch
    app = next(f for f in diff.parse_patch(text) if f.path == "app.py")
    first = app.hunks[0]
    assert [(line.kind, line.old, line.new) for line in first.lines[:4]] == [
        ("ctx", 1, 1), ("del", 2, None), ("del", 3, None), ("add", None, 2),
    ]  # fmt: skip
    last = app.hunks[-1].lines
    assert ("add", None, 33, "y = 1") in [(x.kind, x.old, x.new, x.text) for x in last]


@pytest.mark.parametrize("view", ["unified", "split"])
def test_a_patch_renders_highlighted_and_escaped_in_both_views(patch, view):
    text, _ = patch
    html = str(diff.render_patch(text, sha256="", name="diff.patch", view=view))
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'class="k"' in html, "Python keywords carry Pygments' class"
    assert "style=" not in html, "no inline styles: the console's CSP forbids them"
    assert ("ev-diff-table ev-split" in html) == (view == "split")
    assert html.count('class="ev-file"') == 5, "every file has its block, even the rename"
    assert "A binary file" in html


def test_a_huge_patch_is_shown_plain_past_the_highlighting_budget():
    lines = "".join(f"+line {n} = {n}\n" for n in range(5_000))
    text = f"--- /dev/null\n+++ b/big.py\n@@ -0,0 +1,5000 @@\n{lines}"
    html = str(diff.render_patch(text, sha256="", name="diff.patch"))
    assert "shown without syntax highlighting" in html
    assert html.count('class="ev-line ev-add"') == 5_000


def test_the_stylesheet_holds_the_token_colours_the_highlighter_uses():
    css = (STATIC / "evidence.css").read_text()
    assert pygments_css() in css
    assert "style=" not in css


def workbook(rows: list[tuple], formula: str, extra_sheet: bool = False) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "Budget"
    for row in rows:
        sheet.append(row)
    sheet["D2"] = formula
    if extra_sheet:
        book.create_sheet("Notes")["A1"] = HOSTILE
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_workbook_changes_read_back_cell_for_cell_from_the_kinds_review():
    old = workbook([("team", "q1", "q2"), ("payments", 40, 42), ("ledger", 10, 12)], "=B2+C2")
    new = workbook(
        [("team", "q1", "q2"), ("payments", 40, 45), ("it's -> odd", 1, 2), ("ledger", 10, 12)],
        "=SUM(B2:C2)",
        extra_sheet=True,
    )
    done = review_document("budget.xlsx", old, new)
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WorkbookReview) and not block.unread
    shown = {(c.sheet, c.old_cell, c.new_cell, c.old, c.new)
             for s in block.diff.sheets for h in s.hunks for c in h.changes}  # fmt: skip
    recorded = {(c.sheet, c.old_cell, c.new_cell, c.old, c.new)
                for s in done.diff.sheets for h in s.hunks for c in h.changes}  # fmt: skip
    assert shown == recorded
    assert ("Budget", "C2", "C2", 42, 45) in shown
    html = str(render_workbook(block))
    assert '<code class="ev-v ev-v-formula">=SUM(B2:C2)</code>' in html
    assert "it&#39;s -&gt; odd" in html and HOSTILE not in html


def word(paragraphs: list[str], table: list[list[str]]) -> bytes:
    document = docx.Document()
    document.add_heading("Runbook", level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    grid = document.add_table(rows=len(table), cols=len(table[0]))
    for r, row in enumerate(table):
        for c, value in enumerate(row):
            grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_word_changes_read_back_paragraph_by_paragraph():
    old = word(["Restart the worker.", "Page the on-call."], [["step", "owner"], ["1", "ops"]])
    new = word(
        ["Restart the worker twice.", "Page the on-call.", HOSTILE],
        [["step", "owner"], ["1", "payments"]],
    )
    done = review_document("runbook.docx", old, new)
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WordReview) and not block.unread
    assert [(c.what, c.kind) for c in block.diff.changes] == [
        (c.what, c.kind) for c in done.diff.changes
    ]
    changed = next(c for c in block.diff.changes if c.what == "paragraph" and c.kind == "changed")
    assert (changed.old_text, changed.new_text) == (
        "Restart the worker.", "Restart the worker twice.",
    )  # fmt: skip
    table = next(c for c in block.diff.changes if c.what == "table")
    assert [(c.old, c.new) for c in table.cells] == [("ops", "payments")]
    recorded = next(c for c in done.diff.changes if c.what == "table")
    assert table.cells == recorded.cells, "named by its headers, as the kind recorded it"
    assert (table.cells[0].row_name, table.cells[0].col_name) == ("1", "owner")


def _plan(pg_server, analyze: bool) -> str:
    pg_server.psql("CREATE TABLE IF NOT EXISTS ev_orders (id int, status text)")
    pg_server.psql("CREATE TABLE IF NOT EXISTS ev_refunds (order_id int)")
    pg_server.psql(
        "INSERT INTO ev_orders SELECT g, 'paid' FROM generate_series(1, 2000) g;"
        "INSERT INTO ev_refunds SELECT g FROM generate_series(1, 2000, 7) g; ANALYZE"
    )
    option = "ANALYZE, " if analyze else ""
    return pg_server.psql(
        f"EXPLAIN ({option}FORMAT JSON) SELECT o.status, count(*) FROM ev_orders o "
        "JOIN ev_refunds r ON r.order_id = o.id GROUP BY 1 ORDER BY 1"
    )


def _own(node: dict, analyzed: bool) -> list[tuple[float, str]]:
    def total(n: dict) -> float:
        return n["Actual Total Time"] * n["Actual Loops"] if analyzed else n["Total Cost"]

    children = node.get("Plans", [])
    mine = (total(node) - sum(total(c) for c in children), node["Node Type"])
    return [mine] + [x for c in children for x in _own(c, analyzed)]


@pytest.mark.parametrize("analyze", [False, True])
def test_the_costliest_node_is_the_one_with_the_largest_own_share(pg_server, analyze):
    text = _plan(pg_server, analyze)
    plan = read_plan(text)
    raw = json.loads(text)[0]["Plan"]
    expected = max(_own(raw, analyze))[1]
    assert expected in plan.costliest.label
    assert plan.analyzed is analyze

    def marked(node) -> int:
        return int(node.costliest) + sum(marked(child) for child in node.children)

    assert marked(plan.root) == 1, "exactly one node is marked"


def test_a_document_that_is_not_a_plan_is_refused_in_words():
    with pytest.raises(ValueError, match="not an EXPLAIN"):
        read_plan('{"rows": []}')


def _job(kind: JobType, artifacts: list[ArtifactRef], **extra) -> JobRecord:
    now = datetime.now(UTC)
    spec = JobSpec(job_type=kind, requester="carol", target="payments-replica",
                   instruction="SELECT 1", origin=Origin.cli)  # fmt: skip
    return JobRecord(id=7, state=JobState.succeeded, spec=spec, prompt="p", policy_hash="a" * 64,
                     artifacts=artifacts, created_at=now, updated_at=now, **extra)  # fmt: skip


def _event(seq: int, kind: str, data: dict, artifacts: list[str]) -> AuditEvent:
    return AuditEvent(seq=seq, ts=datetime.now(UTC).isoformat(), job_id=7, kind=kind,
                      actor="worker:w", data=data, artifacts=artifacts,
                      prev_hash="0" * 64, hash=f"{seq:064x}")  # fmt: skip


def test_sql_evidence_escapes_rows_and_caps_the_table(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    rows = "name\n" + "".join(f"{HOSTILE} {n}\n" for n in range(800))
    csv_ref = store.put("result.csv", rows.encode(), "text/csv")
    job = _job(JobType.sql, [csv_ref])
    event = _event(1, "tool.sql.query", {"statement": "SELECT name FROM t", "row_count": 800,
                                         "duration_ms": 2.5}, [csv_ref.sha256])  # fmt: skip
    html = str(render_evidence(job, [event], store))
    assert HOSTILE not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt; ") == 500
    assert "Showing 500 of 800 rows" in html
    assert "2.5 ms" in html


def test_a_missing_or_broken_artifact_is_a_note_and_the_rest_still_shows(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    plan = store.put("plan.json", b'[{"Plan": 3}]', "application/json")
    gone = ArtifactRef(name="result.csv", sha256="f" * 64, size=10, media_type="text/csv")
    job = _job(JobType.sql, [gone, plan])
    event = _event(1, "tool.sql.query", {"statement": "SELECT 1"}, [gone.sha256, plan.sha256])
    html = str(render_evidence(job, [event], store))
    assert "result.csv is missing from the artifact store" in html
    assert "plan.json is not a plan the console can read" in html
    assert 'id="ev-timeline"' in html and "tool.sql.query" in html


def test_approvals_show_how_the_decider_was_authenticated(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    now = datetime.now(UTC)
    gate = {"action": "merge", "action_hash": "b" * 64, "rule_id": "demo.merge.review",
            "approvers": ["bob"], "four_eyes": True, "requested_at": now, "decision": "approved",
            "decided_by": "bob", "decided_at": now}  # fmt: skip
    job = _job(JobType.code, [], approvals=[gate])
    granted = _event(5, "approval.granted", {"action_hash": "b" * 64}, [])
    granted = granted.model_copy(
        update={"actor": "bob via console oidc https://idp.example (sub 00u1)"}
    )
    html = str(render_evidence(job, [granted], store))
    section = re.search(r'id="ev-approvals".*?</section>', html, re.S)
    assert section and "bob via console oidc https://idp.example (sub 00u1)" in section.group(0)
    assert "event #5" in section.group(0)


def test_formulas_left_behind_by_openpyxls_insert_rows_are_flagged_on_the_page():
    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(["item", "price", "rate", "amount"])
    for r in range(2, 302):
        sheet.append([f"item {r}", r * 1.5, 1.1, f"=B{r}*C{r}"])
    before = io.BytesIO()
    book.save(before)
    sheet.insert_rows(100)  # openpyxl moves the cells, not the references in formulas
    sheet["A100"], sheet["D100"] = "new", "=B100*C100"
    after = io.BytesIO()
    book.save(after)
    done = review_document("prices.xlsx", before.getvalue(), after.getvalue())
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WorkbookReview) and not block.unread
    assert block.warnings == [done.diff.sheets[0].shifted[0].sentence("Sheet1")]
    assert block.warnings[0].startswith("202 formulas in Sheet1!D now refer to the row above")
    html = str(render_workbook(block))
    assert 'class="ev-warning"' in html
    assert html.count("same text, other cells now") == 202


def test_a_dates_type_change_reads_back_and_shows_both_kinds():
    import datetime as dt

    def book(due: object, took: object) -> bytes:
        made = Workbook()
        made.active.title = "Plan"
        made.active.append(["due", "took", "count"])
        made.active.append([due, took, 5])
        out = io.BytesIO()
        made.save(out)
        return out.getvalue()

    old = book(dt.datetime(2026, 3, 1), dt.timedelta(hours=1, minutes=30))
    new = book("2026-03-01", dt.timedelta(hours=2))
    done = review_document("plan.xlsx", old, new)
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WorkbookReview) and not block.unread
    shown = [(c.new_cell, c.old, c.new) for c in block.diff.sheets[0].changes]
    assert shown == [(c.new_cell, c.old, c.new) for c in done.diff.sheets[0].changes]
    assert ("A2", dt.date(2026, 3, 1), "2026-03-01") in shown
    assert block.looks == ["Plan: format A2 number format: 'yyyy-mm-dd h:mm:ss' -> 'General'"]
    html = str(render_workbook(block))
    assert "2026-03-01 (date)" in html and "ev-v-date" in html and "ev-v-text" in html


def test_a_renamed_sheet_reads_back_as_a_rename():
    def book(name: str, value: int) -> bytes:
        made = Workbook()
        made.active.title = name
        for r in range(1, 20):
            made.active.append([f"row {r}", r if r != 5 else value])
        out = io.BytesIO()
        made.save(out)
        return out.getvalue()

    done = review_document("q.xlsx", book("Q3", 5), book("Q3 final", 50))
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WorkbookReview) and not block.unread
    assert [(s.name, s.renamed_from) for s in block.diff.sheets] == [("Q3 final", "Q3")]
    assert "<strong>Q3</strong> renamed to <strong>Q3 final</strong>" in str(render_workbook(block))
