"""A unified diff (git's patch of a code or doc job, a document's text diff) as a reviewer reads
it: the files changed, then each file's hunks with old and new line numbers, syntax highlighted,
unified or side by side.

Parsing is by the hunk headers' line counts, never by sniffing prefixes, so a removed line that
reads `--- a/x` stays a line. A large diff stays fast: highlighting has a budget of lines per
rendering (a file over it is shown plain, saying so), and at most MAX_LINES lines are shown.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from markupsafe import Markup, escape
from pygments.lexer import Lexer

from bot.console.evidence import highlight
from bot.console.evidence.artifacts import artifact_url
from bot.console.evidence.templates import render

MAX_LINES = 20_000  # diff lines shown on one page; the rest are in the download
HIGHLIGHT_LINES = 1_000  # lines lexed per rendering (a file over what is left: shown plain)
VIEWS = ("unified", "split")

LineKind = Literal["ctx", "add", "del"]
_SIGN = {"ctx": " ", "add": "+", "del": "-"}
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass
class Line:
    kind: LineKind
    old: int | None
    new: int | None
    text: str
    html: Markup = field(default_factory=Markup)
    no_newline: bool = False  # git's "\ No newline at end of file" follows it

    @property
    def sign(self) -> str:
        return _SIGN[self.kind]


@dataclass
class Hunk:
    header: str
    section: str
    lines: list[Line] = field(default_factory=list)
    truncated: bool = False  # the text ended before the header's line counts did


@dataclass
class FileDiff:
    old_path: str | None  # None: the file is new
    new_path: str | None  # None: the file was deleted
    status: str = "modified"  # added, deleted, modified, renamed, copied
    binary: bool = False
    notes: list[str] = field(default_factory=list)  # mode changes, similarity
    hunks: list[Hunk] = field(default_factory=list)
    highlighted: bool = False
    shown: bool = True  # False: past MAX_LINES, only listed
    plain_reason: str = ""

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or "(unnamed)"

    @property
    def renamed_from(self) -> str | None:
        if self.status in ("renamed", "copied") and self.old_path != self.new_path:
            return self.old_path
        return None

    @property
    def added(self) -> int:
        return sum(1 for h in self.hunks for line in h.lines if line.kind == "add")

    @property
    def removed(self) -> int:
        return sum(1 for h in self.hunks for line in h.lines if line.kind == "del")

    @property
    def line_count(self) -> int:
        return sum(len(h.lines) for h in self.hunks)


# --- parsing ---------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    """git's C-quoted path ("a/caf\\303\\251.txt") as text; unquoted text as it is."""
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        return text
    body, out, i = text[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", body[i + 1 : i + 4]):
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, ord(nxt)) if ord(nxt) < 128 else ord("?"))
            i += 2
            continue
        out += c.encode()
        i += 1
    return out.decode("utf-8", "replace")


def _side(text: str, prefix: str) -> str | None:
    """A path from a ---/+++ line: None for /dev/null, the a/ or b/ prefix dropped."""
    text = _unquote(text.rstrip("\t").rstrip("\r"))
    if text == "/dev/null":
        return None
    return text[2:] if text.startswith(prefix) else text


def _git_header_paths(rest: str) -> tuple[str, str]:
    """The two paths of `diff --git a/X b/Y` (the header of a binary or rename-only file)."""
    if rest.startswith('"'):
        end = rest.find('" ', 1)
        while end > 0 and rest[end - 1] == "\\":
            end = rest.find('" ', end + 1)
        if end > 0:
            return _side(rest[: end + 1], "a/") or "", _side(rest[end + 2 :], "b/") or ""
    half = (len(rest) - 1) // 2
    if rest[half : half + 1] == " " and rest[2:half] == rest[half + 3 :]:
        return rest[2:half], rest[half + 3 :]
    old, _, new = rest.partition(" b/")
    return old.removeprefix("a/"), new


def _read_hunk(lines: list[str], i: int, match: re.Match[str]) -> tuple[Hunk, int]:
    old_no, new_no = int(match.group(1)), int(match.group(3))
    old_left = int(match.group(2)) if match.group(2) is not None else 1
    new_left = int(match.group(4)) if match.group(4) is not None else 1
    hunk = Hunk(header=lines[i].split(" @@", 1)[0] + " @@", section=match.group(5) or "")
    i += 1
    while i < len(lines) and (old_left > 0 or new_left > 0):
        line = lines[i]
        tag, text = line[:1], line[1:].rstrip("\r")
        if tag == " " or (line == "" and old_left > 0 and new_left > 0):
            hunk.lines.append(Line("ctx", old_no, new_no, text))
            old_no, new_no, old_left, new_left = old_no + 1, new_no + 1, old_left - 1, new_left - 1
        elif tag == "-" and old_left > 0:
            hunk.lines.append(Line("del", old_no, None, text))
            old_no, old_left = old_no + 1, old_left - 1
        elif tag == "+" and new_left > 0:
            hunk.lines.append(Line("add", None, new_no, text))
            new_no, new_left = new_no + 1, new_left - 1
        elif tag == "\\":
            if hunk.lines:
                hunk.lines[-1].no_newline = True
        else:  # the patch was cut short (a capped review): keep what there is
            hunk.truncated = True
            return hunk, i
        i += 1
    if i < len(lines) and lines[i].startswith("\\"):
        if hunk.lines:
            hunk.lines[-1].no_newline = True
        i += 1
    hunk.truncated = old_left > 0 or new_left > 0
    return hunk, i


def file_at(lines: list[str], i: int) -> tuple[FileDiff | None, int]:
    """The file whose header starts at lines[i] (`diff --git` or a bare `---`/`+++` pair) and
    the index after it; (None, i + 1) when lines[i] starts no file."""
    line = lines[i]
    if line.startswith("diff --git "):
        old, new = _git_header_paths(line[len("diff --git ") :])
        diff = FileDiff(old_path=old, new_path=new)
        i += 1
    elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
        diff = FileDiff(old_path=None, new_path=None)
    else:
        return None, i + 1
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            break
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if diff.hunks:  # a bare header after hunks: the next file (difflib's output)
                break
            diff.old_path = _side(line[4:], "a/")
            diff.new_path = _side(lines[i + 1][4:], "b/")
            i += 2
            continue
        if match := _HUNK.match(line):
            hunk, i = _read_hunk(lines, i, match)
            diff.hunks.append(hunk)
            continue
        if diff.hunks:  # past the last hunk: not this file's any more
            break
        _extended_header(diff, line)
        if line.startswith("GIT binary patch"):
            i += 1
            while i < len(lines) and not lines[i].startswith("diff --git "):
                i += 1
            continue
        i += 1
    if diff.old_path is None and diff.status == "modified":
        diff.status = "added"
    elif diff.new_path is None and diff.status == "modified":
        diff.status = "deleted"
    return diff, i


def _extended_header(diff: FileDiff, line: str) -> None:
    if line.startswith("new file mode"):
        diff.status, diff.old_path = "added", None
    elif line.startswith("deleted file mode"):
        diff.status, diff.new_path = "deleted", None
    elif line.startswith("rename from "):
        diff.status, diff.old_path = "renamed", _unquote(line[len("rename from ") :])
    elif line.startswith("rename to "):
        diff.new_path = _unquote(line[len("rename to ") :])
    elif line.startswith("copy from "):
        diff.status, diff.old_path = "copied", _unquote(line[len("copy from ") :])
    elif line.startswith("copy to "):
        diff.new_path = _unquote(line[len("copy to ") :])
    elif line.startswith(("similarity index ", "dissimilarity index ")):
        diff.notes.append(line)
    elif line.startswith("old mode "):
        diff.notes.append(f"mode {line[len('old mode ') :]}")
    elif line.startswith("new mode ") and diff.notes:
        diff.notes[-1] += f" → {line[len('new mode ') :]}"
    elif line.startswith(("Binary files ", "GIT binary patch")):
        diff.binary = True


def parse_patch(text: str) -> list[FileDiff]:
    """Every file of a unified diff (git's, with extended headers, or difflib's)."""
    lines = text.split("\n")
    files: list[FileDiff] = []
    i = 0
    while i < len(lines):
        found, i = file_at(lines, i)
        if found is not None:
            files.append(found)
    return files


# --- what is shown ---------------------------------------------------------------------------


@dataclass
class Row:
    """One row of the side-by-side view: the old line on the left, the new on the right."""

    old: Line | None
    new: Line | None


def split_rows(hunk: Hunk) -> list[Row]:
    """Context on both sides; a run of removed lines beside the added lines that follow it."""
    rows: list[Row] = []
    removed: list[Line] = []
    added: list[Line] = []

    def flush() -> None:
        for n in range(max(len(removed), len(added))):
            rows.append(
                Row(removed[n] if n < len(removed) else None, added[n] if n < len(added) else None)
            )
        removed.clear()
        added.clear()

    for line in hunk.lines:
        if line.kind == "ctx":
            flush()
            rows.append(Row(line, line))
        elif line.kind == "del":
            if added:
                flush()
            removed.append(line)
        else:
            added.append(line)
    flush()
    return rows


def prepare(files: list[FileDiff], budget: int | None = None) -> None:
    """Highlight each file while the budget of lexed lines lasts (a file whole or not at all),
    and mark the files past MAX_LINES as listed only."""
    budget = HIGHLIGHT_LINES if budget is None else budget
    shown = 0
    for diff in files:
        lines = diff.line_count
        if shown >= MAX_LINES:
            diff.shown = False
            continue
        shown += lines
        lexer = highlight.lexer_for(diff.path)
        lexed = sum(len(h.lines) + sum(1 for x in h.lines if x.kind == "ctx") for h in diff.hunks)
        if lexer is not None and lexed > budget:
            diff.plain_reason = (
                "shown without syntax highlighting: a diff this large is shown plain, "
                f"highlighting stops at {HIGHLIGHT_LINES:,} lines a page"
            )
            lexer = None
        elif lexer is not None:
            budget -= lexed
            diff.highlighted = True
        for hunk in diff.hunks:
            _colour(hunk, lexer)


def _colour(hunk: Hunk, lexer: Lexer | None) -> None:
    if lexer is None:
        for line in hunk.lines:
            line.html = highlight.plain(line.text)
        return
    old_side = [line for line in hunk.lines if line.kind != "add"]
    new_side = [line for line in hunk.lines if line.kind != "del"]
    old_html = highlight.highlight_lines(lexer, [line.text for line in old_side])
    new_html = highlight.highlight_lines(lexer, [line.text for line in new_side])
    for line, html in zip(old_side, old_html, strict=True):
        line.html = html
    for line, html in zip(new_side, new_html, strict=True):  # context: its new side's colours
        line.html = html


_EOF_MARK = '<span class="ev-eof" title="No newline at end of file">⏎̸</span>'


def _hunk_head(hunk: Hunk, columns: int) -> str:
    section = (
        f' <span class="ev-hunk-section">{escape(hunk.section)}</span>' if hunk.section else ""
    )
    return (
        f'<tr class="ev-hunk-head"><td colspan="{columns}"><code>{escape(hunk.header)}</code>'
        f"{section}</td></tr>"
    )


def _hunk_cut(columns: int) -> str:
    return (
        f'<tr class="ev-hunk-cut"><td colspan="{columns}">… the rest of this hunk was not '
        "recorded</td></tr>"
    )


def _code(line: Line) -> str:
    end = _EOF_MARK if line.no_newline else ""
    return f'<span class="ev-sign">{_SIGN[line.kind]}</span>{line.html}{end}'


def unified_body(diff: FileDiff) -> Markup:
    """The file's hunks as rows of a three-column table: old number, new number, the line.
    Built here, not in a template loop, because a page may hold 20,000 of them; every piece of
    text in them was escaped when it was highlighted (Line.html) or is escaped here."""
    rows: list[str] = []
    for hunk in diff.hunks:
        rows.append('<tbody class="ev-hunk">')
        rows.append(_hunk_head(hunk, 3))
        for line in hunk.lines:
            old = line.old if line.old is not None else ""
            new = line.new if line.new is not None else ""
            rows.append(
                f'<tr class="ev-line ev-{line.kind}"><td class="ev-ln ev-ln-old">{old}</td>'
                f'<td class="ev-ln ev-ln-new">{new}</td>'
                f'<td class="ev-code ev-hl">{_code(line)}</td></tr>'
            )
        if hunk.truncated:
            rows.append(_hunk_cut(3))
        rows.append("</tbody>")
    return Markup("\n".join(rows))


_BLANK = '<td class="ev-ln ev-blank"></td><td class="ev-code ev-blank"></td>'


def split_body(diff: FileDiff) -> Markup:
    """The file's hunks side by side: old number and line, new number and line."""
    rows: list[str] = []
    for hunk in diff.hunks:
        rows.append('<tbody class="ev-hunk">')
        rows.append(_hunk_head(hunk, 4))
        for row in split_rows(hunk):
            left = (
                f'<td class="ev-ln ev-ln-old">{row.old.old}</td>'
                f'<td class="ev-code ev-hl ev-{row.old.kind}">{_code(row.old)}</td>'
                if row.old is not None
                else _BLANK
            )
            right = (
                f'<td class="ev-ln ev-ln-new">{row.new.new}</td>'
                f'<td class="ev-code ev-hl ev-{row.new.kind}">{_code(row.new)}</td>'
                if row.new is not None
                else _BLANK
            )
            rows.append(f'<tr class="ev-row">{left}{right}</tr>')
        if hunk.truncated:
            rows.append(_hunk_cut(4))
        rows.append("</tbody>")
    return Markup("\n".join(rows))


def body(diff: FileDiff, view: str) -> Markup:
    return split_body(diff) if view == "split" else unified_body(diff)


@dataclass
class DiffView:
    files: list[FileDiff]
    view: str
    download: str  # the patch's artifact URL, to save it
    name: str
    anchor: str  # id prefix of this diff's files on the page
    linked: dict[str, str] = field(default_factory=dict)  # path -> id shown elsewhere instead

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)

    @property
    def hidden(self) -> list[FileDiff]:
        return [f for f in self.files if not f.shown]


_CACHE: OrderedDict[tuple[str, str, str, tuple[tuple[str, str], ...]], Markup] = OrderedDict()
_CACHE_SIZE = 32


def render_patch(
    text: str,
    *,
    sha256: str,
    name: str,
    view: str = "unified",
    anchor: str = "ev-file",
    linked: dict[str, str] | None = None,
    toggle: bool = True,
) -> Markup:
    """A patch as the file list and the files' hunks. The patch is an artifact, so never
    changes under its hash: a rendering is kept (a job page re-renders on every change)."""
    view = view if view in VIEWS else "unified"
    key = (sha256, view, anchor, tuple(sorted((linked or {}).items())))
    if sha256 and key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    files = parse_patch(text)
    prepare([f for f in files if f.path not in (linked or {})])
    shown = render(
        "_diff.html",
        diff=DiffView(
            files=files,
            view=view,
            download=artifact_url(sha256, download=name) if sha256 else "",
            name=name,
            anchor=anchor,
            linked=linked or {},
        ),
        toggle=toggle,
        body=body,
    )
    if sha256:
        _CACHE[key] = shown
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return shown


def render_file(diff: FileDiff, *, view: str = "unified", anchor: str = "ev-doc-text") -> Markup:
    """One file's hunks alone (a document's text diff inside the documents section)."""
    view = view if view in VIEWS else "unified"
    prepare([diff])
    return render("_diff_file.html", file=diff, view=view, anchor=anchor, body=body, head=False)
