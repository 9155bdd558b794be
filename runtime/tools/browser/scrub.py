"""Secrets filled into a page, scrubbed from everything the job keeps: every form a browser,
a server or a trace writer gives a value (raw, percent-, form-, JSON-, JavaScript- and
HTML-encoded, nested, and in base64), replaced in step details, the model's view of the page
and the trace.
"""

from __future__ import annotations

import base64
import re
from functools import cache
from html.entities import html5 as html5_entities

REDACTED = b"[redacted]"


class Scrubbing:
    """The session's patterns of filled secrets (BrowserSession fills them in)."""

    _patterns: list[re.Pattern[bytes]]  # every form of each filled secret

    def scrub(self, text: str) -> str:
        """Text about the page with every form of a filled secret replaced (a password field
        shows its value in the accessibility tree)."""
        if not self._patterns:
            return text
        data = text.encode(errors="replace")
        for pattern in self._patterns:
            data = pattern.sub(REDACTED, data)
        return data.decode(errors="replace")

    def _holds_secret(self, text: str) -> bool:
        data = text.encode(errors="replace")
        return any(pattern.search(data) for pattern in self._patterns)


@cache
def _named_references() -> dict[str, tuple[str, ...]]:
    """HTML named character references by the character they stand for (amp -> &)."""
    names: dict[str, set[str]] = {}
    for name, value in html5_entities.items():
        if len(value) == 1:
            names.setdefault(value, set()).add(name.rstrip(";"))
    return {char: tuple(sorted(found)) for char, found in names.items()}


def _hex_digits(value: int, width: int) -> bytes:
    """value in hexadecimal, each letter in either case."""
    return b"".join(
        f"[{d.lower()}{d.upper()}]".encode() if d.isalpha() else d.encode()
        for d in f"{value:0{width}x}"
    )


def _char_forms(char: str) -> bytes:
    """A regular expression for one character in any encoding it meets on its way into a
    trace: raw; percent-encoded (either case of hex, also with the % itself encoded, as a
    URL inside a URL has it); + for a space (form encoding); JSON and JavaScript escapes
    (\\" \\\\ \\/ \\uXXXX) at any depth of nesting; HTML character references (decimal, hex,
    named; with the & itself escaped any number of times)."""
    raw = char.encode()
    point = ord(char)
    forms = [re.escape(raw), b"".join(b"%(?:25)*" + _hex_digits(byte, 2) for byte in raw)]
    if char == " ":
        forms.append(rb"\+")
    units = [point] if point < 0x10000 else [0xD800 + ((point - 0x10000) >> 10),
                                             0xDC00 + ((point - 0x10000) & 0x3FF)]  # fmt: skip
    forms.append(b"".join(rb"\\+u" + _hex_digits(unit, 4) for unit in units))
    if char in "\"\\/'":
        forms.append(rb"\\+" + re.escape(raw))
    amp = rb"&(?:amp;)*"
    forms.append(amp + b"#0*" + str(point).encode() + b";?")
    forms.append(amp + b"#[xX]0*" + _hex_digits(point, 1) + b";?")
    forms.extend(
        amp + re.escape(name.encode()) + b";?" for name in _named_references().get(char, ())
    )
    return b"(?:" + b"|".join(forms) + b")"


def _base64_forms(data: bytes) -> list[bytes]:
    """The base64 characters that depend only on data, at each of the three alignments it
    can have in a longer encoded body (standard and URL-safe alphabets)."""
    found = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data)
        kept = bytes(
            c
            for i, c in enumerate(encoded)
            if 6 * i >= 8 * offset and 6 * i + 6 <= 8 * (offset + len(data))
        )
        if len(kept) >= 4:
            found.extend({kept, kept.replace(b"+", b"-").replace(b"/", b"_")})
    return found


def secret_pattern(secret: str) -> re.Pattern[bytes]:
    """Every form of secret a browser can put in a trace or a page (see _char_forms), and
    its base64 (a request body stored encoded)."""
    chars = b"".join(_char_forms(char) for char in secret)
    alternatives = [chars, *(re.escape(form) for form in _base64_forms(secret.encode()))]
    return re.compile(b"|".join(alternatives))
