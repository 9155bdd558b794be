"""Untrusted text (a model's output, a file name, command output) made safe to encode.

A lone surrogate (what JSON's "\\ud800" or a file name of invalid UTF-8 decodes to) cannot be
written as UTF-8, so every encoder downstream (the audit chain, SQLite, HTTP, a terminal,
Slack) fails on it. Here it becomes visible text, "\\ud800". This must never change text that
encodes, and never drop a character: what was sent stays readable in the record.
"""

from __future__ import annotations

import re
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def has_lone_surrogate(text: str) -> bool:
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


def escape_text(text: str) -> str:
    """`text` with each lone surrogate written as the six characters \\udXXX."""
    if text.isascii():  # the common case costs one scan in C
        return text
    return _LONE_SURROGATE.sub(_escaped, text)


def escape_data(value: Any) -> Any:
    """escape_text applied to every string (keys included) of a JSON-like value."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_data(k): escape_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_data(v) for v in value]
    return value


def escape_json_text(serialized: str) -> str:
    """A JSON document (dumped with ensure_ascii=False) made encodable, as escape_data would.

    A lone surrogate can only sit inside a JSON string, so writing it as the JSON text
    `\\\\udXXX` decodes to the same visible \\udXXX that escape_text gives.
    """
    try:
        serialized.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub(lambda m: "\\" + _escaped(m), serialized)
    return serialized
