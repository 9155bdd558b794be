"""A doc job's documents as a reviewer reads them: workbooks cell by cell (workbook.py), Word
documents paragraph by paragraph (changed ones old and new, words marked), Markdown and CSV as
highlighted text diffs (diff.py), each with its new version to download; then the preview.

The doc kind records its review as text (document-diff.txt: one block per document, rendered
by runtime.kinds.doc.diff.render, capped at its line limit) plus the new documents themselves;
the old versions and the structured diff are not on the record. This reads the text back into
the kind's diff models; a line it cannot read is shown as recorded.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from markupsafe import Markup

from bot.console.evidence import cells, diff
from bot.console.evidence.artifacts import ArtifactReader, Note, named, read_ref, read_text
from bot.console.evidence.templates import render
from bot.console.evidence.workbook import WorkbookReview, read_workbook, render_workbook
from runtime.doc_formats import MEDIA_TYPES
from runtime.jobs import JobRecord
from runtime.kinds.code.pending import CodeChange
from runtime.kinds.doc.diff.model import (
    CommentChange,
    DocumentDiff,
    HeaderChange,
    ImageChange,
    ParagraphChange,
    RevisionChange,
    TableCellChange,
    TableChange,
    TableColumn,
    TableRow,
)

_HEADER = re.compile(r"^(?P<path>\S.*) \((?P<format>xlsx|docx)\): (?P<summary>.*)$")
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_SECTION = re.compile(rf"^  (?:in (?P<name>{_QUOTED}):|\(before any heading\):)$")
_PARAGRAPH = re.compile(r"^    (?P<sign>[~+-]) \[(?P<style>[^\]]*)\] ?(?P<text>.*)$")
_TABLE = re.compile(
    r"^    (?P<sign>[~+-]) table (?P<number>\d+) "
    r"\((?P<shape>\d+x\d+|\?)(?: -> (?P<to>\d+x\d+|\?))?\)$"
)
_TABLE_CELL = re.compile(
    r"^        r(?P<row>\d+)c(?P<col>\d+)(?: \(was (?:r(?P<was>\d+))?(?:c(?P<wascol>\d+))?\))?\s+"
    rf"(?:\((?:row (?P<rn>{_QUOTED}))?(?:, )?(?:column (?P<cn>{_QUOTED}))?\) )?(?P<rest>.*)$"
)
_TABLE_ROW = re.compile(
    r"^        (?P<sign>[+-]) (?P<what>row|column) (?P<row>\d+): (?P<cells>.*)$"
)
_MARKS = re.compile(
    rf"^      (?P<sign>[+-]) (?P<what>bold|italic|underline|style {_QUOTED}) (?P<text>{_QUOTED})$"
)
# Lines about the whole document, before its body's (runtime's render._render_document_parts).
_TRACKED = re.compile(r"^  ! (?P<n>\d+) unaccepted tracked changes? in the new version: .*$")
_UNREAD = re.compile(r"^  ! not read: (?P<what>.*)$")
_HEADER_PART = re.compile(
    r"^  (?P<sign>[~+-]) (?P<name>(?:first-page |even-page )?(?:header|footer)"
    r"(?: \(section \d+\))?): (?P<text>.*)$"
)
_PICTURE = re.compile(
    r"^  (?P<sign>[~+-]) picture (?P<name>.+) \((?P<size>[\d,]+)(?: -> (?P<to>[\d,]+))? bytes, "
    r"sha256 (?P<sha>[0-9a-f]*)(?: -> (?P<sha_to>[0-9a-f]*))?\)$"
)
_REVISION = re.compile(
    r"^  (?P<sign>[+-]) tracked change: (?P<what>inserted|deleted|moved|formatted) "
    rf"(?P<text>{_QUOTED})(?: by (?P<author>{_QUOTED}))?$"
)
_COMMENT = re.compile(
    rf"^  (?P<sign>[+-]) comment(?: by (?P<author>{_QUOTED}))?(?: on (?P<anchor>{_QUOTED}))?: "
    rf"(?P<text>{_QUOTED})$"
)
_KINDS = {"~": "changed", "+": "added", "-": "removed"}
_WORD = re.compile(r"\s+|\w+|[^\w\s]")
_MARK = re.compile(r"\[-(.*?)-\]|\{\+(.*?)\+\}", re.S)


@dataclass
class WordReview:
    """One Word document of the review: its diff, the cap line, and lines not understood."""

    path: str
    summary: str
    diff: DocumentDiff
    more: str = ""
    unread: list[str] = field(default_factory=list)


@dataclass
class TextReview:
    """A Markdown or CSV file of the review: its unified diff."""

    path: str
    file: diff.FileDiff
    more: str = ""


@dataclass
class OtherReview:
    """Review text that is not a document's (the inputs attached to the request)."""

    lines: list[str]


Block = WorkbookReview | WordReview | TextReview | OtherReview


# --- reading the review text -----------------------------------------------------------------


def read_review(text: str) -> list[Block]:
    """document-diff.txt as blocks, in the order the kind wrote them."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if header := _HEADER.match(line):
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or lines[j].startswith("... ")):
                j += 1
            path, fmt, summary = header.group("path", "format", "summary")
            body = lines[i + 1 : j]
            blocks.append(
                read_workbook(path, summary, body)
                if fmt == "xlsx"
                else read_word(path, summary, body)
            )
            i = j
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            found, i = diff.file_at(lines, i)
            if found is not None:
                more = ""
                if i < len(lines) and lines[i].startswith("... "):
                    more, i = lines[i][4:], i + 1
                blocks.append(TextReview(found.path, found, more))
            continue
        if blocks and isinstance(blocks[-1], OtherReview):
            blocks[-1].lines.append(line)
        else:
            blocks.append(OtherReview([line]))
        i += 1
    return blocks


def _shape(text: str | None) -> tuple[int, int] | None:
    if not text or text == "?":
        return None
    rows, cols = text.split("x")
    return int(rows), int(cols)


def read_word(path: str, summary: str, lines: list[str]) -> WordReview:
    """The body lines of one `path (docx): summary` block, as the kind's DocumentDiff."""
    status = (
        "added"
        if summary.startswith("new document")
        else "removed"
        if summary.startswith("document deleted")
        else "unchanged"
        if summary == "no changes"
        else "changed"
    )
    review = WordReview(path, summary, DocumentDiff(status=status))
    section: str | None = None
    table: TableChange | None = None
    paragraph: ParagraphChange | None = None
    for line in lines:
        try:
            if line.startswith("... "):
                review.more = line[4:]
            elif _document_part(review.diff, line):
                table = paragraph = None
            elif paragraph is not None and (found := _MARKS.match(line)):
                mark = (found["what"], ast.literal_eval(found["text"]))
                (paragraph.marks_added if found["sign"] == "+" else paragraph.marks_removed).append(
                    mark
                )
            elif found := _SECTION.match(line):
                name = found.group("name")
                section, table = (ast.literal_eval(name) if name else None), None
            elif found := _TABLE.match(line):
                table, paragraph = _table(found, section), None
                review.diff.changes.append(table)
            elif found := _PARAGRAPH.match(line):
                paragraph, table = _paragraph(found, section), None
                review.diff.changes.append(paragraph)
            elif table is not None and (found := _TABLE_CELL.match(line)):
                old, new = cells.change(found.group("rest"))
                table.cells.append(
                    TableCellChange(
                        table=table.new_table or table.old_table or 0,
                        old_row=int(found.group("was") or found.group("row")),
                        new_row=int(found.group("row")),
                        col=int(found.group("col")),
                        old=None if old is None else str(old),
                        new=None if new is None else str(new),
                        kind="added" if not old else "removed" if not new else "changed",
                        row_name=ast.literal_eval(found["rn"]) if found["rn"] else None,
                        col_name=ast.literal_eval(found["cn"]) if found["cn"] else None,
                        old_col=int(found["wascol"]) if found["wascol"] else None,
                    )
                )
            elif table is not None and (found := _TABLE_ROW.match(line)):
                number, texts, added = int(found["row"]), _row(found["cells"]), found["sign"] == "+"
                if found["what"] == "row":
                    row = TableRow(row=number, cells=texts)
                    (table.rows_added if added else table.rows_removed).append(row)
                else:
                    column = TableColumn(col=number, cells=texts)
                    (table.columns_added if added else table.columns_removed).append(column)
            else:
                review.unread.append(line)
        except (ValueError, SyntaxError):
            review.unread.append(line)
    return review


def _document_part(diff: DocumentDiff, line: str) -> bool:
    """Whether `line` is one about the whole document (tracked changes, a part not read, a
    header or footer, a picture, a tracked change, a comment), read into `diff`."""
    if found := _TRACKED.match(line):
        diff.tracked = int(found["n"])
    elif found := _UNREAD.match(line):
        diff.unread.append(found["what"])
    elif found := _HEADER_PART.match(line):
        kind, text = _KINDS[found["sign"]], found["text"]
        old, new = _sides(text) if kind == "changed" else (text, text)
        diff.headers.append(
            HeaderChange(
                kind=kind,
                name=found["name"],
                old=None if kind == "added" else old,
                new=None if kind == "removed" else new,
            )
        )
    elif found := _PICTURE.match(line):
        kind = _KINDS[found["sign"]]
        size, to = int(found["size"].replace(",", "")), found["to"]
        old_size, new_size = (size, int(to.replace(",", ""))) if to else (size, size)
        old_sha, new_sha = found["sha"], found["sha_to"] or found["sha"]
        diff.images.append(
            ImageChange(
                kind=kind,
                name=found["name"],
                old_sha256=None if kind == "added" else old_sha,
                new_sha256=None if kind == "removed" else new_sha,
                old_size=None if kind == "added" else old_size,
                new_size=None if kind == "removed" else new_size,
            )
        )
    elif found := _REVISION.match(line):
        diff.revisions.append(
            RevisionChange(
                kind=_KINDS[found["sign"]],
                revision=found["what"],
                author=ast.literal_eval(found["author"]) if found["author"] else "",
                text=ast.literal_eval(found["text"]),
            )
        )
    elif found := _COMMENT.match(line):
        diff.comments.append(
            CommentChange(
                kind=_KINDS[found["sign"]],
                author=ast.literal_eval(found["author"]) if found["author"] else "",
                anchor=ast.literal_eval(found["anchor"]) if found["anchor"] else "",
                text=ast.literal_eval(found["text"]),
            )
        )
    else:
        return False
    return True


def _table(found: re.Match[str], section: str | None) -> TableChange:
    sign, number = found.group("sign"), int(found.group("number"))
    kind = {"~": "changed", "+": "added", "-": "removed"}[sign]
    old_shape = _shape(found.group("shape"))
    new_shape = _shape(found.group("to")) if found.group("to") else old_shape
    return TableChange(
        kind=kind,
        section=section,
        old_table=None if kind == "added" else number,
        new_table=None if kind == "removed" else number,
        old_shape=None if kind == "added" else old_shape,
        new_shape=None if kind == "removed" else new_shape,
    )


def _row(text: str) -> list[str]:
    """`'a' | 'b' | 'c'` (each cell a repr, the line maybe cut with …)."""
    out: list[str] = []
    for part in text.split(" | "):
        try:
            out.append(str(cells.value(part)))
        except ValueError:
            out.append(part)
    return out


def _paragraph(found: re.Match[str], section: str | None) -> ParagraphChange:
    sign, style, text = found.group("sign", "style", "text")
    old_style, _, new_style = style.partition(" -> ")
    new_style = new_style or old_style
    if sign == "+":
        return ParagraphChange(kind="added", section=section, new_style=new_style, new_text=text)
    if sign == "-":
        return ParagraphChange(kind="removed", section=section, old_style=old_style, old_text=text)
    old_text, new_text = _sides(text)
    return ParagraphChange(
        kind="changed",
        section=section,
        old_style=old_style,
        new_style=new_style,
        old_text=old_text,
        new_text=new_text,
    )


def _sides(text: str) -> tuple[str, str]:
    """The kind's word diff (`kept [-gone-]{+new+} kept`) as the old and the new text."""
    old, new, at = [], [], 0
    for mark in _MARK.finditer(text):
        old.append(text[at : mark.start()])
        new.append(text[at : mark.start()])
        if mark.group(1) is not None:
            old.append(mark.group(1))
        else:
            new.append(mark.group(2))
        at = mark.end()
    old.append(text[at:])
    new.append(text[at:])
    return "".join(old), "".join(new)


def words(old: str, new: str) -> list[tuple[str, str]]:
    """(tag, text) runs between two texts, tag "=" kept, "-" only in old, "+" only in new."""
    a, b = _WORD.findall(old), _WORD.findall(new)
    runs: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            runs.append(("=", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("-", "".join(a[i1:i2])))
        if j2 > j1:
            runs.append(("+", "".join(b[j1:j2])))
    return runs


# --- showing ---------------------------------------------------------------------------------


@dataclass
class Document:
    """One block on the page, with its id and the new version to download (if any)."""

    anchor: str
    block: Block
    body: Markup
    download: tuple[str, str] | None = None  # (sha256, file name)

    @property
    def format(self) -> str:
        if isinstance(self.block, WorkbookReview):
            return "xlsx"
        if isinstance(self.block, WordReview):
            return "docx"
        if isinstance(self.block, TextReview):
            suffix = PurePosixPath(self.block.path).suffix.lower()
            return "csv" if suffix == ".csv" else "markdown"
        return ""


def _documents(job: JobRecord) -> dict[str, str]:
    """The new versions the job's review stored, by file name."""
    pending = job.pending_action
    if isinstance(pending, CodeChange) and pending.document_sha256:
        return dict(pending.document_sha256)
    media = set(MEDIA_TYPES.values())
    return {a.name: a.sha256 for a in job.artifacts if a.media_type in media}


def review_artifacts(job: JobRecord) -> tuple[str | None, str | None]:
    """(document-diff sha256, preview sha256), as the pending change names them or the last
    of their names among the job's artifacts (a rejected job keeps no pending change)."""
    pending = job.pending_action
    if isinstance(pending, CodeChange) and (pending.document_diff_sha256 or pending.preview_sha256):
        return pending.document_diff_sha256, pending.preview_sha256
    review, preview = named(job, "document-diff.txt"), named(job, "preview.txt")
    return (review.sha256 if review else None), (preview.sha256 if preview else None)


def document_blocks(
    job: JobRecord, store: ArtifactReader, view: str = "unified"
) -> tuple[list[Document], Note | None]:
    """The documents of the job's review, ready to show; or why the review cannot be read."""
    review_sha, _ = review_artifacts(job)
    if review_sha is None:
        return [], None
    ref = next((a for a in job.artifacts if a.sha256 == review_sha), None)
    text = read_ref(store, ref) if ref else read_text(store, review_sha, "document-diff.txt")
    if isinstance(text, Note):
        return [], text
    saved = _documents(job)
    out: list[Document] = []
    for n, block in enumerate(read_review(text), start=1):
        anchor = f"ev-doc-{n}"
        if isinstance(block, WorkbookReview):
            body = render_workbook(block)
        elif isinstance(block, WordReview):
            body = render("_word.html", review=block, words=words)
        elif isinstance(block, TextReview):
            body = diff.render_file(block.file, view=view, anchor=f"{anchor}-text")
        else:
            body = render("_review_text.html", lines=block.lines)
        path = getattr(block, "path", "")
        name = PurePosixPath(path).name if path else ""
        download = (saved[name], name) if name in saved else None
        out.append(Document(anchor, block, body, download))
    return out, None


def render_documents(
    job: JobRecord, store: ArtifactReader, view: str = "unified"
) -> tuple[Markup, dict[str, str]]:
    """The documents section of a doc job (empty Markup when its review has none), and which
    paths it showed: path -> the id of its block (the git diff links there instead of showing
    git's text of a binary, or the same text diff twice)."""
    documents, problem = document_blocks(job, store, view)
    _, preview_sha = review_artifacts(job)
    preview: str | Note | None = None
    if preview_sha:
        ref = next((a for a in job.artifacts if a.sha256 == preview_sha), None)
        preview = read_ref(store, ref) if ref else read_text(store, preview_sha, "preview.txt")
    shown = {d.block.path: d.anchor for d in documents if not isinstance(d.block, OtherReview)}
    if not documents and problem is None and preview is None:
        return Markup(), shown
    section = render(
        "_documents.html",
        documents=documents,
        problem=problem,
        preview=preview,
        preview_sha=preview_sha,
        is_note=lambda x: isinstance(x, Note),
    )
    return section, shown
