"""The picture of a doc job's change: each changed sheet's region and each changed Word page,
before and after, drawn by the real LibreOffice (in bubblewrap) and pdftoppm, the changed
cells highlighted; read back with Pillow, pixel by pixel.

Real files (openpyxl, python-docx), real soffice, real PNG decoding. "LibreOffice is not
installed" is made real by pointing ACP_SOFFICE at a path where no program is.
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import pytest
from docx import Document as WordDocument
from openpyxl import Workbook
from PIL import Image

from bot.cli.render import render_job
from bot.console.evidence import render_evidence
from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.kinds import registry
from runtime.kinds.doc import diff as doc_diff
from runtime.kinds.doc.picture import missing, render_pictures, rgb
from runtime.kinds.doc.picture.render import PAGE_PIXELS
from runtime.kinds.doc.picture.soffice import Drawing, NotDrawn, draw
from tests.kinds.doc.test_doc_jobs import engine_for, git, settle


@pytest.fixture(autouse=True, scope="module")
def _libreoffice_installed() -> None:
    """These tests draw with the real LibreOffice and poppler; the set-up installs both, so a
    missing one fails here with what to run rather than skipping."""
    missing = [tool for tool in ("soffice", "pdftoppm") if shutil.which(tool) is None]
    assert not missing, f"{missing} not installed: run scripts/setup.sh test"


CELL_PIXELS = 2_000  # a default-sized cell on a letter page 1,584 pixels wide: ~130 x 30


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    data = image.convert("RGB").tobytes()
    return list(zip(data[0::3], data[1::3], data[2::3], strict=True))


def near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """Pixels within `tolerance` of `colour` on every channel."""
    r0, g0, b0 = colour
    return sum(
        1
        for r, g, b in pixels(image)
        if abs(r - r0) <= tolerance and abs(g - g0) <= tolerance and abs(b - b0) <= tolerance
    )


def workbook(budget_q2: int, plan: list[tuple], *, notes: str = "same") -> bytes:
    """Three sheets: Budget (one cell differs between versions), Plan (rows given), Notes."""
    book = Workbook()
    budget = book.active
    budget.title = "Budget"
    for row in [("team", "q1", "q2"), ("payments", 40, 42), ("ledger", 10, budget_q2)]:
        budget.append(row)
    budget["D2"] = "=B2+C2"
    sheet = book.create_sheet("Plan")
    for row in plan:
        sheet.append(row)
    book.create_sheet("Notes").append([notes])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def word(owner: str, extra: str | None) -> bytes:
    doc = WordDocument()
    doc.add_heading("Runbook", level=1)
    doc.add_paragraph("Page the on-call engineer.")
    if extra:
        doc.add_paragraph(extra)
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "service", "owner"
    table.cell(1, 0).text, table.cell(1, 1).text = "payments", owner
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


PLAN_OLD = [("item", "owner", "due"), ("audit", "ann", "may"), ("backup", "bo", "june")]
PLAN_NEW = [("item", "owner", "due"), ("audit", "cy", "july"), ("backup", "bo", "june")]


async def pictures_of(path: str, old: bytes | None, new: bytes | None):
    review = doc_diff.review(path, old, new)
    assert review is not None
    return await render_pictures([(review, old, new)])


def png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()  # decodes every pixel: a broken PNG fails here
    return image


# --- the pictures ------------------------------------------------------------------------


async def test_each_changed_sheet_is_pictured_before_and_after_with_its_cells_highlighted():
    old = workbook(12, PLAN_OLD)
    new = workbook(13, PLAN_NEW)
    drawn = await pictures_of("reports/budget.xlsx", old, new)
    assert drawn.notes == []
    names = [p.name for p in drawn.pictures]
    # One PNG per changed sheet and side, in the workbook's order; none of the unchanged Notes.
    assert names == [
        "budget-Budget-before.png",
        "budget-Budget-after.png",
        "budget-Plan-before.png",
        "budget-Plan-after.png",
    ]
    highlighted = {}
    for picture in drawn.pictures:
        image = png(picture.png)
        assert image.width > 100 and image.height > 50
        side = "before" if picture.name.endswith("-before.png") else "after"
        other = "after" if side == "before" else "before"
        highlighted[picture.name] = near(image, rgb(side))
        assert highlighted[picture.name] > CELL_PIXELS // 2, picture.name
        assert near(image, rgb(other)) == 0, picture.name  # each side has its own colour
        assert f"sheet {picture.name.split('-')[1]}, {side}" in picture.caption
    # Budget changed one cell, Plan two: twice the highlighted area, not the whole sheet.
    for side in ("before", "after"):
        ratio = highlighted[f"budget-Plan-{side}.png"] / highlighted[f"budget-Budget-{side}.png"]
        assert 1.6 < ratio < 2.4, (side, highlighted)


async def test_the_highlight_sits_on_the_changed_cell_not_on_its_neighbours():
    old = workbook(12, PLAN_OLD)
    new = workbook(13, PLAN_OLD)  # only Budget!C3
    drawn = await pictures_of("budget.xlsx", old, new)
    after = next(p for p in drawn.pictures if p.name == "budget-Budget-after.png")
    assert [p.name for p in drawn.pictures] == ["budget-Budget-before.png", after.name]
    assert "B1:D5" in after.caption  # C3 with a row and a column of margin
    image = png(after.png)
    r0, g0, b0 = rgb("after")
    marked = [
        (i % image.width, i // image.width)
        for i, (r, g, b) in enumerate(pixels(image))
        if abs(r - r0) <= 12 and abs(g - g0) <= 12 and abs(b - b0) <= 12
    ]
    xs, ys = [x for x, _ in marked], [y for _, y in marked]
    # The region is 3 columns (B, C, D) by 5 rows under a heading row and column: C3 is the
    # middle column's third row, so the fill's box sits in the middle third across and the
    # middle of the height.
    width, height = image.width, image.height
    assert width * 0.3 < min(xs) < max(xs) < width * 0.8, (min(xs), max(xs), width)
    assert height * 0.35 < min(ys) < max(ys) < height * 0.75, (min(ys), max(ys), height)


async def test_a_new_sheet_has_only_an_after_picture_and_a_large_region_says_it_was_cut():
    old = workbook(12, PLAN_OLD)
    book = Workbook()
    book.active.title = "Budget"
    for row in [("team", "q1", "q2"), ("payments", 40, 42), ("ledger", 10, 12)]:
        book.active.append(row)
    book.active["D2"] = "=B2+C2"
    book.create_sheet("Plan")
    for row in PLAN_OLD:
        book["Plan"].append(row)
    book.create_sheet("Notes").append(["same"])
    big = book.create_sheet("Log")
    for r in range(1, 101):
        big.append([f"row {r}", *range(20)])
    out = io.BytesIO()
    book.save(out)
    drawn = await pictures_of("budget.xlsx", old, out.getvalue())
    assert [p.name for p in drawn.pictures] == ["budget-Log-after.png"]
    (log,) = drawn.pictures
    assert "cut to 40 rows x 12 columns of A1:U100; 1,620 changed cell(s) not shown" in log.caption
    assert near(png(log.png), rgb("after")) > 40 * CELL_PIXELS // 2  # a new sheet: all new


async def test_a_word_documents_changed_paragraph_and_table_cell_are_highlighted_on_the_page():
    old, new = word("alice", None), word("bob", "Escalate after 15 minutes.")
    drawn = await pictures_of("runbook.docx", old, new)
    assert drawn.notes == []
    assert [p.name for p in drawn.pictures] == [
        "runbook-page1-before.png",
        "runbook-page1-after.png",
    ]
    before, after = (png(p.png) for p in drawn.pictures)
    # After: a whole paragraph and a cell; before: only the cell (the paragraph is new).
    assert near(after, rgb("after")) > 1.5 * near(before, rgb("before")) > 0
    assert near(before, rgb("after")) == 0 and near(after, rgb("before")) == 0
    assert "page 1 of 1, after" in drawn.pictures[1].caption


async def test_a_page_of_any_paper_size_is_drawn_no_larger_than_its_bound():
    from docx.shared import Inches

    def poster(owner: str) -> bytes:
        doc = WordDocument(io.BytesIO(word(owner, None)))
        doc.sections[0].page_width = doc.sections[0].page_height = Inches(22)  # Word's largest
        out = io.BytesIO()
        doc.save(out)
        return out.getvalue()

    drawn = await pictures_of("poster.docx", poster("alice"), poster("bob"))
    assert len(drawn.pictures) == 2, drawn.notes
    for picture in drawn.pictures:
        image = png(picture.png)
        assert image.width <= PAGE_PIXELS and image.height <= PAGE_PIXELS
        assert near(image, rgb(picture.name.split("-")[-1].removesuffix(".png"))) > 0


def test_the_copy_that_is_drawn_carries_no_macro_project():
    import zipfile

    from runtime.kinds.doc.diff.model import DocumentDiff
    from runtime.kinds.doc.picture.marking import mark_document

    plain = zipfile.ZipFile(io.BytesIO(word("alice", None)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as armed:  # a Word document with a VBA project related
        for info in plain.infolist():
            data = plain.read(info.filename)
            if info.filename == "word/_rels/document.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/'
                    b'relationships/vbaProject" Target="vbaProject.bin"/></Relationships>',
                )
            if info.filename == "[Content_Types].xml":
                data = data.replace(
                    b"</Types>",
                    b'<Default Extension="bin" ContentType="application/vnd.ms-office.'
                    b'vbaProject"/></Types>',
                )
            armed.writestr(info, data)
        armed.writestr("word/vbaProject.bin", b"\xd0\xcf\x11\xe0 a macro project")
    assert "word/vbaProject.bin" in zipfile.ZipFile(io.BytesIO(out.getvalue())).namelist()
    drawn, _ = mark_document(out.getvalue(), DocumentDiff(status="changed"), "after")
    copy = zipfile.ZipFile(io.BytesIO(drawn))
    assert not [n for n in copy.namelist() if "vba" in n.lower()]
    assert b"vbaProject" not in copy.read("word/_rels/document.xml.rels")


async def test_a_render_past_its_deadline_is_killed_and_says_so():
    drawing = Drawing("budget.xlsx", workbook(12, PLAN_OLD), 1100)
    started = time.monotonic()
    with pytest.raises(NotDrawn, match="did not finish within"):
        await draw([drawing], timeout_s=0.3)
    assert time.monotonic() - started < 3  # killed at its deadline, not left to finish
    assert drawing.pages == []


async def test_without_libreoffice_nothing_is_drawn_and_the_review_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("ACP_SOFFICE", str(tmp_path / "no-libreoffice-here" / "soffice"))
    assert missing() == "LibreOffice is not installed"
    drawn = await pictures_of("budget.xlsx", workbook(12, PLAN_OLD), workbook(13, PLAN_OLD))
    assert drawn.pictures == []
    assert drawn.notes == ["not rendered (LibreOffice is not installed)"]


# --- in a doc job: the review, `acp show`, the console -------------------------------------


def pictured_repo(path: Path) -> Path:
    """A docs repo with a workbook and a Word document, and their next versions beside them."""
    path.mkdir(parents=True)
    (path / "budget.xlsx").write_bytes(workbook(12, PLAN_OLD))
    (path / "budget-v2.xlsx").write_bytes(workbook(13, PLAN_NEW))
    (path / "runbook.docx").write_bytes(word("alice", None))
    (path / "runbook-v2.docx").write_bytes(word("bob", "Escalate after 15 minutes."))
    git(path, "init", "-q", "-b", "main")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "reports")
    return path


@pytest.fixture
async def pictured(tmp_path: Path):
    repo = pictured_repo(tmp_path / "reports")
    async with engine_for(tmp_path, repo) as engine:
        yield engine, repo


NEXT_VERSIONS = (
    "doc reports: next quarter run `cp budget-v2.xlsx budget.xlsx` "
    "`cp runbook-v2.docx runbook.docx`"
)


async def submit(engine: Engine, text: str):
    job = await engine.submit(text, engine.actor("cli", "alice"))
    assert job.state is JobState.queued, (job.state, job.decision)
    return await settle(engine, job.id)


async def test_a_doc_job_awaits_approval_with_its_pictures_attached_and_shown(pictured):
    engine, repo = pictured
    job = await submit(engine, NEXT_VERSIONS)
    assert job.state is JobState.awaiting_approval, job.result
    pending = job.pending_action
    names = [p.name for p in pending.pictures]
    assert names == [
        "budget-Budget-before.png",
        "budget-Budget-after.png",
        "budget-Plan-before.png",
        "budget-Plan-after.png",
        "runbook-page1-before.png",
        "runbook-page1-after.png",
    ]
    stored = {a.sha256: a for a in job.artifacts}
    for picture in pending.pictures:
        assert stored[picture.sha256].media_type == "image/png"
        assert png(engine.artifacts.read(picture.sha256)).width > 100

    # What every door shows: the pictures as files to attach (Slack uploads them with the
    # approval request), a line saying what they are.
    shown = registry.kind_for(job.spec.job_type).evidence(job)
    assert [a.filename for a in shown.attach] == names
    assert any(ln.label == "picture" and "6 pictures" in ln.text for ln in shown.lines)
    text = render_job(None, job, with_diff=False)  # type: ignore[arg-type]
    assert "files       : budget-Budget-before.png" in text
    assert "picture     : 6 pictures of the changed region" in text

    # The console's job page: an <img> per picture, served by /artifacts/<sha256>.
    html = str(render_evidence(job, await engine.events(job.id), engine.artifacts))
    for picture in pending.pictures:
        assert f'src="/artifacts/{picture.sha256}"' in html
    assert "Pictures of the change" in html

    # Approved and published: the published documents are the files, not the pictures.
    await engine.approve(job.id, engine.actor("cli", "bob"))
    done = await settle(engine, job.id)
    assert done.state is JobState.succeeded, done.result
    ended = registry.kind_for(done.spec.job_type).results(done)
    assert {a.filename for a in ended.attach} == {"budget.xlsx", "runbook.docx"}
    assert "budget.xlsx" in git(repo, "log", "-1", "--name-only", "main")


async def test_without_libreoffice_the_job_still_awaits_approval_and_says_the_picture_is_missing(
    pictured, tmp_path, monkeypatch
):
    engine, _ = pictured
    monkeypatch.setenv("ACP_SOFFICE", str(tmp_path / "no-libreoffice-here" / "soffice"))
    job = await submit(engine, NEXT_VERSIONS)
    assert job.state is JobState.awaiting_approval, job.result
    assert job.pending_action.pictures == []
    assert not [a for a in job.artifacts if a.media_type == "image/png"]
    shown = registry.kind_for(job.spec.job_type).evidence(job)
    assert shown.attach == []
    text = render_job(None, job, with_diff=False)  # type: ignore[arg-type]
    assert "picture     : not rendered (LibreOffice is not installed)" in text
    html = str(render_evidence(job, await engine.events(job.id), engine.artifacts))
    assert "picture: not rendered (LibreOffice is not installed)" in html
    assert "document-diff.txt" in {a.name for a in job.artifacts}  # the review is all there
