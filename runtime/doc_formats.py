"""Documents a doc job produces, as bytes and as data: check, load, write and convert.

A doc job writes Markdown, CSV, XLSX and DOCX files into its worktree; before anything is
published a reviewer sees a format-aware diff (runtime/doc_diff/). This module holds the
formats that diff understands and the only code that parses or writes their bytes:

- `check` says whether bytes are what the file's extension claims (a ".xlsx" that is text, a
  ".docx" that is really a workbook, a truncated zip, a CSV that is not UTF-8, a file over the
  size limit) and raises `DocumentError` naming the path when they are not. For XLSX and DOCX
  (zip files) it reads only the zip directory, and refuses files that unpack to too much or hold
  too many entries before openpyxl or python-docx parse anything (zip bombs).
- `load_xlsx`, `load_docx`, `load_csv`, `load_text` turn checked bytes into the data model
  below; `write_xlsx`, `write_docx`, `write_csv` turn data back into bytes.
- `markdown_to_document` and `markdown_tables` convert a rendered Markdown report into a
  DOCX `Document` or into sheets for an XLSX `Workbook`.
- `check_attachment` and `read_as` check a file a person attached to a request (a job's input)
  by name and declared size before it is read, then by content, read in full;
  `read_as_text` says what it was read as ("CSV, 12 rows × 6 columns").

Nothing here touches the filesystem: callers read and write files, and pass the path only so
that messages can name it.

The data model is JSON-serialisable (pydantic):

- `Cell` is str | int | float | bool | date, datetime, time, timedelta | None. Dates and times
  keep their type (a date is not text that looks like one); a formula is its text starting
  with "=" (never the cached value); an empty string is the same as no value.
- `Workbook.sheets` maps sheet names, in workbook order, to rows of cells; trailing empty cells
  and rows are trimmed.
- `Document.blocks` is the body of a DOCX in order: `Paragraph(style, text, marks)` (text
  with tracked changes accepted; marks: the runs' bold / italic / underline / character style
  as spans) and `Table(rows)` (a grid of cell texts; short rows are padded with ""). Beside
  the body: `headers` (headers and footers by name), `comments`, `revisions` (unaccepted
  tracked changes), `images` (pictures by part name, sha256, size) and `unread` (parts that
  could not be read, in words).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import itertools
import re
import zipfile
import zlib
from collections.abc import Collection
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from runtime.doc_formatting import (
    SheetLook,
    Style,
    StyleReader,
    read_features,
    read_workbook_parts,
)
from runtime.errors import AcpError

__all__ = [
    "FORMATS",
    "MAX_BYTES",
    "MAX_ENTRIES",
    "MAX_UNPACKED",
    "MEDIA_TYPES",
    "Block",
    "Cell",
    "Document",
    "DocumentError",
    "Paragraph",
    "Table",
    "Workbook",
    "check",
    "check_attachment",
    "format_of",
    "load_csv",
    "load_docx",
    "load_text",
    "load_xlsx",
    "markdown_tables",
    "markdown_to_document",
    "read_as",
    "read_as_text",
    "safe_sheet_name",
    "trim_rows",
    "write_csv",
    "write_docx",
    "write_xlsx",
]

FORMATS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".xlsx": "xlsx",
    ".docx": "docx",
}
MAX_BYTES = 20 * 1024 * 1024  # file size, any format
MAX_UNPACKED = 100 * 1024 * 1024  # XLSX / DOCX: total uncompressed size of the zip entries
MAX_ENTRIES = 10_000  # XLSX / DOCX: zip entries
MAX_CELLS = 3_000_000  # XLSX: cells read per workbook (an empty row between content counts one)

_LABELS = {"xlsx": "an XLSX workbook", "docx": "a DOCX document"}
_NAMES = {"xlsx": "XLSX workbook", "docx": "DOCX document", "csv": "CSV file"}
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class DocumentError(AcpError):
    """Raised when a document cannot be reviewed or written: wrong content for its extension,
    corrupt, too large, not UTF-8, or data a format cannot hold. Names the file path."""

    exit_code = 16


# --- data model ----------------------------------------------------------------------------

# Dates and times keep their type (a date is not the text that looks like it): openpyxl's
# date cells as dt.date when at midnight, else dt.datetime; times and durations as they are.
Cell = str | int | float | bool | dt.datetime | dt.date | dt.time | dt.timedelta | None


class Workbook(BaseModel):
    """An XLSX workbook as data: sheet name -> rows of cells, in workbook order."""

    sheets: dict[str, list[list[Cell]]] = {}
    # How each sheet looks (styles per cell, features): read from files, not given by a model.
    looks: dict[str, SheetLook] = {}
    # The workbook's parts beyond its sheets (defined names, external links, macros), as text.
    parts: dict[str, str] = {}

    @field_validator("sheets")
    @classmethod
    def _trimmed(cls, sheets: dict[str, list[list[Cell]]]) -> dict[str, list[list[Cell]]]:
        return {name: trim_rows(rows) for name, rows in sheets.items()}


class Paragraph(BaseModel):
    """One DOCX paragraph: its style name ("Heading 1", "Normal", "List Bullet") and text (as
    it reads with its tracked changes accepted: insertions in, deletions out)."""

    kind: Literal["paragraph"] = "paragraph"
    style: str = "Normal"
    text: str
    # The runs' own bold / italic / underline and character style ("style 'Strong'") as
    # (what, start, end) spans of `text`, merged across runs (what a paragraph style or a
    # character style itself sets is the style's, not here).
    marks: list[tuple[str, int, int]] = []


class Table(BaseModel):
    """One DOCX table: rows of cell texts (padded with "" to the widest row)."""

    kind: Literal["table"] = "table"
    rows: list[list[str]]

    @field_validator("rows")
    @classmethod
    def _rectangular(cls, rows: list[list[str]]) -> list[list[str]]:
        width = max((len(row) for row in rows), default=0)
        return [row + [""] * (width - len(row)) for row in rows]


Block = Annotated[Paragraph | Table, Field(discriminator="kind")]


class Comment(BaseModel):
    """A comment in a DOCX document: who wrote it, what it says, and the text it is on."""

    author: str = ""
    text: str
    anchor: str = ""


class Revision(BaseModel):
    """An unaccepted tracked change in a DOCX body: the text it inserts (w:ins), deletes
    (w:del), moves (w:moveTo) or formats (w:rPrChange, w:pPrChange), and who made it."""

    kind: Literal["inserted", "deleted", "moved", "formatted"]
    author: str = ""
    text: str


class Image(BaseModel):
    """A picture placed in a DOCX body: the package part it shows (word/media/image1.png),
    its bytes' sha256 and size."""

    name: str
    sha256: str
    size: int


class Document(BaseModel):
    """A DOCX document as data: the body's paragraphs and tables in document order; the text
    of its headers and footers by name ("header", "first-page footer (section 2)"); comments,
    unaccepted tracked changes and pictures in document order; and, in words, the parts that
    could not be read (the rest of the document is still read)."""

    blocks: list[Block] = []
    headers: dict[str, str] = {}
    comments: list[Comment] = []
    revisions: list[Revision] = []
    images: list[Image] = []
    unread: list[str] = []

    @property
    def paragraphs(self) -> list[Paragraph]:
        return [b for b in self.blocks if isinstance(b, Paragraph)]

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]


def trim_rows(rows: list[list[Cell]]) -> list[list[Cell]]:
    """Rows with "" read as empty, trailing empty cells dropped, trailing empty rows dropped."""
    trimmed = [_trim_row([None if v == "" else v for v in row]) for row in rows]
    while trimmed and not trimmed[-1]:
        trimmed.pop()
    return trimmed


def _trim_row(row: list[Cell]) -> list[Cell]:
    end = len(row)
    while end and row[end - 1] is None:
        end -= 1
    return row[:end] if end < len(row) else row


# --- check -----------------------------------------------------------------------------------


def format_of(path: str) -> str | None:
    """The document format for a path by its extension ("xlsx"), or None if not reviewed here."""
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return None
    return FORMATS.get(path[dot:].lower())


def check(
    path: str, data: bytes, max_bytes: int = MAX_BYTES, *, max_unpacked: int = MAX_UNPACKED
) -> str:
    """The format of `data`, after checking it is what `path`'s extension says.

    Raises DocumentError (naming `path`) when the extension is unknown, the file is over
    `max_bytes`, a zip format is not a zip, is corrupt, is the other Office format, or unpacks
    to over `max_unpacked` bytes or MAX_ENTRIES entries, or a text format is not UTF-8 text.
    """
    fmt = format_of(path)
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DocumentError(
            f"{path} is not a document format that can be reviewed (known: {known})",
            hint="documents must be Markdown, CSV, XLSX or DOCX files with those extensions",
        )
    if len(data) > max_bytes:
        raise DocumentError(
            f"{path} is {size_text(len(data))}; documents over {size_text(max_bytes)} are not "
            "reviewed or published",
            hint="split it into smaller files, or raise the document size limit in the policy",
        )
    if fmt in ("xlsx", "docx"):
        _check_zip(path, data, fmt, max_unpacked)
    else:
        _decode(path, data, fmt)
    return fmt


def size_text(size: int) -> str:
    """A size as people read it: KB or MB (binary units, as the limits are)."""
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _looks_like(data: bytes) -> str:
    """What non-zip bytes look like, for a message."""
    if not data:
        return "it is empty"
    if data.startswith(b"%PDF"):
        return "it looks like a PDF"
    if data.startswith(_OLE_MAGIC):
        return (
            "it looks like an old binary Office file (.xls / .doc) or a password-protected "
            "Office file"
        )
    head = data[:4096]
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "it looks like text"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 3:  # a character cut by the 4 KB window
                return "it looks like text"
    return "it looks like binary data"


def _zip_kind(names: set[str], archive: zipfile.ZipFile) -> str | None:
    """Which Office zip this is: "xlsx", "docx", "pptx", an OpenDocument, or None."""
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        return "xlsx"
    if "word/document.xml" in names:
        return "docx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    if "mimetype" in names and archive.getinfo("mimetype").file_size < 200:
        mimetype = archive.read("mimetype").decode("ascii", "replace").strip()
        return f"an OpenDocument file ({mimetype})"
    return None


def _check_zip(path: str, data: bytes, fmt: str, max_unpacked: int) -> None:
    """A zip of the right Office kind, within the entry and unpacked-size limits."""
    label, name = _LABELS[fmt], _NAMES[fmt]
    if not data.startswith(_ZIP_MAGIC):
        raise DocumentError(
            f"{path} is not {label}: it is not a zip file ({_looks_like(data)})",
            hint=f"write a real {name} (with {'openpyxl' if fmt == 'xlsx' else 'python-docx'}), "
            "or use the extension that matches the content",
        )
    _check_entries(path, _declared_entries(data))  # before reading a huge directory
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        reason = str(exc)
        if "not a zip file" in reason.lower():
            reason = "its zip directory is missing (the file may be truncated)"
        raise DocumentError(
            f"{path} is corrupt: {reason}", hint=f"write the {name} again; it cannot be opened"
        ) from exc
    with archive:
        infos = archive.infolist()
        _check_entries(path, len(infos))
        unpacked = sum(info.file_size for info in infos)
        if unpacked > max_unpacked:
            raise DocumentError(
                f"{path} unpacks to {size_text(unpacked)}; documents that unpack to over "
                f"{size_text(max_unpacked)} are not reviewed or published",
                hint="it is refused before parsing (it may be a zip bomb); split the data "
                "into smaller files",
            )
        kind = _zip_kind({info.filename for info in infos}, archive)
    if kind == fmt:
        return
    if kind in ("xlsx", "docx"):
        raise DocumentError(
            f"{path} is {_LABELS[kind]}, not {label}",
            hint=f"save it with the .{kind} extension, or write a real {name}",
        )
    found = {"pptx": "a PPTX presentation", None: "a zip archive but not an Office file"}
    raise DocumentError(
        f"{path} is not {label}: it is {found.get(kind, kind)}",
        hint=f"write a real {name}, or use the extension that matches the content",
    )


def _declared_entries(data: bytes) -> int:
    """The entry count in the zip's end-of-directory record (0 if absent or zip64)."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65557))
    if end < 0 or end + 12 > len(data):
        return 0
    count = int.from_bytes(data[end + 10 : end + 12], "little")
    return 0 if count == 0xFFFF else count


def _check_entries(path: str, count: int) -> None:
    if count > MAX_ENTRIES:
        raise DocumentError(
            f"{path} has {count} zip entries; documents with over {MAX_ENTRIES} are not "
            "reviewed or published",
            hint="it is refused before parsing; a real workbook or document has far fewer",
        )


def _decode(path: str, data: bytes, fmt: str) -> str:
    """UTF-8 text of a Markdown or CSV file (a UTF-8 BOM is dropped), or DocumentError."""
    kind = "CSV file" if fmt == "csv" else "Markdown file"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError(
            f"{path} is UTF-16 text; a {kind} must be UTF-8",
            hint="save it as UTF-8 (in Excel: 'CSV UTF-8')",
        )
    if data.startswith(_ZIP_MAGIC):
        raise DocumentError(
            f"{path} is not a {kind}: it is a zip file (an XLSX or DOCX?)",
            hint="use the extension that matches the content",
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DocumentError(
            f"{path} is not a {kind}: it contains a NUL byte at offset {nul} (binary data)",
            hint="use the extension that matches the content",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise DocumentError(
            f"{path} is not UTF-8 text: invalid byte 0x{byte:02x} on line {line} "
            f"(offset {exc.start})",
            hint="save it as UTF-8 (in Excel: 'CSV UTF-8'); Latin-1 / Windows-1252 files "
            "must be converted",
        ) from exc


def _parse_failure(path: str, fmt: str, exc: Exception) -> DocumentError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError):
        message = f"{path} is corrupt: {reason}"
    else:
        message = f"{path} is corrupt or not a valid {_NAMES[fmt]}: {type(exc).__name__}: {reason}"
    return DocumentError(message, hint=f"write the {_NAMES[fmt]} again; it cannot be read")


# --- load ------------------------------------------------------------------------------------


def load_text(path: str, data: bytes, max_bytes: int = MAX_BYTES) -> str:
    """The text of a Markdown or CSV file (checked: size, UTF-8, no NUL bytes)."""
    fmt = check(path, data, max_bytes)
    if fmt not in ("markdown", "csv"):
        raise DocumentError(f"{path} is not a text document (it is {fmt})")
    return _decode(path, data, fmt)


def load_csv(path: str, data: bytes, max_bytes: int = MAX_BYTES) -> list[list[str]]:
    """The rows of a CSV file (comma-separated, UTF-8), every cell a string."""
    text = load_text(path, data, max_bytes)
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DocumentError(
            f"{path} is not valid CSV: {exc}", hint="check quoting; fields must be under 128 KB"
        ) from exc


def load_xlsx(path: str, data: bytes, max_bytes: int = MAX_BYTES) -> Workbook:
    """The sheets of an XLSX workbook: formulas as their text, dates as dates.

    Checked first (size, zip directory, unpacked size); openpyxl reads it read-only with
    formulas (not cached values). Chart sheets are kept as empty sheets.
    """
    import openpyxl

    _require(path, check(path, data, max_bytes), "xlsx")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:
        raise _parse_failure(path, "xlsx", exc) from exc
    sheets: dict[str, list[list[Cell]]] = {}
    looks: dict[str, SheetLook] = {}
    try:
        styles = StyleReader(book)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:  # once, for every sheet's features
            budget = [MAX_CELLS]  # cells the sheets may still take, shared by all
            for name in book.sheetnames:
                sheets[name], looks[name] = _read_sheet(book[name], styles, archive, budget)
            parts = read_workbook_parts(archive)
    except DocumentError as error:
        raise DocumentError(f"{path}: {error.message}") from None
    except Exception as exc:
        raise _parse_failure(path, "xlsx", exc) from exc
    finally:
        book.close()
    return Workbook.model_construct(sheets=sheets, looks=looks, parts=parts)


def _require(path: str, fmt: str, wanted: str) -> None:
    if fmt != wanted:
        raise DocumentError(f"{path} is not {_LABELS[wanted]} (by its extension it is {fmt})")


def _read_sheet(
    sheet: Any, styles: StyleReader, archive: zipfile.ZipFile, budget: list[int]
) -> tuple[list[list[Cell]], SheetLook]:
    """The sheet's values, and how it looks: each cell's style and the sheet's features.
    `budget` holds the cells the workbook may still take (DocumentError past it)."""
    if not hasattr(sheet, "iter_rows"):  # a chart sheet
        return [], SheetLook()
    sheet.reset_dimensions()  # read every cell, whatever the stored dimension says
    rows: list[list[Cell]] = []
    looks: list[list[int]] = []
    index: dict[Style, int] = {(): 0}
    known: dict[int, int] = {0: 0}  # the file's style id -> index in this sheet's styles
    gap = 0  # empty rows read since the last row with something in it
    for row in sheet.iter_rows():
        if not row:  # a row the file leaves out, or one with no cells
            gap += 1
            continue
        values = _trim_row([_cell(getattr(c, "value", None)) for c in row])
        marks = []
        for c in row:
            style_id = getattr(c, "_style_id", 0)
            mark = known.get(style_id)
            if mark is None:
                mark = known[style_id] = index.setdefault(styles.style(style_id), len(index))
            marks.append(mark)
        while marks and not marks[-1]:
            marks.pop()
        if not values and not marks:
            gap += 1
            continue
        # Empty rows are kept only between rows with content: a file that marks its last
        # row (XFD1048576) costs nothing, and one with content that far is refused.
        budget[0] -= gap + max(len(values), len(marks))
        if budget[0] < 0:
            raise DocumentError(
                f"sheet {sheet.title!r} reaches row {len(rows) + gap + 1:,} and the workbook "
                f"over {MAX_CELLS:,} cells (an empty row between others counts as one); "
                "workbooks that large are not reviewed"
            )
        rows.extend([] for _ in range(gap))
        looks.extend([] for _ in range(gap))
        gap = 0
        rows.append(values)
        looks.append(marks)
    while rows and not rows[-1]:
        rows.pop()
    while looks and not looks[-1]:
        looks.pop()
    look = SheetLook(styles=list(index), cells=looks, features=read_features(archive, sheet))
    return rows, look


_PLAIN = (int, float, bool)


def _cell(value: Any) -> Cell:
    """An openpyxl value as a Cell."""
    kind = type(value)
    if value is None or kind in _PLAIN:
        return value
    if kind is str:
        return value or None
    if kind is dt.datetime:
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date()
        return value
    if isinstance(value, dt.date | dt.time | dt.timedelta):
        return value
    text = getattr(value, "text", None)  # ArrayFormula, DataTableFormula
    if isinstance(text, str):
        return text
    return str(value)


def load_docx(path: str, data: bytes, max_bytes: int = MAX_BYTES) -> Document:
    """The document: its body's paragraphs and tables in order (content controls opened), its
    headers and footers, comments, unaccepted tracked changes and pictures. Only a body that
    cannot be read raises DocumentError; any other part that cannot be read (corrupt XML, a
    picture whose relationship is missing) is named in `unread` and the rest is read."""
    import docx

    _require(path, check(path, data, max_bytes), "docx")
    unread: list[str] = []
    try:
        try:
            document = docx.Document(io.BytesIO(data))
        except Exception as exc:  # a broken side part (comments, a header): read without it
            try:
                document, unread = _without_broken_parts(data, exc)
            except Exception:
                raise exc from None
        reader = _DocxReader(document)
        blocks = list(reader.blocks(document.element.body))
    except Exception as exc:
        raise _parse_failure(path, "docx", exc) from exc
    out = Document.model_construct(
        blocks=blocks, headers={}, comments=[], revisions=[], images=[], unread=unread
    )
    for what, read in (
        ("the headers and footers", reader.headers),
        ("the tracked changes and pictures", reader.marks),
        ("the comments", reader.comments),
    ):
        try:
            read(out)
        except Exception as exc:
            out.unread.append(f"{what}: {_problem(exc)}")
    return out


def _problem(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:160]}" if str(exc) else type(exc).__name__


# The side parts python-docx parses when it opens a file (docx.opc.part.PartFactory), by
# content type, as the empty XML that stands in for one that is not XML (so one broken part
# does not hide the body).
_MAIN = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_WML = "application/vnd.openxmlformats-officedocument.wordprocessingml."
_EMPTY_PARTS = {
    f"{_WML}{kind}+xml": f'<w:{root} xmlns:w="{_MAIN}"/>'
    for kind, root in (("comments", "comments"), ("header", "hdr"), ("footer", "ftr"),
                       ("numbering", "numbering"), ("styles", "styles"), ("settings", "settings"))
}  # fmt: skip
_CORE = "http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
_EMPTY_PARTS["application/vnd.openxmlformats-package.core-properties+xml"] = (
    f'<cp:coreProperties xmlns:cp="{_CORE}"/>'
)


def _without_broken_parts(data: bytes, failure: Exception) -> tuple[Any, list[str]]:
    """The document opened with each side part that is not XML replaced by an empty one and
    each relationship to a part the file lacks left out, and what was left out, in words;
    re-raises `failure` when neither explains it."""
    import posixpath

    import docx
    from lxml import etree

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        types = etree.fromstring(archive.read("[Content_Types].xml"))
        overrides = {
            o.get("PartName", "").lstrip("/"): o.get("ContentType", "")
            for o in types
            if o.tag.endswith("Override")
        }
        replaced: dict[str, bytes] = {}
        unread: list[str] = []
        for name, content_type in overrides.items():
            if content_type not in _EMPTY_PARTS or name not in names:
                continue
            try:
                etree.fromstring(archive.read(name))
            except etree.XMLSyntaxError:
                replaced[name] = _EMPTY_PARTS[content_type].encode()
                unread.append(f"{name}: not XML, left out")
        dropped: set[str] = set()
        for name in sorted(n for n in names if n.endswith(".rels")):
            try:
                rels = etree.fromstring(archive.read(name))
            except etree.XMLSyntaxError:
                if name == "_rels/.rels":  # the way to the body itself
                    raise
                dropped.add(name)
                unread.append(f"{name}: not XML, left out (with the relationships it lists)")
                continue
            base = posixpath.dirname(posixpath.dirname(name))  # word/_rels/x.rels -> word
            for rel in list(rels):
                target = rel.get("Target", "")
                if rel.get("TargetMode") == "External":
                    continue
                path = (target.lstrip("/") if target.startswith("/")
                        else posixpath.normpath(posixpath.join(base, target)))  # fmt: skip
                if path not in names:
                    rels.remove(rel)
                    unread.append(f"{path}: missing from the file, left out")
                    replaced[name] = etree.tostring(rels, xml_declaration=True, encoding="UTF-8")
        if not replaced and not dropped:
            raise failure
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as rewritten:
            for info in archive.infolist():
                if info.filename not in dropped:
                    rewritten.writestr(info, replaced.get(info.filename) or archive.read(info))
    return docx.Document(io.BytesIO(out.getvalue())), unread


_RUN_CONTAINERS = {"hyperlink", "ins", "smartTag", "fldSimple", "sdt", "sdtContent", "moveTo",
                   "customXml", "dir", "bdo"}  # fmt: skip
_MARK_TAGS = (("b", "bold"), ("i", "italic"), ("u", "underline"), ("rStyle", "style"))
_MARK_ORDER = {"bold": "0", "italic": "1", "underline": "2"}  # then styles by name
_OFF = ("0", "false", "off", "none")
_VML_IMAGE = "{urn:schemas-microsoft-com:vml}imagedata"  # pictures in older Word files


class _DocxReader:
    """Reads one opened python-docx document into the data model: style names looked up once
    (python-docx scans every style to find the default one for each paragraph)."""

    def __init__(self, document: Any) -> None:
        from docx.enum.style import WD_STYLE_TYPE

        self.document = document
        self.anchors: dict[str, str] = {}  # comment id -> the text it is on, found by `marks`
        self._formatted_run: Any = None  # the last run a tracked formatting change was on
        self.styles: dict[str, str] = {}
        self.character_styles: dict[str, str] = {}
        self.default_style = "Normal"
        try:
            styles = document.styles
            for style in styles:
                if style.type == WD_STYLE_TYPE.PARAGRAPH and style.style_id:
                    self.styles[style.style_id] = style.name
                elif style.type == WD_STYLE_TYPE.CHARACTER and style.style_id:
                    self.character_styles[style.style_id] = style.name
            default = styles.default(WD_STYLE_TYPE.PARAGRAPH)
            if default is not None and default.name:
                self.default_style = default.name
        except Exception:  # no styles part, or a broken one: every paragraph is "Normal"
            pass

    def blocks(self, parent: Any) -> Any:
        """Paragraphs and tables of a body, a cell or a header, in order."""
        from docx.oxml.ns import qn

        for child in parent.iterchildren():
            if child.tag == qn("w:p"):
                text, marks = _paragraph_text(child, self.character_styles)
                yield Paragraph.model_construct(
                    kind="paragraph", style=self._style(child), text=text, marks=marks
                )
            elif child.tag == qn("w:tbl"):
                yield Table(rows=self._rows(child))
            elif child.tag == qn("w:sdt"):
                content = child.find(qn("w:sdtContent"))
                if content is not None:
                    yield from self.blocks(content)

    def _style(self, p: Any) -> str:
        from docx.oxml.ns import qn

        ppr = p.find(qn("w:pPr"))
        pstyle = ppr.find(qn("w:pStyle")) if ppr is not None else None
        if pstyle is None:
            return self.default_style
        return self.styles.get(pstyle.get(qn("w:val")), self.default_style)

    def _rows(self, tbl: Any) -> list[list[str]]:
        from docx.table import Table as DocxTable

        return [
            ["\n".join(_paragraph_text(p)[0] for p in cell._tc.p_lst) for cell in row.cells]
            for row in DocxTable(tbl, self.document).rows
        ]

    def headers(self, out: Document) -> None:
        """Each header and footer a section defines (not linked to the previous one), by name;
        empty ones left out."""
        for n, section in enumerate(self.document.sections, start=1):
            for attr, name in (
                ("header", "header"), ("first_page_header", "first-page header"),
                ("even_page_header", "even-page header"), ("footer", "footer"),
                ("first_page_footer", "first-page footer"),
                ("even_page_footer", "even-page footer"),
            ):  # fmt: skip
                named = name if n == 1 else f"{name} (section {n})"
                try:
                    text = self._header(getattr(section, attr))
                except KeyError as exc:  # python-docx names the relationship id it lacks
                    out.unread.append(f"the {named}: its relationship {exc.args[0]} is missing")
                    continue
                except Exception as exc:
                    out.unread.append(f"the {named}: {_problem(exc)}")
                    continue
                if text:
                    out.headers[named] = text

    def _header(self, part: Any) -> str:
        """A header's or footer's text ("" when linked to the previous section's)."""
        if part.is_linked_to_previous:
            return ""
        lines = []
        for block in self.blocks(part._element):
            if isinstance(block, Paragraph):
                lines.append(block.text)
            else:
                lines += [" | ".join(row) for row in block.rows]
        return "\n".join(lines).strip()

    def marks(self, out: Document) -> None:
        """One pass over the body: tracked changes, pictures with their bytes' hash (a missing
        relationship is named in `unread`), and the text each comment is on."""
        from docx.oxml.ns import qn

        ins, dele, blip, imagedata = qn("w:ins"), qn("w:del"), qn("a:blip"), _VML_IMAGE
        moved = qn("w:moveTo")
        formatted = (qn("w:rPrChange"), qn("w:pPrChange"))
        start, end = qn("w:commentRangeStart"), qn("w:commentRangeEnd")
        t, embed, rid = qn("w:t"), qn("r:embed"), qn("r:id")
        anchors: dict[str, list[str]] = {}
        open_ids: list[str] = []
        parts = self.document.part.rels
        for element in self.document.element.body.iter():
            tag = element.tag
            if tag == t:
                for key in open_ids:
                    anchors[key].append(element.text or "")
            elif tag == start:
                key = element.get(qn("w:id"), "")
                anchors[key], open_ids = [], [*open_ids, key]
            elif tag == end:
                open_ids = [k for k in open_ids if k != element.get(qn("w:id"), "")]
            elif tag in (ins, dele, moved) and element.getparent().tag != qn("w:rPr"):
                kind = "inserted" if tag == ins else "deleted" if tag == dele else "moved"
                self._revision(out, element, kind)
            elif tag in formatted:
                self._formatted(out, element)
            elif tag in (blip, imagedata):
                key = element.get(embed if tag == blip else rid)
                if not key:
                    continue
                rel = parts.get(key)
                if rel is None or rel.is_external:
                    out.unread.append(f"a picture: its relationship {key} is missing")
                    continue
                blob = rel.target_part.blob
                name = rel.target_part.partname.lstrip("/")
                out.images.append(
                    Image(name=name, sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
                )
        self.anchors = {k: "".join(v) for k, v in anchors.items()}

    def _formatted(self, out: Document, change: Any) -> None:
        """A tracked formatting change: of a run (its text) or a paragraph (its text); runs
        one after another by one author are one change."""
        from docx.oxml.ns import qn

        holder = change.getparent().getparent()  # w:rPr in a w:r, or w:pPr in a w:p
        if holder is None or holder.tag not in (qn("w:r"), qn("w:p")):
            return  # a paragraph mark's or a style's
        if holder.tag == qn("w:p"):
            text = _paragraph_text(holder)[0]
        else:
            text = "".join(str(e) for e in holder.iterchildren() if e.tag in _run_text_tags())
        author = change.get(qn("w:author"), "")
        last = out.revisions[-1] if out.revisions else None
        follows = holder.tag == qn("w:r") and holder.getprevious() is self._formatted_run
        if last and last.kind == "formatted" and last.author == author and follows:
            last.text += text
        else:
            out.revisions.append(Revision(kind="formatted", author=author, text=text))
        self._formatted_run = holder if holder.tag == qn("w:r") else None

    def _revision(self, out: Document, element: Any, kind: str) -> None:
        from docx.oxml.ns import qn

        tag = qn("w:delText") if kind == "deleted" else qn("w:t")
        text = "".join(e.text or "" for e in element.iter(tag))
        if not text:  # a paragraph mark or a table row: its text is in its runs' revisions
            return
        author = element.get(qn("w:author"), "")
        last = out.revisions[-1] if out.revisions else None
        previous = element.getprevious()
        if (last and last.kind == kind and last.author == author and previous is not None
                and previous.tag == element.tag):  # fmt: skip
            last.text += text  # Word splits one edit into a w:ins per run
            return
        out.revisions.append(Revision(kind=kind, author=author, text=text))  # type: ignore[arg-type]

    def comments(self, out: Document) -> None:
        """The comments part's comments, with the text each is on (after `marks`)."""
        from docx.opc.constants import RELATIONSHIP_TYPE as RT
        from docx.oxml.ns import qn

        try:
            part = self.document.part.part_related_by(RT.COMMENTS)
        except KeyError:
            return
        for comment in part.element.iterchildren(qn("w:comment")):
            text = "\n".join(_paragraph_text(p)[0] for p in comment.iter(qn("w:p")))
            out.comments.append(
                Comment(
                    author=comment.get(qn("w:author"), ""),
                    text=text,
                    anchor=self.anchors.get(comment.get(qn("w:id"), ""), ""),
                )
            )


def _paragraph_text(
    p: Any, character_styles: dict[str, str] | None = None
) -> tuple[str, list[tuple[str, int, int]]]:
    """A w:p's text with tracked insertions and without deletions, and its runs' marks (their
    character styles too when given the names of the document's, by style id)."""
    from docx.oxml.ns import qn

    parts: list[str] = []
    spans: dict[str, list[list[int]]] = {}
    at = 0
    run_tag = qn("w:r")
    rpr_tag = qn("w:rPr")
    val = qn("w:val")
    texts = _run_text_tags()
    for run in _runs(p, run_tag):
        # python-docx's run.text, without its xpath per run (a third of the load time)
        text = "".join(str(e) for e in run.iterchildren() if e.tag in texts)
        if not text:
            continue
        parts.append(text)
        rpr = run.find(rpr_tag)
        if rpr is not None:
            for tag, what in _MARK_TAGS:
                flag = rpr.find(qn(f"w:{tag}"))
                if tag == "rStyle":
                    if flag is None or character_styles is None or not flag.get(val):
                        continue
                    what = f"style {character_styles.get(flag.get(val), flag.get(val))!r}"
                elif flag is None or flag.get(val, "true") in _OFF:
                    continue
                mine = spans.setdefault(what, [])
                if mine and mine[-1][1] == at:
                    mine[-1][1] = at + len(text)
                else:
                    mine.append([at, at + len(text)])
        at += len(text)
    order = sorted(spans, key=lambda what: _MARK_ORDER.get(what, f"3{what}"))
    marks = [(what, a, b) for what in order for a, b in spans[what]]
    return "".join(parts), marks


@functools.cache
def _run_text_tags() -> frozenset[str]:
    from docx.oxml.ns import qn

    return frozenset(qn(f"w:{t}") for t in ("br", "cr", "noBreakHyphen", "ptab", "t", "tab"))


def _runs(parent: Any, run_tag: str) -> Any:
    for child in parent.iterchildren():
        if child.tag == run_tag:
            yield child
        elif isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] in _RUN_CONTAINERS:
            yield from _runs(child, run_tag)


# --- inputs: files a person attaches to a request -------------------------------------------

MEDIA_TYPES = {
    "markdown": "text/markdown",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


def check_attachment(name: str, size: int, max_bytes: int = MAX_BYTES) -> str:
    """The format an attached file's name says, checked before a byte of it is read: its
    extension is one of the four formats and its (declared) size is within `max_bytes`."""
    fmt = format_of(name)
    if fmt is None:
        raise DocumentError(
            f"{name} is not a CSV, XLSX, DOCX or Markdown file; attach one of those",
            hint="a doc job takes .csv, .xlsx, .docx and .md files as inputs; save a PDF, an "
            ".xls or a .doc as one of those first",
        )
    if size > max_bytes:
        raise DocumentError(
            f"{name} is {size_text(size)}, over the {size_text(max_bytes)} limit for documents",
            hint="attach a smaller file (split it, or keep the columns the job needs), or "
            "raise limits.doc_max_bytes in the policy",
        )
    return fmt


def read_as(name: str, data: bytes, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """What an attached file is, read in full now, so a corrupt or mislabelled one is refused
    before a job exists: its format and shape (CSV rows and columns, workbook sheets, document
    paragraphs and tables, Markdown lines and headings). DocumentError names the file."""
    fmt = check_attachment(name, len(data), max_bytes)
    if fmt in ("csv", "markdown") and data.startswith(b"%PDF"):
        kind = "CSV file" if fmt == "csv" else "Markdown file"
        raise DocumentError(
            f"{name} is not a {kind}: it looks like a PDF",
            hint="export the table as CSV (or the text as Markdown) and attach that",
        )
    if fmt == "csv":
        rows = load_csv(name, data, max_bytes)
        return {"format": fmt, "rows": len(rows), "columns": max(map(len, rows), default=0)}
    if fmt == "xlsx":
        check(name, data, max_bytes)  # the zip's directory and limits, before openpyxl reads it
        return {"format": fmt, "sheets": _sheet_shapes(name, data)}
    if fmt == "docx":
        document = load_docx(name, data, max_bytes)
        headings = sum(1 for p in document.paragraphs if p.style.startswith(("Heading", "Title")))
        return {
            "format": fmt,
            "paragraphs": len(document.paragraphs),
            "headings": headings,
            "tables": len(document.tables),
        }
    lines = load_text(name, data, max_bytes).splitlines()
    return {
        "format": fmt,
        "lines": len(lines),
        "headings": sum(1 for line in lines if _HEADING.match(line)),
    }


_COUNTED_CELLS = 50_000  # a sheet declaring more is described by its declared range
_COUNTED_ROWS = 10_000  # a sheet declaring no range is counted this far ("10000+ rows")


def _sheet_shapes(name: str, data: bytes) -> list[dict[str, Any]]:
    """Each sheet's name, rows and columns with a value, counted (openpyxl reads some 50,000
    cells a second, so a request waits a second at most): for a big sheet, the used range the
    workbook declares instead (Excel and LibreOffice write one; empty and merged cells inside it
    count); for a big sheet declaring none (openpyxl's write-only files), its first rows and
    `more`."""
    import openpyxl
    from openpyxl.utils.cell import range_boundaries

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:
        raise _parse_failure(name, "xlsx", exc) from exc
    shapes = []
    try:
        for title in book.sheetnames:
            sheet = book[title]
            shape: dict[str, Any] = {"name": title, "rows": 0, "columns": 0}
            if hasattr(sheet, "iter_rows"):  # not a chart sheet
                try:
                    _, _, columns, rows = range_boundaries(sheet.calculate_dimension())
                except ValueError:  # no declared range
                    columns = rows = None
                if rows and columns and rows * columns > _COUNTED_CELLS:
                    shape.update(rows=rows, columns=columns)
                else:
                    sheet.reset_dimensions()
                    read = itertools.islice(sheet.iter_rows(values_only=True), _COUNTED_ROWS + 1)
                    trimmed = trim_rows([list(r) for r in read])
                    more = len(trimmed) > _COUNTED_ROWS
                    trimmed = trimmed[:_COUNTED_ROWS]
                    shape.update(rows=len(trimmed), columns=max(map(len, trimmed), default=0))
                    if more:
                        shape["more"] = True
            shapes.append(shape)
    except DocumentError:
        raise
    except Exception as exc:
        raise _parse_failure(name, "xlsx", exc) from exc
    finally:
        book.close()
    return shapes


def read_as_text(facts: dict[str, Any]) -> str:
    """`read_as`'s facts as a reviewer reads them: "CSV, 12 rows × 6 columns"."""

    def count(n: int, what: str) -> str:
        return f"{n} {what}" if n == 1 else f"{n} {what}s"

    fmt = facts.get("format")
    if fmt == "csv":
        return f"CSV, {count(facts['rows'], 'row')} × {count(facts['columns'], 'column')}"
    if fmt == "xlsx":
        sheets = facts.get("sheets", [])
        shown = ", ".join(
            f"{s['name']} {count(s['rows'], 'row')}{'+' if s.get('more') else ''} × "
            f"{count(s['columns'], 'column')}"
            for s in sheets[:10]
        )
        more = f", {len(sheets) - 10} more" if len(sheets) > 10 else ""
        return f"XLSX workbook, {count(len(sheets), 'sheet')}: {shown}{more}"
    if fmt == "docx":
        return (
            f"DOCX document, {count(facts['paragraphs'], 'paragraph')} "
            f"({count(facts['headings'], 'heading')}), {count(facts['tables'], 'table')}"
        )
    if fmt == "markdown":
        return f"Markdown, {count(facts['lines'], 'line')}, {count(facts['headings'], 'heading')}"
    return str(fmt)


# --- write -----------------------------------------------------------------------------------


def write_csv(rows: list[list[Cell]]) -> bytes:
    """UTF-8 CSV (comma, "\\n" line ends); None is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode("utf-8")


def write_xlsx(wb: Workbook) -> bytes:
    """XLSX bytes for a workbook; strings starting with "=" become formulas.

    Raises DocumentError for a workbook with no sheets, a sheet name Excel refuses, or text
    with a control character XLSX cannot store (all checked before anything is written).
    """
    import openpyxl

    _check_writable(wb)
    book = openpyxl.Workbook(write_only=True)
    for name, rows in wb.sheets.items():
        sheet = book.create_sheet(title=name)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _check_writable(wb: Workbook) -> None:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    if not wb.sheets:
        raise DocumentError("a workbook needs at least one sheet", hint="add a sheet")
    taken: set[str] = set()
    for name, rows in wb.sheets.items():
        if safe_sheet_name(name, taken) != name:
            raise DocumentError(
                f"sheet name {name!r} is not valid in Excel (at most 31 characters, none of "
                "[]:*?/\\, not blank, unique ignoring case)",
                hint="use runtime.doc_formats.safe_sheet_name to make one",
            )
        taken.add(name.lower())
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if isinstance(value, str) and ILLEGAL_CHARACTERS_RE.search(value):
                    raise DocumentError(
                        f"sheet {name!r} row {r} column {c} has a control character that XLSX "
                        "cannot store",
                        hint="remove control characters (other than tab and newline) from text",
                    )


def write_docx(doc: Document) -> bytes:
    """DOCX bytes for a document, on python-docx's default template.

    Paragraph styles must exist in that template ("Normal", "Heading 1".."Heading 9",
    "List Bullet", "List Number", "Title", "Quote", ...); tables get "Table Grid".
    """
    import docx

    out = docx.Document()
    for block in doc.blocks:
        if isinstance(block, Paragraph):
            if block.style not in out.styles:
                raise DocumentError(
                    f"paragraph style {block.style!r} is not in the default DOCX template",
                    hint="use Normal, Heading 1-9, List Bullet, List Number, Title or Quote",
                )
            out.add_paragraph(block.text, style=block.style)
            continue
        width = len(block.rows[0]) if block.rows else 0
        table = out.add_table(rows=len(block.rows), cols=width)
        if "Table Grid" in out.styles:
            table.style = "Table Grid"
        for row, texts in zip(table.rows, block.rows, strict=True):
            for cell, text in zip(row.cells, texts, strict=True):
                cell.text = text
    buf = io.BytesIO()
    out.save(buf)
    return buf.getvalue()


# --- Markdown --------------------------------------------------------------------------------

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)\d+[.)]\s+(.*)$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_RULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)\)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_INVALID_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


def _inline(text: str) -> str:
    """Markdown inline markup dropped: **bold**, `code`, [text](url) -> text (url)."""
    text = _LINK.sub(lambda m: m.group(1) if m.group(0)[0] == "!" else f"{m[1]} ({m[2]})", text)
    return text.replace("**", "").replace("`", "").strip()


def _is_table_start(lines: list[str], i: int) -> bool:
    if "|" not in lines[i] or i + 1 >= len(lines):
        return False
    sep = lines[i + 1].strip()
    return "|" in sep and "-" in sep and set(sep) <= set("|:- ")


def _table_cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [cell.replace("\\|", "|").strip() for cell in _CELL_SPLIT.split(line)]


def _read_table(lines: list[str], i: int) -> tuple[list[list[str]], int]:
    """The pipe table starting at line i (header, separator, body) and the line after it."""
    rows = [_table_cells(lines[i])]
    i += 2
    while i < len(lines) and "|" in lines[i] and lines[i].strip():
        rows.append(_table_cells(lines[i]))
        i += 1
    return rows, i


def _markdown_blocks(text: str) -> list[tuple[str, Any]]:
    """("heading", (level, text)), ("para", text), ("bullet", (level, text)), ("number", ...),
    ("code", text) and ("table", rows) in order."""
    lines = text.splitlines()
    blocks: list[tuple[str, Any]] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(("para", " ".join(line.strip() for line in para)))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if fence_match := _FENCE.match(line):
            flush()
            fence = fence_match.group(1)
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith(fence):
                body.append(lines[i])
                i += 1
            blocks.append(("code", "\n".join(body)))
            i += 1
            continue
        if not line.strip() or _RULE.match(line):
            flush()
            i += 1
            continue
        if _is_table_start(lines, i):
            flush()
            rows, i = _read_table(lines, i)
            blocks.append(("table", rows))
            continue
        heading = _HEADING.match(line)
        item = _BULLET.match(line) or _NUMBERED.match(line)
        if heading:
            flush()
            blocks.append(("heading", (len(heading[1]), heading[2])))
        elif item:
            flush()
            kind = "bullet" if _BULLET.match(line) else "number"
            level = 2 if len(item[1].expandtabs(4)) >= 2 else 1
            blocks.append((kind, (level, item[2])))
        elif blocks and blocks[-1][0] in ("bullet", "number") and line[:1].isspace() and not para:
            kind, (level, item_text) = blocks[-1]
            blocks[-1] = (kind, (level, f"{item_text} {line.strip()}"))
        else:
            para.append(line.lstrip("> ") if line.lstrip().startswith(">") else line)
        i += 1
    flush()
    return blocks


def markdown_to_document(text: str) -> Document:
    """A Document from Markdown: # .. ###### headings (Heading 1..6), paragraphs (consecutive
    lines joined), - / * / + bullets (List Bullet, indented: List Bullet 2), 1. items (List
    Number), fenced code (one Normal paragraph) and pipe tables. Inline markup is dropped."""
    blocks: list[Paragraph | Table] = []
    for kind, value in _markdown_blocks(text):
        if kind == "heading":
            blocks.append(Paragraph(style=f"Heading {value[0]}", text=_inline(value[1])))
        elif kind == "para":
            blocks.append(Paragraph(text=_inline(value)))
        elif kind in ("bullet", "number"):
            style = "List Bullet" if kind == "bullet" else "List Number"
            style += " 2" if value[0] == 2 else ""
            blocks.append(Paragraph(style=style, text=_inline(value[1])))
        elif kind == "code":
            blocks.append(Paragraph(text=value))
        else:
            blocks.append(Table(rows=[[_inline(cell) for cell in row] for row in value]))
    return Document(blocks=blocks)


def markdown_tables(text: str) -> list[tuple[str, list[list[Cell]]]]:
    """Each pipe table in a Markdown report as (sheet name, rows), for one sheet per table.

    The name is the nearest heading above the table (else "Sheet1", "Sheet2", ... by table
    number), made valid and unique for Excel. Cells that look like numbers become int / float
    ("1,234" and "-0.5e3" too; not "007" or 16+ digit ids), cells starting with "=" stay
    formulas, empty cells are None, other cells are text with inline markup dropped.
    """
    tables: list[tuple[str, list[list[Cell]]]] = []
    taken: set[str] = set()
    heading: str | None = None
    for kind, value in _markdown_blocks(text):
        if kind == "heading":
            heading = _inline(value[1])
        elif kind == "table":
            fallback = f"Sheet{len(tables) + 1}"
            name = safe_sheet_name(heading or fallback, taken, fallback=fallback)
            taken.add(name.lower())
            tables.append((name, [[_table_value(cell) for cell in row] for row in value]))
    return tables


_INT = re.compile(r"[+-]?(0|[1-9]\d{0,14})")
_GROUPED = re.compile(r"[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?")
_FLOAT = re.compile(r"[+-]?(0|[1-9]\d*)?\.\d+([eE][+-]?\d+)?|[+-]?(0|[1-9]\d*)[eE][+-]?\d+")


def _table_value(cell: str) -> Cell:
    if not cell:
        return None
    if cell.startswith("="):
        return cell
    if _INT.fullmatch(cell):
        return int(cell)
    if _GROUPED.fullmatch(cell):
        plain = cell.replace(",", "")
        return float(plain) if "." in plain else int(plain)
    if _FLOAT.fullmatch(cell):
        return float(cell)
    return _inline(cell) or None


def safe_sheet_name(name: str, taken: Collection[str] = (), fallback: str = "Sheet") -> str:
    """`name` made a valid Excel sheet name: []:*?/\\ replaced by "-", no leading or trailing
    apostrophe, at most 31 characters, and unique against `taken` (lower-cased names) by
    appending " (2)", " (3)"..."""
    clean = _INVALID_SHEET_CHARS.sub("-", name).strip().strip("'").strip() or fallback
    clean = clean[:31].rstrip()
    if clean.lower() == "history":  # reserved by Excel
        clean = f"{clean} (sheet)"
    candidate, n = clean, 1
    while candidate.lower() in taken:
        n += 1
        suffix = f" ({n})"
        candidate = clean[: 31 - len(suffix)].rstrip() + suffix
    return candidate
