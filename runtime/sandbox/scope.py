"""A network scope: the hosts a grant (or an environment's setup) lets a sandbox reach.

Entries are 'host' (ports 80 and 443), 'host:port', '*.example.com' (any subdomain, ports 80
and 443) or '*.example.com:port'. Names compare case-insensitively, without a trailing dot.
It must never allow a host:port no entry names, and its refusal must say what was granted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_DEFAULT_PORTS = (80, 443)


def _norm(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


@dataclass(frozen=True)
class _Entry:
    host: str  # exact name, or ".example.com" for a wildcard
    ports: tuple[int, ...]

    def matches_host(self, host: str) -> bool:
        if self.host.startswith("."):
            return host.endswith(self.host) and len(host) > len(self.host)
        return host == self.host


def _parse(entry: str) -> _Entry:
    text = entry.strip()
    if not text or "/" in text or " " in text:
        raise ValueError(f"network entry {entry!r} is not a host, host:port or *.domain")
    host, ports = text, _DEFAULT_PORTS
    if text.startswith("["):  # [v6] or [v6]:port
        end = text.find("]")
        rest = text[end + 1 :]
        host = text[: end + 1]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"network entry {entry!r} has a bad port")
            ports = (int(rest[1:]),)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"network entry {entry!r} has a bad port")
        ports = (int(port_text),)
    if not all(0 < p < 65536 for p in ports):
        raise ValueError(f"network entry {entry!r} has a bad port")
    host = _norm(host)
    if host.startswith("*."):
        host = host[1:]
    if not host or "*" in host:
        raise ValueError(f"network entry {entry!r}: a wildcard must be a leading '*.'")
    return _Entry(host, ports)


@dataclass(frozen=True)
class HostScope:
    """The parsed entries of one network list."""

    entries: tuple[str, ...] | list[str] = ()
    what: str = "the job's network scope"  # how a refusal names this list
    _parsed: tuple[_Entry, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parsed", tuple(_parse(e) for e in self.entries))

    def __bool__(self) -> bool:
        return bool(self._parsed)

    def allows(self, host: str, port: int) -> bool:
        host = _norm(host)
        return any(e.matches_host(host) and port in e.ports for e in self._parsed)

    def allows_host(self, host: str) -> bool:
        """True when some port of host is in scope (a credential names a host, not a port)."""
        host = _norm(host)
        return any(e.matches_host(host) for e in self._parsed)

    def refusal(self, host: str, port: int) -> str | None:
        """Why host:port is refused (None: it is allowed), in words a command's user reads."""
        if self.allows(host, port):
            return None
        granted = ", ".join(self.entries) if self.entries else "none"
        return f"{host}:{port} is not in {self.what} (granted: {granted})"

    def rule(self):  # -> runtime.sandbox.egress.HostRule
        return self.refusal
