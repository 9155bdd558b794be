"""The dispatcher: `review` takes the bytes of the old and new version of one document and
returns a `Review`. The only module here that checks and loads files (by runtime.doc_formats);
every other one takes loaded data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime import doc_formats
from runtime.doc_formats import MAX_BYTES
from runtime.kinds.doc.diff.document import diff_docx
from runtime.kinds.doc.diff.model import FileStatus, Review
from runtime.kinds.doc.diff.preview import preview_document, preview_text, preview_workbook
from runtime.kinds.doc.diff.render import MAX_LINES, render_document_diff, render_workbook_diff
from runtime.kinds.doc.diff.summary import summarize_document, summarize_workbook
from runtime.kinds.doc.diff.text import _text_summary, diff_text
from runtime.kinds.doc.diff.wording import _plural
from runtime.kinds.doc.diff.workbook import diff_xlsx

# Workbooks and Word documents: loader, diff, one-line summary, rendering, preview.
_STRUCTURED: dict[str, tuple[Callable[..., Any], ...]] = {
    "xlsx": (
        doc_formats.load_xlsx, diff_xlsx, summarize_workbook, render_workbook_diff,
        preview_workbook,
    ),
    "docx": (
        doc_formats.load_docx, diff_docx, summarize_document, render_document_diff,
        preview_document,
    ),
}  # fmt: skip


def review(
    path: str,
    old: bytes | None,
    new: bytes | None,
    max_bytes: int = MAX_BYTES,
    *,
    max_lines: int = MAX_LINES,
) -> Review | None:
    """The review of one document from its old and new bytes (None: it did not / does not
    exist), or None when `path` is not a format reviewed here (fall back to git's diff).

    Both versions are checked and loaded by runtime.doc_formats, so a bad file raises
    DocumentError naming the path ("(old version)" for the version before the job).
    """
    fmt = doc_formats.format_of(path)
    if fmt is None:
        return None
    if old is None and new is None:
        raise ValueError(f"review of {path} needs an old or a new version")
    if fmt in _STRUCTURED:
        load, differ, summarize, render, preview = _STRUCTURED[fmt]
        old_data = _load(load, path, old, max_bytes)
        new_data = _load(load, path, new, max_bytes, old_version=False)
        diff = differ(old_data, new_data)
        return Review(
            path=path,
            format=fmt,
            status=diff.status,
            summary=summarize(diff),
            diff_text=render(path, diff, max_lines),
            preview=preview(new_data or old_data),
            diff=diff,
        )
    old_text = _load(doc_formats.load_text, path, old, max_bytes)
    new_text = _load(doc_formats.load_text, path, new, max_bytes, old_version=False)
    text = diff_text(old_text, new_text, path)
    summary = _text_summary(old_text, new_text, text)
    status: FileStatus = (
        "added" if old is None else "removed" if new is None else "changed" if text else "unchanged"
    )
    return Review(
        path=path,
        format=fmt,
        status=status,
        summary=summary,
        diff_text=_cap_lines(text, max_lines),
        preview=preview_text(path, new_text if new_text is not None else old_text or ""),
    )


def _load(
    loader: Callable[[str, bytes, int], Any],
    path: str,
    data: bytes | None,
    max_bytes: int,
    *,
    old_version: bool = True,
) -> Any:
    """loader(path, data), None for no data; errors about the old version say so."""
    if data is None:
        return None
    try:
        return loader(path, data, max_bytes)
    except doc_formats.DocumentError as exc:
        if not old_version:
            raise
        message = exc.message.replace(path, f"{path} (old version)", 1)
        raise doc_formats.DocumentError(message, hint=exc.hint) from exc


def _cap_lines(text: str, max_lines: int) -> str:
    lines = text.splitlines()
    if len(lines) <= max_lines:
        return text
    keep = max(max_lines - 1, 1)
    return "\n".join([*lines[:keep], f"... {_plural(len(lines) - keep, 'more diff line')}"]) + "\n"
