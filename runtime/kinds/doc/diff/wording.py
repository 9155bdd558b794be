"""How counts, names and long values are worded in diff text and previews: "1 row" /
"2 rows", a list of quoted names, a value on one line cut to a width.
"""

from __future__ import annotations


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cut(text: str, width: int) -> str:
    text = text.replace("\r\n", "\n").replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)
