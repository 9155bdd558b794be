"""The Markdown and CSV diff: `diff_text`, a unified diff of two texts, and its one-line
summary. Pure: no I/O.
"""

from __future__ import annotations

import difflib

from runtime.kinds.doc.diff.wording import _plural


def diff_text(old: str | None, new: str | None, path: str) -> str:
    """A unified diff (3 lines of context) with a/path and b/path headers; "" when equal.

    Line endings are ignored (a file rewritten with CRLF is not all changed). A new file is
    every line added; a deleted one every line removed.
    """
    a = old.splitlines() if old is not None else []
    b = new.splitlines() if new is not None else []
    lines = list(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", lineterm=""))
    return "\n".join(lines) + "\n" if lines else ""


def _text_summary(old: str | None, new: str | None, diff: str) -> str:
    if old is None:
        return f"new file: {_plural(len((new or '').splitlines()), 'line')}"
    if new is None:
        return f"file deleted: {_plural(len(old.splitlines()), 'line')}"
    added = removed = 0
    for line in diff.splitlines()[2:]:
        added += line.startswith("+")
        removed += line.startswith("-")
    if not added and not removed:
        return "no changes"
    return f"{_plural(added, 'line')} added, {_plural(removed, 'line')} removed"
