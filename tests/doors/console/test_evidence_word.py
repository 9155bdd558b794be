"""The console reads a Word review's lines back: format marks, table columns, headers and
footers, pictures, tracked changes, comments and the warnings above them, from a review the doc
kind rendered of real python-docx files; and shows them escaped.
"""

from __future__ import annotations

import io
import zipfile

from bot.console.evidence.document import WordReview, read_review, words
from bot.console.evidence.templates import render
from runtime.kinds.doc.diff.dispatch import review as review_document
from tests.kinds.doc.test_docx_review import (
    BLUE,
    QUARTERS,
    RED,
    commented,
    grid,
    made,
    margins,
    pictures,
    sentence,
    tracked,
)

HOSTILE = "<script>alert(1)</script>"


def both(*edits):
    def edit(document) -> None:
        for one in edits:
            one(document)

    return edit


def read_back(old: bytes, new: bytes) -> tuple[WordReview, object]:
    done = review_document("report.docx", old, new)
    assert done is not None and done.diff is not None
    (block,) = read_review(done.diff_text)
    assert isinstance(block, WordReview)
    assert not block.unread, f"every line is read: {block.unread}"
    return block, done.diff


def test_every_word_review_line_reads_back_as_the_kind_recorded_it():
    wider = [[*row[:2], added, *row[2:]] for row, added in zip(QUARTERS, "x78", strict=True)]
    wider[1][4] = "30"
    old = made(
        both(
            margins("Acme quarterly", first_page="Draft"),
            sentence(italic="this year"),
            grid(QUARTERS),
            commented(("Costs fell.", "Ann", "Source?")),
            pictures(RED),
        )
    )
    new = made(
        both(
            margins("Acme Ltd quarterly", footer=HOSTILE),
            sentence(bold="5 million"),
            grid(wider),
            commented(("Costs fell.", "Bob", HOSTILE)),
            pictures(BLUE),
            tracked(("ins", "7 million", "Ann"), ("del", "5 million", "Bob")),
        )
    )
    block, recorded = read_back(old, new)
    shown = block.diff
    assert shown.tracked == recorded.tracked == 2
    assert shown.headers == recorded.headers
    assert shown.comments == recorded.comments
    assert shown.revisions == recorded.revisions
    assert [(i.kind, i.name, i.old_size, i.new_size) for i in shown.images] == [
        (i.kind, i.name, i.old_size, i.new_size) for i in recorded.images
    ]
    assert [i.new_sha256 for i in shown.images] == [
        (i.new_sha256 or "")[:12] for i in recorded.images
    ], "the review shows a hash's first 12 digits"
    paragraph = next(c for c in shown.changes if c.what == "paragraph" and c.marks_added)
    assert (paragraph.marks_added, paragraph.marks_removed) == (
        [("bold", "5 million")], [("italic", "this year")],
    )  # fmt: skip
    table = next(c for c in shown.changes if c.what == "table")
    same = next(c for c in recorded.changes if c.what == "table")
    assert table.columns_added == same.columns_added
    assert table.cells == same.cells
    assert (table.cells[0].col, table.cells[0].old_col) == (5, 4)

    html = str(render("_word.html", review=block, words=words))
    assert "2 unaccepted tracked changes" in html
    assert "now bold" in html and "no longer italic" in html
    assert "column inserted" in html and "(was column 4)" in html
    assert "comment added" in html and "tracked change added" in html and "picture" in html
    assert HOSTILE not in html and "&lt;script&gt;" in html


def test_a_part_not_read_is_shown_as_a_warning():
    old = made(commented(("Costs fell.", "Ann", "Why?")))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(old)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, b"<w:comments" if info.filename == "word/comments.xml" else data)
    block, _ = read_back(old, out.getvalue())
    assert block.diff.unread == ["new version: word/comments.xml: not XML, left out"]
    html = str(render("_word.html", review=block, words=words))
    assert "Not read: new version: word/comments.xml" in html


def test_a_character_style_mark_reads_back():
    def strong(style):
        def edit(document) -> None:
            document.add_paragraph("The total is ").add_run("5 million", style=style)

        return edit

    block, recorded = read_back(made(strong(None)), made(strong("Strong")))
    (paragraph,) = block.diff.changes
    assert paragraph.marks_added == [("style 'Strong'", "5 million")]
    assert paragraph.marks_added == recorded.changes[0].marks_added
