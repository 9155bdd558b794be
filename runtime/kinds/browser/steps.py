"""Browser steps: the direct-mode grammar a person writes and the model's tools share.

A step is one line: a verb and its arguments, shell-quoted where they hold spaces.

    goto /users/42                   a path on the site's base URL, or a full http(s) URL
    click "role=button[name='Disable user']"
    fill #reason "left the company"
    fill #password secret:admin-password   a credential the policy names; never its value
    select #role viewer
    wait #status                      a selector to appear, or a number of milliseconds
    expect #status disabled           an assertion: visible, and containing the text
    screenshot

In a request they are backtick spans (`goto /users/42` `click #go`) or a fenced ```steps block.
Pure: no I/O and no policy; the kind's run (run.py) takes them.
"""

from __future__ import annotations

import re
import shlex
from typing import Literal

from pydantic import BaseModel

from runtime.errors import BadRequest

Verb = Literal["goto", "click", "fill", "select", "wait", "expect", "screenshot"]
_ARITY: dict[str, tuple[int, int]] = {
    "goto": (1, 1),
    "click": (1, 1),
    "fill": (2, 2),
    "select": (2, 2),
    "wait": (1, 1),
    "expect": (1, 2),
    "screenshot": (0, 0),
}
_USAGE = {
    "goto": "goto /path-or-url",
    "click": "click SELECTOR",
    "fill": 'fill SELECTOR "value"  (or secret:NAME)',
    "select": "select SELECTOR VALUE",
    "wait": "wait SELECTOR  (or milliseconds)",
    "expect": 'expect SELECTOR ["text"]',
    "screenshot": "screenshot",
}
SECRET_PREFIX = "secret:"
_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"```(?:steps|browser)?[ \t]*\n(?P<body>.*?)```", re.S)
_VERB_START = re.compile(rf"^\s*({'|'.join(_ARITY)})\b", re.I)


class BrowserStep(BaseModel):
    verb: Verb
    args: list[str]

    @property
    def secret(self) -> str | None:
        """The credential name a fill step uses, if it fills a secret."""
        if self.verb == "fill" and self.args[1].startswith(SECRET_PREFIX):
            return self.args[1][len(SECRET_PREFIX) :]
        return None

    def text(self) -> str:
        """The step as it is written (and stored): secrets appear by name only."""
        return " ".join([self.verb, *(shlex.quote(a) for a in self.args)])


def parse_step(line: str) -> BrowserStep:
    try:
        words = shlex.split(line)
    except ValueError as error:
        raise BadRequest(f"cannot read the browser step `{line}`: {error}") from None
    if not words:
        raise BadRequest("an empty browser step", hint=f"steps: {', '.join(_USAGE.values())}")
    verb, args = words[0].lower(), words[1:]
    if verb not in _ARITY:
        raise BadRequest(
            f"unknown browser step '{words[0]}'",
            hint=f"steps: {', '.join(_USAGE.values())}",
        )
    low, high = _ARITY[verb]
    if not low <= len(args) <= high:
        raise BadRequest(
            f"the browser step `{line.strip()}` takes {low if low == high else f'{low}-{high}'} "
            f"argument(s), not {len(args)}",
            hint=f"write it as: {_USAGE[verb]} (quote arguments that contain spaces)",
        )
    if verb == "wait" and args[0].isdigit() and int(args[0]) > 60_000:
        raise BadRequest("a wait step may last at most 60000 ms")
    secret = args[1] if verb == "fill" else ""
    if secret.startswith(SECRET_PREFIX) and not re.fullmatch(
        r"[A-Za-z0-9][\w.\-]*", secret[len(SECRET_PREFIX) :]
    ):
        raise BadRequest(f"'{secret}' is not a secret name", hint="fill #password secret:NAME")
    return BrowserStep(verb=verb, args=args)  # type: ignore[arg-type]


def extract_steps(instruction: str) -> list[str]:
    """The browser steps a request spells out, in written order, as stored step lines."""
    found: list[tuple[int, str]] = [
        (m.start(), m.group(1)) for m in _SPAN.finditer(instruction) if _VERB_START.match(m[1])
    ]
    for fence in _FENCE.finditer(instruction):
        found.extend(
            (fence.start(), line) for line in fence.group("body").splitlines() if line.strip()
        )
    return [line.strip() for _, line in sorted(found, key=lambda item: item[0])]


def parse_steps(lines: list[str]) -> list[BrowserStep]:
    return [parse_step(line) for line in lines]
