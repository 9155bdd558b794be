"""The evidence renderers' Jinja environment: bot/console/templates, autoescaping everything.

Everything a job recorded is untrusted (model output, file contents, page text, cell values),
so nothing here marks text safe; the only Markup handed to a template is what this package
built from escaped pieces (highlighted code lines) or another autoescaped template rendered.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from bot.console.evidence.artifacts import artifact_url
from bot.console.render import TEMPLATES, when


def short(digest: str | None, n: int = 12) -> str:
    return (digest or "")[:n]


def size_text(size: int | None) -> str:
    """1,234 bytes / 12.3 KB / 4.5 MB."""
    if size is None:
        return ""
    if size < 10_000:
        return f"{size:,} bytes"
    if size < 10_000_000:
        return f"{size / 1000:.1f} KB"
    return f"{size / 1_000_000:.1f} MB"


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, short=short, size=size_text)
    env.globals.update(artifact_url=artifact_url, count=count)
    return env


def render(name: str, **context: Any) -> Markup:
    """An evidence template rendered; its output is escaped HTML (autoescape), so Markup."""
    return Markup(environment().get_template(f"evidence/{name}").render(**context))
