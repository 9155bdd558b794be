"""Syntax highlighting for the evidence pages: Pygments tokens as class-only spans, line by line.

Never inline styles (the console's CSP is `style-src 'self'`): a token is
`<span class="k">` and its colour comes from static/evidence.css, whose Pygments part is
`pygments_css()`, generated once. Every token's text is escaped here before it becomes Markup.
"""

from __future__ import annotations

import functools
from pathlib import PurePosixPath

from markupsafe import Markup, escape
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import STANDARD_TYPES, _TokenType
from pygments.util import ClassNotFound

SCOPE = ".ev-hl"  # the element around highlighted code; the token classes live under it
STYLE = "default"
MAX_LINE_CHARS = 2_000  # a longer line (minified code, data) is shown plain: lexing it is slow


def pygments_css() -> str:
    """The token colours, as static/evidence.css holds them (tests check they match)."""
    return HtmlFormatter(style=STYLE).get_style_defs(SCOPE) + "\n"


@functools.cache
def _css_class(ttype: _TokenType) -> str:
    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent
    return STANDARD_TYPES[ttype]


@functools.cache
def _lexer_for(key: str) -> Lexer | None:
    # stripnl=False: a hunk that starts or ends with blank lines keeps its line count.
    try:
        if key.startswith("name:"):
            return get_lexer_by_name(key[5:], stripnl=False, ensurenl=False)
        return get_lexer_for_filename(key, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def lexer_for(path: str | None) -> Lexer | None:
    """The lexer for a file name (by its extension or name), None for plain text."""
    if not path:
        return None
    name = PurePosixPath(path).name
    suffix = PurePosixPath(name).suffix.lower()
    lexer = _lexer_for(f"x{suffix}" if suffix else name)
    if lexer is None or lexer.name == "Text only":
        return None
    return lexer


def lexer_named(name: str) -> Lexer | None:
    return _lexer_for(f"name:{name}")


def plain(text: str) -> Markup:
    return escape(text)


def highlight_lines(lexer: Lexer | None, lines: list[str]) -> list[Markup]:
    """Each line as escaped HTML with token spans (lexed together, so a string or comment
    spanning lines is coloured right); plain when there is no lexer or a line is too long."""
    if lexer is None or any(len(line) > MAX_LINE_CHARS for line in lines):
        return [escape(line) for line in lines]
    out: list[list[str]] = [[]]
    for ttype, value in lexer.get_tokens("\n".join(lines)):
        css = _css_class(ttype)
        for n, part in enumerate(value.split("\n")):
            if n:
                out.append([])
            if part:
                text = str(escape(part))
                out[-1].append(f'<span class="{css}">{text}</span>' if css else text)
    shown = [Markup("".join(parts)) for parts in out[: len(lines)]]
    shown += [Markup("")] * (len(lines) - len(shown))
    return shown


def highlight(lexer: Lexer | None, text: str) -> Markup:
    """A block of text (a SQL statement), highlighted, lines joined by newlines (for <pre>)."""
    return Markup("\n").join(highlight_lines(lexer, text.split("\n")))
