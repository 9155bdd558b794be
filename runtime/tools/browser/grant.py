"""What a job's browser may reach, and the one rule every request, redirect hop, socket and
landing page is checked by: http(s) to a host of the grant, or about:blank."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel


class BrowserGrant(BaseModel):
    """What a job's browser may reach: host names (exact or "*.example.com"; ports ignored)."""

    domains: list[str]
    allow_downloads: bool = False


def host_allowed(grant: BrowserGrant, host: str) -> bool:
    host = host.lower().rstrip(".")
    for pattern in grant.domains:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def refusal_reason(grant: BrowserGrant, url: str) -> str | None:
    """Why a request to url is refused, or None when the grant allows it."""
    if url == "about:blank":
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return f"scheme {scheme or '(none)'}: is not allowed"
    host = parts.hostname or ""
    if not host_allowed(grant, host):
        return f"host {host!r} is not in the job's browser grant"
    return None
