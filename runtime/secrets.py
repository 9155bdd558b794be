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


# Credentials people paste into chat: well-known token shapes, redacted wherever untrusted text
# (a Slack thread, a page) is kept as context. Prefixes are the issuers' own.
_TOKEN_SHAPES = re.compile(
    r"\b(?:"
    r"xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|xapp-[A-Za-z0-9-]{10,}"  # Slack app-level
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|glpat-[A-Za-z0-9_\-]{20,}"  # GitLab
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}"  # OpenAI, Anthropic
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"  # a JWT
    r")"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{20,}=*"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
)


def redact_tokens(text: str) -> str:
    """`redact` plus any credential-shaped token (Slack, GitHub, GitLab, OpenAI, AWS, Google,
    JWTs, bearer headers, private keys), whatever its origin: for untrusted text kept as context."""
    return _TOKEN_SHAPES.sub("[redacted:token]", redact(text))
