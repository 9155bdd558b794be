"""The Word review beyond paragraphs and cells: runs' bold / italic / underline, table columns
inserted and deleted, headers and footers, comments, tracked changes, pictures, a capped review
and parts that cannot be read.

Every case is made twice: by python-docx, and by python-docx then saved again by LibreOffice
(`soffice --convert-to docx`), so the reader is proven on Word XML as a word processor writes
it. Each asserts the exact review text a reviewer is shown.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import docx
import pytest
from docx.enum.section import WD_SECTION
from docx.oxml import OxmlElement
from docx.oxml.ns import qn

from runtime.doc_formats import load_docx
from runtime.kinds.doc.diff import review

Edit = Callable[[docx.document.Document], None]
Pair = Callable[[Edit, Edit], tuple[bytes, bytes]]


def png(rgb: tuple[int, int, int]) -> bytes:
    """A 4x4 PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + bytes(rgb) * 4 for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))  # fmt: skip


RED, BLUE = png((255, 0, 0)), png((0, 0, 255))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def made(edit: Edit) -> bytes:
    document = docx.Document()
    document.add_heading("Budget", level=1)
    edit(document)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def libreoffice(files: dict[str, bytes], work: Path) -> dict[str, bytes]:
    """The files opened and saved again as DOCX by LibreOffice (one soffice run)."""
    source, target, home = work / "in", work / "out", work / "home"
    for folder in (source, target, home):
        folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (source / name).write_bytes(data)
    subprocess.run(
        ["soffice", "--headless", f"-env:UserInstallation=file://{home}/profile",
         "--convert-to", "docx", "--outdir", str(target), *(str(source / n) for n in files)],
        env={**os.environ, "HOME": str(home)}, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return {name: (target / name).read_bytes() for name in files}


@pytest.fixture(params=["python-docx", "libreoffice"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Pair:
    """Old and new bytes from two edits of a document with the heading 'Budget'."""

    def make(old: Edit, new: Edit) -> tuple[bytes, bytes]:
        files = {"old.docx": made(old), "new.docx": made(new)}
        if request.param == "libreoffice":
            assert shutil.which("soffice"), "LibreOffice is missing: run scripts/setup.sh test"
            files = libreoffice(files, tmp_path)
        return files["old.docx"], files["new.docx"]

    return make


def rendered(old: bytes | None, new: bytes | None, max_lines: int = 400) -> str:
    done = review("f.docx", old, new, max_lines=max_lines)
    assert done is not None
    return done.diff_text


def test_a_paragraph_restyled_and_one_reworded_under_their_heading(pair: Pair):
    def body(style: str, text: str) -> Edit:
        def edit(document: docx.document.Document) -> None:
            document.add_paragraph("Scope", style=style)
            document.add_paragraph(text)

        return edit

    old, new = pair(body("Normal", "Costs fell by 5%."), body("Heading 2", "Costs fell by 7%."))
    assert rendered(old, new) == (
        "f.docx (docx): 2 paragraphs changed\n"
        "  in 'Scope':\n"  # a heading heads its own section (in the new version)
        "    ~ [Normal -> Heading 2] Scope\n"
        "    ~ [Normal] Costs fell by [-5-]{+7+}%.\n"
    )


def sentence(bold: str = "", italic: str = "") -> Edit:
    """'The total is 5 million this year.' with '5 million' / 'this year' bold or italic."""

    def edit(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph("The total is ")
        for text in ("5 million", " ", "this year", "."):
            run = paragraph.add_run(text)
            run.bold = text == bold or None
            run.italic = text == italic or None

    return edit


def test_a_run_made_bold_and_one_no_longer_italic_are_named_with_their_text(pair: Pair):
    old, new = pair(sentence(italic="this year"), sentence(bold="5 million"))
    assert rendered(old, new) == (
        "f.docx (docx): 1 paragraph changed\n"
        "  in 'Budget':\n"
        "    ~ [Normal] The total is 5 million this year.\n"
        "      + bold '5 million'\n"
        "      - italic 'this year'\n"
    )


def test_a_run_given_a_character_style_names_the_style(pair: Pair):
    def strong(style: str | None) -> Edit:
        def edit(document: docx.document.Document) -> None:
            paragraph = document.add_paragraph("The total is ")
            paragraph.add_run("5 million", style=style)
            paragraph.add_run(".")

        return edit

    old, new = pair(strong(None), strong("Strong"))
    assert rendered(old, new) == (
        "f.docx (docx): 1 paragraph changed\n"
        "  in 'Budget':\n"
        "    ~ [Normal] The total is 5 million.\n"
        "      + style 'Strong' '5 million'\n"
    )


def test_formatting_split_over_runs_reads_as_one_span():
    def split(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph("The total is ")
        for text in ("5 ", "mil", "lion"):
            paragraph.add_run(text).bold = True

    (paragraph,) = load_docx("f.docx", made(split)).paragraphs[1:]
    assert paragraph.marks == [("bold", 13, 22)]
    assert paragraph.text[13:22] == "5 million"


def grid(rows: list[list[str]]) -> Edit:
    def edit(document: docx.document.Document) -> None:
        table = document.add_table(rows=len(rows), cols=len(rows[0]))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                table.cell(r, c).text = text

    return edit


QUARTERS = [["region", "q1", "q2", "q3"], ["north", "1", "2", "3"], ["south", "4", "5", "6"]]


def test_a_changed_cell_is_named_by_its_row_and_column_headers(pair: Pair):
    changed = [list(row) for row in QUARTERS]
    changed[2][2] = "50"
    old, new = pair(grid(QUARTERS), grid(changed))
    assert rendered(old, new) == (
        "f.docx (docx): 1 table changed (1 cell changed)\n"
        "  in 'Budget':\n"
        "    ~ table 1 (3x4)\n"
        "        r3c3    (row 'south', column 'q2') '5' -> '50'\n"
    )


def test_a_column_inserted_in_the_middle_is_reported_once(pair: Pair):
    extra = ["q1b", "7", "8"]
    wider = [[*row[:2], added, *row[2:]] for row, added in zip(QUARTERS, extra, strict=True)]
    wider[2][4] = "60"  # right of the new column: compared with its moved column
    old, new = pair(grid(QUARTERS), grid(wider))
    assert rendered(old, new) == (
        "f.docx (docx): 1 table changed (1 cell changed, 1 column added)\n"
        "  in 'Budget':\n"
        "    ~ table 1 (3x4 -> 3x5)\n"
        "        + column 3: 'q1b' | '7' | '8'\n"
        "        r3c5 (was c4) (row 'south', column 'q3') '6' -> '60'\n"
    )


def test_a_column_deleted_and_a_row_added_in_one_table(pair: Pair):
    narrower = [[row[0], *row[2:]] for row in QUARTERS] + [["west", "9", "9"]]
    old, new = pair(grid(QUARTERS), grid(narrower))
    assert rendered(old, new) == (
        "f.docx (docx): 1 table changed (1 row added, 1 column removed)\n"
        "  in 'Budget':\n"
        "    ~ table 1 (3x4 -> 4x3)\n"
        "        - column 2: 'q1' | '1' | '4'\n"
        "        + row 4: 'west' | '9' | '9'\n"
    )


def test_a_column_and_a_row_inserted_together_leave_the_other_cells_paired(pair: Pair):
    rows = [["region", "q1", "q2"]] + [[f"r{i}", str(i), str(i * 2)] for i in range(1, 7)]
    wider = [[row[0], f"n{k}", *row[1:]] for k, row in enumerate(rows)]
    wider.insert(3, ["west", "z", "z", "z"])
    wider[6][3] = "99"
    old, new = pair(grid(rows), grid(wider))
    assert rendered(old, new) == (
        "f.docx (docx): 1 table changed (1 cell changed, 1 row added, 1 column added)\n"
        "  in 'Budget':\n"
        "    ~ table 1 (7x3 -> 8x4)\n"
        "        + column 2: 'n0' | 'n1' | 'n2' | 'z' | 'n3' | 'n4' | 'n5' | 'n6'\n"
        "        r7c4 (was r6c3) (row 'r5', column 'q2') '10' -> '99'\n"
        "        + row 4: 'west' | 'z' | 'z' | 'z'\n"
    )


def margins(header: str, footer: str = "", first_page: str = "") -> Edit:
    def edit(document: docx.document.Document) -> None:
        section = document.sections[0]
        section.header.paragraphs[0].text = header
        if footer:
            section.footer.paragraphs[0].text = footer
        if first_page:
            section.different_first_page_header_footer = True
            section.first_page_header.paragraphs[0].text = first_page
        document.add_paragraph("Body.")

    return edit


def test_headers_and_footers_changed_added_and_removed(pair: Pair):
    old, new = pair(
        margins("Acme quarterly", first_page="Draft"),
        margins("Acme Ltd quarterly", footer="Page footer"),
    )
    assert rendered(old, new) == (
        "f.docx (docx): 1 header/footer changed, 1 header/footer added, "
        "1 header/footer removed\n"
        "  ~ header: Acme {+Ltd +}quarterly\n"
        "  + footer: Page footer\n"
        "  - first-page header: Draft\n"
    )


def test_a_later_sections_own_header_is_named_by_its_section(pair: Pair):
    def sections(second: str) -> Edit:
        def edit(document: docx.document.Document) -> None:
            document.add_paragraph("One.")
            section = document.add_section(WD_SECTION.NEW_PAGE)
            section.header.is_linked_to_previous = False
            section.header.paragraphs[0].text = second
            document.add_paragraph("Two.")

        return edit

    old, new = pair(sections("Part A"), sections("Part B"))
    assert rendered(old, new) == (
        "f.docx (docx): 1 header/footer changed\n  ~ header (section 2): Part [-A-]{+B+}\n"
    )


def commented(*comments: tuple[str, str, str]) -> Edit:
    """Paragraphs 'Revenue grew.' and 'Costs fell.', with (run text, author, comment) on them."""

    def edit(document: docx.document.Document) -> None:
        texts = ("Revenue grew.", "Costs fell.")
        runs = {text: document.add_paragraph().add_run(text) for text in texts}
        for on, author, text in comments:
            document.add_comment(runs[on], text=text, author=author)

    return edit


def test_comments_added_and_removed_name_their_author_and_text(pair: Pair):
    old, new = pair(
        commented(("Revenue grew.", "Ann", "Source?")),
        commented(("Costs fell.", "Bob", "By how much?")),
    )
    assert rendered(old, new) == (
        "f.docx (docx): 1 comment added, 1 comment removed\n"
        "  + comment by 'Bob' on 'Costs fell.': 'By how much?'\n"
        "  - comment by 'Ann' on 'Revenue grew.': 'Source?'\n"
    )


def revision(tag: str, author: str, text: str = "") -> OxmlElement:
    """A w:ins, w:del, w:moveTo or w:rPrChange by `author`, holding a run of `text` if any."""
    element = OxmlElement(f"w:{tag}")
    for key, value in (("w:id", "1"), ("w:author", author), ("w:date", "2026-12-01T00:00:00Z")):
        element.set(qn(key), value)
    if tag == "rPrChange":
        element.append(OxmlElement("w:rPr"))  # the run's properties before the change
    elif text:
        run, t = OxmlElement("w:r"), OxmlElement("w:delText" if tag == "del" else "w:t")
        t.text = text
        t.set(qn("xml:space"), "preserve")
        run.append(t)
        element.append(run)
    return element


def tracked(*revisions: tuple[str, str, str]) -> Edit:
    """'The total is ' then (w:ins / w:del, text, author) revisions in one paragraph."""

    def edit(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph("The total is ")
        for tag, text, author in revisions:
            paragraph._p.append(revision(tag, author, text))

    return edit


def test_unaccepted_tracked_changes_are_flagged_first_and_listed(pair: Pair):
    old, new = pair(tracked(), tracked(("ins", "7 million", "Ann"), ("del", "5 million", "Bob")))
    assert rendered(old, new) == (
        "f.docx (docx): 2 unaccepted tracked changes, 1 paragraph changed, "
        "2 tracked changes added\n"
        "  ! 2 unaccepted tracked changes in the new version: publishing it publishes them as "
        "suggestions\n"
        "  + tracked change: inserted '7 million' by 'Ann'\n"
        "  + tracked change: deleted '5 million' by 'Bob'\n"
        "  in 'Budget':\n"
        "    ~ [Normal] The total is {+7 million+}\n"
    )


def test_tracked_changes_accepted_by_the_job_are_reported_gone(pair: Pair):
    def accepted(document: docx.document.Document) -> None:
        document.add_paragraph("The total is 7 million")

    old, new = pair(tracked(("ins", "7 million", "Ann")), accepted)
    assert rendered(old, new) == (
        "f.docx (docx): 1 tracked change accepted or rejected\n"
        "  - tracked change: inserted '7 million' by 'Ann'\n"
    )


def test_tracked_moves_and_formatting_count_as_unaccepted_too(pair: Pair):
    def revised(document: docx.document.Document) -> None:
        paragraph = document.add_paragraph()
        for text in ("Bold ", "now"):  # formatted in two runs: one tracked change
            run = paragraph.add_run(text)
            run.bold = True
            run._r.get_or_add_rPr().append(revision("rPrChange", "Cy"))
        document.add_paragraph("Moved here")._p.append(revision("moveTo", "Di", " and more"))

    old, new = pair(lambda document: None, revised)
    assert rendered(old, new) == (
        "f.docx (docx): 2 unaccepted tracked changes, 2 paragraphs added, "
        "2 tracked changes added\n"
        "  ! 2 unaccepted tracked changes in the new version: publishing it publishes them as "
        "suggestions\n"
        "  + tracked change: formatted 'Bold now' by 'Cy'\n"
        "  + tracked change: moved ' and more' by 'Di'\n"
        "  in 'Budget':\n"
        "    + [Normal] Bold now\n"
        "    + [Normal] Moved here and more\n"
    )


def pictures(*images: bytes) -> Edit:
    def edit(document: docx.document.Document) -> None:
        for image in images:
            document.add_picture(io.BytesIO(image))

    return edit


def test_a_picture_added_names_its_part_size_and_hash(pair: Pair):
    old, new = pair(pictures(RED), pictures(RED, BLUE))
    text = rendered(old, new)
    name = next(i.name for i in load_docx("f.docx", new).images if i.sha256.startswith(sha(BLUE)))
    assert text == (
        "f.docx (docx): 1 paragraph added, 1 picture added\n"
        f"  + picture {name} ({len(BLUE)} bytes, sha256 {sha(BLUE)})\n"
        "  in 'Budget':\n"
        "    + [Normal] \n"
    )


def test_a_picture_replaced_in_place_reads_as_changed(pair: Pair):
    old, new = pair(pictures(RED), pictures(BLUE))
    (image,) = load_docx("f.docx", new).images
    assert rendered(old, new) == (
        "f.docx (docx): 1 picture changed\n"
        f"  ~ picture {image.name} ({len(RED)} -> {len(BLUE)} bytes, sha256 {sha(RED)} -> "
        f"{sha(BLUE)})\n"
    )


def test_a_huge_review_shows_its_summary_then_stops_with_a_note(pair: Pair):
    def many(word: str) -> Edit:
        def edit(document: docx.document.Document) -> None:
            for n in range(150):
                document.add_paragraph(f"Line {n} says {word}.")
                document.add_comment(document.paragraphs[-1].runs[0], text=f"{word} {n}")

        return edit

    old, new = pair(many("old"), many("new"))
    lines = rendered(old, new, max_lines=6).splitlines()
    assert lines == [
        "f.docx (docx): 150 paragraphs changed, 150 comments added, 150 comments removed",
        "  + comment on 'Line 0 says new.': 'new 0'",
        "  + comment on 'Line 1 says new.': 'new 1'",
        "  + comment on 'Line 2 says new.': 'new 2'",
        "  + comment on 'Line 3 says new.': 'new 3'",
        "... 446 more changes not shown (all of them in the job's document-diff.json artifact)",
    ]


def rewritten(data: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """The DOCX with each entry passed through change(name, bytes) (None drops it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = change(info.filename, source.read(info))
            if content is not None:
                target.writestr(info, content)
    return out.getvalue()


def test_a_comments_part_that_is_not_xml_is_named_and_the_rest_reviewed(pair: Pair):
    old, _ = pair(commented(("Costs fell.", "Ann", "Why?")), commented())

    def damage(name: str, data: bytes) -> bytes:
        if name == "word/comments.xml":
            return b"<w:comments"
        return data.replace(b"Costs fell.", b"Costs rose.") if name == "word/document.xml" else data

    assert rendered(old, rewritten(old, damage)) == (
        "f.docx (docx): 1 part not read, 1 paragraph changed, 1 comment removed\n"
        "  ! not read: new version: word/comments.xml: not XML, left out\n"
        "  - comment by 'Ann' on 'Costs fell.': 'Why?'\n"
        "  in 'Budget':\n"
        "    ~ [Normal] Costs [-fell-]{+rose+}.\n"
    )


def test_a_picture_whose_relationship_or_file_is_missing_is_named(pair: Pair):
    old, new = pair(pictures(RED), pictures(RED))
    (image,) = load_docx("f.docx", new).images
    no_file = rewritten(new, lambda name, data: None if name == image.name else data)
    no_relationship = rewritten(
        new, lambda name, data: re.sub(rb'<Relationship [^>]*Target="media/[^>]*/>', b"", data)
        if name == "word/_rels/document.xml.rels" else data,
    )  # fmt: skip
    rid = re.search(rb'r:embed="(\w+)"', zipfile.ZipFile(io.BytesIO(new)).read("word/document.xml"))
    assert rid is not None
    picture = f"  - picture {image.name} ({len(RED)} bytes, sha256 {sha(RED)})"
    assert rendered(old, no_relationship).splitlines() == [
        "f.docx (docx): 1 part not read, 1 picture removed",
        f"  ! not read: new version: a picture: its relationship {rid[1].decode()} is missing",
        picture,
    ]
    assert rendered(old, no_file).splitlines() == [
        "f.docx (docx): 2 parts not read, 1 picture removed",
        f"  ! not read: new version: {image.name}: missing from the file, left out",
        f"  ! not read: new version: a picture: its relationship {rid[1].decode()} is missing",
        picture,
    ]


BODY = {"[Content_Types].xml", "_rels/.rels", "word/document.xml"}  # without them, no body
# The other parts the review reads: damage to one is named; the rest (fonts, theme, app
# properties, thumbnails, custom XML) it does not read, and their damage changes no review.
READ = re.compile(
    r"word/(comments|header\d*|footer\d*|styles|settings|numbering)\.xml|docProps/core\.xml"
    r"|word/_rels/document\.xml\.rels"
)


@pytest.mark.parametrize("damage", ["dropped", "not XML", "cut short"])
def test_any_other_part_damaged_is_named_and_never_stops_the_review(pair: Pair, damage: str):
    def rich(document: docx.document.Document) -> None:
        for edit in (margins("Acme", footer="Page"), commented(("Costs fell.", "Ann", "Why?")),
                     pictures(RED), tracked(("ins", "7 million", "Ann"))):  # fmt: skip
            edit(document)

    old, _ = pair(rich, rich)
    (picture,) = load_docx("f.docx", old).images
    names = set(zipfile.ZipFile(io.BytesIO(old)).namelist()) - BODY
    assert {n for n in names if READ.fullmatch(n)} >= {"word/comments.xml", "word/styles.xml"}
    for part in sorted(names):

        def change(name: str, data: bytes, part: str = part) -> bytes | None:
            if name != part:
                return data
            return None if damage == "dropped" else b"<" if damage == "not XML" else data[:-20]

        done = review("f.docx", old, rewritten(old, change))
        assert done is not None and done.diff is not None
        if READ.fullmatch(part) or (part == picture.name and damage == "dropped"):
            assert done.status == "changed", part
            assert "not read" in done.summary, (part, done.summary)
            problems = "\n".join(done.diff.unread)
            assert part in problems or "relationship" in problems, (part, problems)
            assert "  ! not read: new version: " in done.diff_text
        elif part == picture.name:
            assert done.summary == "1 unaccepted tracked change, 1 picture changed"


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_the_same_document_saved_again_by_libreoffice_is_no_change(tmp_path: Path):
    def rich(document: docx.document.Document) -> None:
        for edit in (margins("Acme", footer="Page", first_page="Draft"),
                     sentence(bold="5 million", italic="this year"), grid(QUARTERS),
                     commented(("Costs fell.", "Ann", "Why?")), pictures(RED, BLUE),
                     tracked(("ins", "7 million", "Ann"), ("del", "5", "Bob"))):  # fmt: skip
            edit(document)

    original = made(rich)
    saved = libreoffice({"f.docx": original}, tmp_path)["f.docx"]
    assert saved != original
    assert rendered(original, saved) == "f.docx (docx): no changes\n"
