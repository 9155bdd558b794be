"""Keeping secret values out of everything we store or show.

Secrets are referenced by name (an environment variable); `redact` replaces any secret value
from the service's environment, and any password inside a URL, before text is stored or shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import lru_cache

_SECRET_NAME = re.compile(r"(TOKEN|SECRET|KEY|PASSWORD|PASSWD|DSN|CREDENTIAL|COOKIE)", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]+):[^@\s/]+@", re.I)
_MIN_SECRET_LEN = 6


def secret_names(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    return sorted(n for n, v in env.items() if _SECRET_NAME.search(n) and len(v) >= _MIN_SECRET_LEN)


@lru_cache(maxsize=8)
def _pattern(values: frozenset[tuple[str, str]]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    if not values:
        return None, {}
    by_value = {value: name for name, value in values}
    ordered = sorted(by_value, key=len, reverse=True)
    return re.compile("|".join(re.escape(v) for v in ordered)), by_value


def redactor(environ: dict[str, str] | None = None) -> Callable[[str], str]:
    """A redact function for the secrets in the environment now: scan it once, reuse."""
    env = os.environ if environ is None else environ
    items = frozenset((n, env[n]) for n in secret_names(env))
    pattern, by_value = _pattern(items)

    def _redact(text: str) -> str:
        if pattern is not None:
            text = pattern.sub(lambda m: f"[redacted:{by_value[m.group(0)]}]", text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
        return text

    return _redact


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace secret values with [redacted:NAME] and URL passwords with ***."""
    return redactor(environ)(text)
