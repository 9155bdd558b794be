"""Doc jobs end to end: steps in a worktree of a docs repo -> a format-aware review -> merge.

Real git, bubblewrap, openpyxl and python-docx; the repository is built by the test with a
workbook (formulas included) and a Word document, so every diff is computed on real files.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from docx import Document as WordDocument
from openpyxl import Workbook, load_workbook

from runtime.engine import Engine
from runtime.jobs import JobRecord, JobState
from runtime.settings import SAMPLES_DIR, Settings
from runtime.worker import Worker
from tests.conftest import BUNDLED_POLICY

WEEKLY = "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path) -> Path:
    shutil.copytree(SAMPLES_DIR / "reports", path)
    book = Workbook()
    sheet = book.active
    sheet.title = "Budget"
    for row in [("team", "q1", "q2"), ("payments", 40, 42), ("ledger", 10, 12), ("infra", 7, 9)]:
        sheet.append(row)
    sheet["D2"] = "=B2+C2"
    book.save(path / "budget.xlsx")
    doc = WordDocument()
    doc.add_heading("Runbook", level=1)
    doc.add_paragraph("Page the on-call engineer.")
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "service", "owner"
    table.cell(1, 0).text, table.cell(1, 1).text = "payments", "alice"
    doc.save(path / "runbook.docx")
    git(path, "init", "-q", "-b", "main")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "reports")
    return path


def write_policy(folder: Path, repo: Path, *, model: dict | None = None) -> Path:
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    policy["targets"]["repos"]["reports"] = {
        "path": str(repo), "base_branch": "main", "publish": "merge",
        "description": "the test's docs repo",
    }  # fmt: skip
    for grant in policy["roles"]["engineer"]["grants"]:
        if grant["id"] == "engineer.doc.reports":
            grant["tools"] = ["fs.read", "fs.write", "docs", "shell"]
    if model:
        policy["models"]["routes"].insert(0, model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


@contextlib.asynccontextmanager
async def engine_for(tmp_path: Path, repo: Path) -> AsyncIterator[Engine]:
    """A service on SQLite in tmp_path whose policy's `reports` target is `repo`."""
    settings = Settings.from_env(
        {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
            "ACP_POLICY_DIR": str(write_policy(tmp_path / "policy", repo)),
        }
    )
    engine = await Engine.open(settings)
    try:
        yield engine
    finally:
        await engine.close()


@pytest.fixture
async def docs(tmp_path: Path):
    repo = make_repo(tmp_path / "reports")
    async with engine_for(tmp_path, repo) as engine:
        yield engine, repo


async def run_job(engine: Engine, text: str, person: str = "alice") -> JobRecord:
    job = await engine.submit(f"doc reports: {text}", engine.actor("cli", person))
    assert job.state is JobState.queued, (job.state, job.decision)
    return await settle(engine, job.id)


async def settle(engine: Engine, job_id: int) -> JobRecord:
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


def text_of(engine: Engine, job: JobRecord, name: str) -> str:
    ref = next(a for a in reversed(job.artifacts) if a.name == name)
    return engine.artifacts.read(ref.sha256).decode()


def blob(repo: Path, spec: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "show", spec], check=True, capture_output=True
    ).stdout


def main_has(repo: Path, path: str) -> bool:
    return path in git(repo, "ls-tree", "-r", "--name-only", "main").split()


# --- made from a template, reviewed, published ----------------------------------------------


async def test_weekly_summary_workbook_from_a_template_reviewed_then_published(docs) -> None:
    engine, repo = docs
    job = await run_job(engine, f"weekly incident summary from incidents.csv {WEEKLY}")
    assert job.state is JobState.awaiting_approval, job.result
    review = text_of(engine, job, "document-diff.txt")
    assert "out/weekly.xlsx (xlsx)" in review
    assert "sheet 'By severity' added" in review
    assert "SEV1" in review and "payments-api" in review
    preview = text_of(engine, job, "preview.txt")
    assert "By severity" in preview and "severity" in preview
    # The whole structured diff, uncapped, for the reviewer who needs every cell.
    whole = json.loads(text_of(engine, job, "document-diff.json"))["documents"]
    book = next(d for d in whole if d["path"] == "out/weekly.xlsx")
    assert book["status"] == "added" and book["summary"] in review
    sheets = {s["name"]: s for s in book["diff"]["sheets"]}
    added = [c for h in sheets["By severity"]["hunks"] for c in h["changes"]]
    assert {"new_cell": "A1", "new": "severity"}.items() <= added[0].items()
    assert any("out/weekly.xlsx" in line for line in job.pending_action.documents)
    assert not main_has(repo, "out/weekly.xlsx")  # nothing published before approval

    await engine.approve(job.id, engine.actor("cli", "bob"))
    job = await settle(engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert main_has(repo, "out/weekly.xlsx")
    book = load_workbook(io.BytesIO(blob(repo, "main:out/weekly.xlsx")))
    rows = list(book["By severity"].iter_rows(values_only=True))
    assert rows[0] == ("severity", "incidents") and ("SEV1", 1) in rows


async def test_changed_data_shows_as_rows_added_not_every_row_changed(docs) -> None:
    engine, _ = docs
    job = await run_job(engine, WEEKLY)
    await engine.approve(job.id, engine.actor("cli", "bob"))
    assert (await settle(engine, job.id)).state is JobState.succeeded
    # One more incident in the middle of the log (by id): the report gains a row there.
    line = "INC-1035,2026-11-17,ledger,SEV2,30,Ledger export stalled"
    job = await run_job(
        engine,
        f"add INC-1035 run `sed -i '4a {line}' incidents.csv` {WEEKLY}",
    )
    assert job.state is JobState.awaiting_approval, job.result
    review = text_of(engine, job, "document-diff.txt")
    incidents = review.split("sheet 'Incidents'")[1]
    assert "inserted" in incidents and "INC-1035" in incidents
    assert "INC-107" not in incidents  # rows below the insertion are not reported as changed
    assert "incidents.csv" in review  # the CSV's text diff is in the same review
    assert "+INC-1035" in review


async def test_word_report_shows_paragraphs_and_headings(docs) -> None:
    engine, _ = docs
    job = await run_job(engine, "`template templates/weekly.md.j2 out/weekly.docx incidents.csv`")
    assert job.state is JobState.awaiting_approval, job.result
    review = text_of(engine, job, "document-diff.txt")
    assert "out/weekly.docx (docx)" in review
    assert "Weekly incident summary" in review
    preview = text_of(engine, job, "preview.txt")
    assert "Weekly incident summary" in preview and "By severity" in preview


# --- bad documents: a clear error, nothing published ---------------------------------------


@pytest.mark.parametrize(
    "step, words",
    [
        ("run `echo 'just text' > fake.xlsx`", "fake.xlsx is not an XLSX"),
        ("run `head -c 900 budget.xlsx > broken.xlsx`", "broken.xlsx is corrupt"),
        ("run `cp budget.xlsx runbook.docx`", "runbook.docx is an XLSX workbook, not a DOCX"),
        ("run `head -c 52428800 /dev/zero > big.xlsx`", "big.xlsx is 50.0 MB"),
    ],
    ids=["text-as-xlsx", "corrupt-xlsx", "xlsx-as-docx", "50mb"],
)
async def test_bad_document_fails_with_a_clear_error_and_nothing_is_published(
    docs, step, words
) -> None:
    engine, repo = docs
    before = git(repo, "rev-parse", "main")
    job = await run_job(engine, step)
    assert job.state is JobState.failed, job.result
    assert words in job.result["reason"]
    assert "nothing was published" in job.result["reason"]
    assert git(repo, "rev-parse", "main") == before
    assert [e for e in await engine.events(job.id) if e.kind == "document.refused"]


async def test_template_mistakes_name_the_file_and_line(docs) -> None:
    engine, _ = docs
    job = await run_job(
        engine,
        "run `printf '# T\\n{{ rows | nosuch }}\\n' > templates/bad.md.j2` "
        "`template templates/bad.md.j2 out/x.md incidents.csv`",
    )
    assert job.state is JobState.failed
    assert "templates/bad.md.j2" in job.result["reason"]
    assert "nosuch" in job.result["reason"]
    job = await run_job(engine, "`template templates/weekly.md.j2 ../escape.md incidents.csv`")
    assert job.state is JobState.failed and "'..'" in job.result["reason"]


# --- with a model: the document tools ------------------------------------------------------


async def test_model_changes_cells_and_the_review_shows_the_cells_and_formulas(
    tmp_path, monkeypatch
):
    from tests.standins.model_standin import ModelStandIn, call, say

    repo = make_repo(tmp_path / "reports")
    async with ModelStandIn(api_key="sk-doc-test") as standin:
        route = {
            "id": "models.doc.standin",
            "job_types": ["doc"],
            "model": "openai/gpt-4o-mini",
            "api_base": standin.base_url,
            "api_key_env": "ACP_DOC_TEST_KEY",
        }
        settings = Settings.from_env(
            {
                "ACP_HOME": str(tmp_path / "home"),
                "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
                "ACP_POLICY_DIR": str(write_policy(tmp_path / "policy", repo, model=route)),
            }
        )
        monkeypatch.setenv("ACP_DOC_TEST_KEY", "sk-doc-test")
        engine = await Engine.open(settings)
        try:
            standin.script(
                "gpt-4o-mini",
                call("read_document", path="budget.xlsx"),
                call(
                    "set_cells",
                    path="budget.xlsx",
                    sheet="Budget",
                    cells='{"C3": 13, "D2": "=B2+C2+1"}',
                ),
                say("Raised ledger's q2 to 13 and fixed the total."),
            )
            job = await run_job(engine, "raise ledger's q2 budget to 13")
            assert job.state is JobState.awaiting_approval, job.result
            review = text_of(engine, job, "document-diff.txt")
            assert "budget.xlsx (xlsx)" in review
            assert "C3" in review and "12 -> 13" in review
            assert "=B2+C2 -> =B2+C2+1" in review
            seen = standin.requests_for("gpt-4o-mini")[1].messages[-1]["content"]
            assert "payments" in seen and "=B2+C2" in seen  # the model read the workbook
        finally:
            await engine.close()


async def test_request_without_steps_asks_for_a_template_step_and_runs_with_the_answer(docs):
    engine, _ = docs
    alice = engine.actor("cli", "alice")
    job = await engine.submit("doc reports: weekly incident summary from incidents.csv", alice)
    assert job.state is JobState.needs_clarification
    assert "`template templates/weekly.md.j2" in job.clarification.question
    job = await engine.answer(job.id, alice, WEEKLY)
    job = await settle(engine, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    assert "out/weekly.xlsx (xlsx): new workbook" in text_of(engine, job, "document-diff.txt")
