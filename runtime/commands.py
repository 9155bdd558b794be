"""Explicit shell steps in a request: `run `cmd``, chained spans, or a fenced shell block.

Pure text functions, shared by intake and the kinds that run commands.
"""

from __future__ import annotations

import re

_RUN_SPANS = re.compile(
    r"\b(?:run|execute|exec)\b\s*:?\s*(?P<spans>`[^`\n]+`(?:\s*(?:,|;|and|then|&&)?\s*`[^`\n]+`)*)",
    re.I,
)
_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"```(?:sh|bash|shell)?\n(?P<body>.*?)```", re.S)


def extract_commands(instruction: str) -> list[str]:
    """Explicit steps for direct mode: `run `cmd``, chained spans, or a fenced shell block."""
    return [c for _, c in sorted(commands_at(instruction), key=lambda item: item[0])]


def commands_at(instruction: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = [
        (m.start(), span) for m in _RUN_SPANS.finditer(instruction) for span in _SPAN.findall(m[0])
    ]
    for fence in _FENCE.finditer(instruction):
        found.extend((fence.start(), line) for line in fence.group("body").splitlines())
    # Written order: a fenced block before a `run` span runs first.
    return [(at, c.strip()) for at, c in found if c.strip()]
