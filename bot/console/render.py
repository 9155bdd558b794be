"""The console's pages: one Jinja environment over bot/console/templates, autoescaping
everything (a job's text, a model's output, a file's content are untrusted), and the helpers
the templates format with."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

# The vendored scripts, pinned by their hash (the page's <script integrity=...>).
SCRIPTS = {
    "htmx-2.0.11.min.js": (
        "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
    ),
    "htmx-ext-sse-2.2.4.min.js": (
        "sha384-A986SAtodyH8eg8x8irJnYUk7i9inVQqYigD6qZ9evobksGNIXfeFvDwLSHcp31N"
    ),
}

ENDED = frozenset({"succeeded", "failed", "cancelled", "denied", "rejected", "rolled_back"})


def ago(value: datetime | str | None, now: datetime | None = None) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago'; '' for nothing."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.0f} h"
    else:
        text = f"{seconds / 86400:.0f} d"
    return f"in {text}" if future else f"{text} ago"


def when(value: datetime | str | None) -> str:
    """A timestamp as people read it: 2026-12-03 19:49:07 UTC."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ago=ago, when=when)
    env.globals.update(scripts=SCRIPTS, ended=ENDED)
    return env


def page(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """A template rendered for the signed-in person (or the sign-in pages)."""
    context.setdefault("me", request.get("actor"))
    context.setdefault("csrf", request.get("csrf", ""))
    context.setdefault("nav", "")
    text = environment().get_template(name).render(**context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
