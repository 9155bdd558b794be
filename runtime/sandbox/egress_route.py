"""A shell command's way out: one egress proxy per process, and a route (a door) per job.

The proxy listens on a Unix socket in a private directory that only the namespace forwarder
(outside the sandbox) connects to; a route is a client admitted with the job's scope and
credentials, revoked when the route closes. It must never give a sandbox the socket, the
CA's key or a credential's value (a credential is a host and a variable's NAME; the proxy
reads the value per request), and never leave a door open after its route is closed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from runtime.sandbox.egress import Connection, Credential, EgressProxy, HostRule, Refusal

MAX_KEPT_REFUSALS = 500


@dataclass
class EgressRoute:
    """What a sandboxed command needs to go out through its door (see bwrap_args(egress=)),
    and what the proxy refused it so far."""

    name: str
    proxy_socket: Path  # for the forwarder only; never bound into the sandbox
    door: str
    port: int
    ca_bundle: Path
    refusals: list[Refusal] = field(default_factory=list)  # the latest MAX_KEPT_REFUSALS
    refused: int = 0  # how many there were in all

    def refusals_since(self, mark: int) -> list[Refusal]:
        """The refusals after the first `mark` (take mark = route.refused before a command)."""
        newer = self.refused - mark
        return self.refusals[-newer:] if newer > 0 else []

    def _refusal(self, refusal: Refusal) -> None:
        self.refused += 1
        self.refusals.append(refusal)
        del self.refusals[:-MAX_KEPT_REFUSALS]


@dataclass
class _Shared:
    proxy: EgressProxy
    directory: Path
    ca_bundle: Path


_shared: dict[asyncio.AbstractEventLoop, _Shared] = {}
_starting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def shared_proxy(home: Path) -> EgressProxy:
    """This event loop's egress proxy, started on first use with the service CA kept under
    home/"egress-ca" (a later call's home is not looked at)."""
    return (await _shared_state(home)).proxy


async def close_shared_proxy() -> None:
    """Close this event loop's proxy (every route with it) and remove its directory."""
    loop = asyncio.get_running_loop()
    _starting.pop(loop, None)
    shared = _shared.pop(loop, None)
    if shared is not None:
        await shared.proxy.close()
        shutil.rmtree(shared.directory, ignore_errors=True)


@asynccontextmanager
async def open_route(
    home: Path,
    name: str,
    scope: HostRule,
    credentials: Mapping[str, str] | None = None,
    on_connection: Callable[[Connection], object] | None = None,
    on_refusal: Callable[[Refusal], object] | None = None,
) -> AsyncIterator[EgressRoute]:
    """Admit `name` to the shared proxy with scope (e.g. HostScope(...).refusal) and
    credentials (host -> the name of the service's environment variable holding its token);
    the door is revoked when the block ends."""
    shared = await _shared_state(home)
    proxy = shared.proxy
    assert proxy.port is not None and proxy.unix_path is not None
    route = EgressRoute(
        name=name, proxy_socket=proxy.unix_path, door="", port=proxy.port,
        ca_bundle=shared.ca_bundle,
    )  # fmt: skip

    def refused(refusal: Refusal) -> None:
        route._refusal(refusal)
        if on_refusal is not None:
            on_refusal(refusal)

    by_host = {
        host: Credential.from_env(variable) for host, variable in (credentials or {}).items()
    }
    admission = await proxy.admit(name, scope, refused, on_connection, by_host)
    route.door = admission.host
    try:
        yield route
    finally:
        proxy.revoke(admission)


async def _shared_state(home: Path) -> _Shared:
    loop = asyncio.get_running_loop()
    for old in [old for old in _shared if old.is_closed()]:  # a loop that ended unclosed
        shutil.rmtree(_shared.pop(old).directory, ignore_errors=True)
        _starting.pop(old, None)
    lock = _starting.setdefault(loop, asyncio.Lock())
    async with lock:
        if loop in _shared:
            return _shared[loop]
        from runtime.sandbox.tls_ca import ServiceCA  # cryptography only where TLS is ended

        ca = await asyncio.to_thread(ServiceCA.load_or_create, Path(home) / "egress-ca")
        # Short and private: a Unix socket's path must stay under 108 bytes, and nobody but
        # this service's user may even reach the socket (the proxy checks who connects too).
        directory = Path(tempfile.mkdtemp(prefix="acp-egress-", dir="/tmp"))
        try:
            os.chmod(directory, 0o700)
            bundle = await asyncio.to_thread(ca.bundle, directory / "ca-bundle.pem")
            proxy = await EgressProxy(ca=ca).start(unix_path=directory / "s")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        _shared[loop] = _Shared(proxy, directory, bundle)
        return _shared[loop]


__all__ = ["EgressRoute", "close_shared_proxy", "open_route", "shared_proxy"]
