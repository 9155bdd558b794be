"""The egress proxy: an asyncio HTTP forward proxy that lets each client reach only its grant.

It must never open a connection to a host its client's grant does not allow, never serve a
connection it cannot attribute to an admitted client, and never let a connection live without
a deadline or buffer more than a bounded amount of what passes through it.

Each admitted client gets a door of its own: a loopback address (127.x.y.z, the proxy's one
port) that it uses as its proxy. The door names the client, so clients need not answer an
authentication challenge (Chromium's shared workers cannot). A connection to a TCP door must
also carry the client's Basic Proxy-Authorization (Playwright's request client sends it), so
that no other local process can borrow a door. A sandbox in a network namespace reaches the
proxy through its forwarder over the Unix socket, naming the door the sandbox connected to;
the proxy takes that word only from a process outside the sandbox's network namespace (the
kernel tells it who connected). CONNECT tunnels and absolute-URI http:// requests are served;
a refusal is answered (403, 407, 400, ...; the reason in the body) and recorded.

A client may hold credentials by reference: a host and the name of a value the service
resolves only when a request to that host passes. A plain http:// request gets the value as
its Authorization; a CONNECT to such a host is not a tunnel: the proxy ends the client's TLS
with a leaf of the service CA, reads one request, adds the Authorization and sends it on over
TLS it verifies itself. The value never reaches the client, a record or a log, and is never
sent to an upstream whose certificate the proxy could not verify. Each allowed connection
ends in one Connection record (bytes, status, the credential's name).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import ipaddress
import itertools
import logging
import os
import secrets
import socket
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel

if TYPE_CHECKING:  # the CA (and cryptography) is loaded only by who terminates TLS
    from runtime.sandbox.tls_ca import ServiceCA

log = logging.getLogger(__name__)

HostRule = Callable[[str, int], "str | None"]  # (host, port) -> why it is refused, or None

FORWARDED_PREFIX = b"ACP-EGRESS-DOOR "  # the forwarder's first line: ACP-EGRESS-DOOR 127.x.y.z
_REALM = "acp-egress"
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "upgrade",
}
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Refusal(BaseModel):
    """One request the proxy did not let out."""

    client: str  # the admitted client's name; "" when the connection was nobody's
    method: str
    target: str  # host:port for CONNECT, the URL otherwise
    host: str
    port: int
    reason: str
    at: float


class Connection(BaseModel):
    """One allowed connection, recorded when it ends."""

    client: str
    method: str  # CONNECT for a tunnel; the request's own method when the proxy read it
    host: str
    port: int
    bytes_up: int  # what the proxy sent to the host (the request head it wrote included)
    bytes_down: int  # what the proxy passed back to the client (the 200 to CONNECT not)
    # The upstream's HTTP status when the proxy saw it (not inside a plain tunnel), or the
    # proxy's own 502/504 when it could not reach the host.
    status: int | None
    credential: str | None  # the NAME of the credential added, never its value
    duration_s: float
    at: float  # when the connection came in


@dataclass(frozen=True)
class Credential:
    """A value the proxy adds as `Authorization: Bearer <value>` for one host, by reference:
    name is what records call it; resolve() reads the value when a request needs it."""

    name: str
    resolve: Callable[[], str | None]

    @classmethod
    def from_env(cls, variable: str) -> Credential:
        """The credential held in the service's environment variable of that name."""
        return cls(variable, lambda: os.environ.get(variable))


class Admission(BaseModel):
    """What an admitted client uses as its proxy: its door and its Basic login."""

    host: str
    port: int
    username: str
    password: str

    @property
    def server(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass
class Limits:
    """Deadlines (seconds) and bounds of every connection the proxy holds."""

    head_timeout: float = 10.0  # the client must send its request head within this
    connect_timeout: float = 10.0  # name resolution and the upstream TCP connect
    idle_timeout: float = 60.0  # no byte either way for this long: both sides are closed
    lifetime: float = 1800.0  # no connection lives longer, busy or not
    max_head_bytes: int = 32_768  # request or response head
    chunk_bytes: int = 65_536  # read size, and the write buffer's high-water mark
    max_connections: int = 256


@dataclass
class _Client:
    name: str
    door: str
    username: str
    password: str
    rule: HostRule
    on_refusal: Callable[[Refusal], object] | None
    on_connection: Callable[[Connection], object] | None = None
    credentials: dict[str, Credential] = field(default_factory=dict)
    server: asyncio.AbstractServer | None = None


@dataclass
class _Flow:
    """What one allowed connection did so far; a Connection when it ends."""

    method: str
    host: str
    port: int
    credential: str | None
    bytes_up: int = 0
    bytes_down: int = 0
    status: int | None = None
    at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Reply(Exception):  # a control-flow signal inside the proxy, not an AcpError
    """Answer the client with this status and reason, then close."""

    def __init__(self, status: int, reason: str, *, extra: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


_STATUS_TEXT = {
    400: "Bad Request",
    403: "Forbidden",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class EgressProxy:
    """An HTTP forward proxy: a door per client on loopback, and optionally a Unix socket
    for namespace forwarders. The door on 127.0.0.1 is nobody's: it refuses everything."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        ca: ServiceCA | None = None,
        upstream_cafile: Path | None = None,
    ) -> None:
        """ca issues the leaves for hosts with a credential (without one, CONNECT to such a
        host is refused); upstream_cafile is what upstream certificates are checked against
        (default: $SSL_CERT_FILE when set, else the system's CAs)."""
        self.limits = limits or Limits()
        self.ca = ca
        self.upstream_cafile = upstream_cafile
        self.refusals: deque[Refusal] = deque(maxlen=1000)
        self.connections: deque[Connection] = deque(maxlen=1000)
        self._upstream_tls: ssl.SSLContext | None = None
        self.port: int | None = None
        self.unix_path: Path | None = None
        self._by_door: dict[str, _Client] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._doors = itertools.count(1)
        self._open = 0
        self._netns = _netns_of("self")

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, *, port: int = 0, unix_path: Path | None = None) -> EgressProxy:
        """Listen on 127.0.0.1:port (0: any free port; nobody's door, which fixes the port
        every door shares) and, when given, on a Unix socket for forwarders."""
        tcp = await asyncio.start_server(
            lambda r, w: self._accept(r, w, None, "tcp"),
            "127.0.0.1",
            port,
            limit=self.limits.max_head_bytes,
        )
        self._servers.append(tcp)
        self.port = tcp.sockets[0].getsockname()[1]
        if unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(unix_path)
            unix = await asyncio.start_unix_server(
                lambda r, w: self._accept(r, w, None, "unix"),
                str(unix_path),
                limit=self.limits.max_head_bytes,
            )
            os.chmod(unix_path, 0o600)
            self._servers.append(unix)
            self.unix_path = unix_path
        return self

    @property
    def server(self) -> str:
        """Nobody's door as a proxy setting (http://127.0.0.1:PORT): everything is refused."""
        assert self.port is not None, "proxy not started"
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stop listening and cut every connection still open."""
        servers = self._servers + [c.server for c in self._by_door.values() if c.server]
        self._by_door.clear()
        for server in servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers = []
        if self.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)

    # --- clients -------------------------------------------------------------------------

    async def admit(
        self,
        name: str,
        rule: HostRule,
        on_refusal: Callable[[Refusal], object] | None = None,
        on_connection: Callable[[Connection], object] | None = None,
        credentials: Mapping[str, Credential] | None = None,
    ) -> Admission:
        """Admit a client: a door of its own, its requests checked against rule, its
        refusals passed to on_refusal, each allowed connection to on_connection when it
        ends, and credentials (exact host name or address -> Credential, any port) added to
        its requests to those hosts."""
        assert self.port is not None, "proxy not started"
        by_host = {h.lower().rstrip("."): c for h, c in (credentials or {}).items()}
        client = _Client(name, "", f"c{secrets.token_hex(8)}", secrets.token_urlsafe(24), rule,
                         on_refusal, on_connection, by_host)  # fmt: skip
        for _ in range(64):
            door = _door_address(next(self._doors))
            if door in self._by_door:
                continue
            try:
                client.server = await asyncio.start_server(
                    lambda r, w: self._accept(r, w, client, "tcp"),
                    door,
                    self.port,
                    limit=self.limits.max_head_bytes,
                )
            except OSError:  # someone else listens there: the next address
                continue
            client.door = door
            self._by_door[door] = client
            return Admission(
                host=door, port=self.port, username=client.username, password=client.password
            )
        raise OSError("the egress proxy found no free loopback address for a door")

    def revoke(self, admission: Admission) -> None:
        """Close the client's door; connections already open run to their deadlines."""
        client = self._by_door.get(admission.host)
        if client is None or client.username != admission.username:
            return
        del self._by_door[admission.host]
        if client.server is not None:
            client.server.close()

    # --- serving -------------------------------------------------------------------------

    async def _accept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: _Client | None,
        via: str,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open += 1
        try:
            writer.transport.set_write_buffer_limits(high=self.limits.chunk_bytes)
            async with asyncio.timeout(self.limits.lifetime):
                await self._serve(reader, writer, client, via)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except Exception:  # one broken connection must not take the proxy down
            log.exception("egress proxy: connection failed")
        finally:
            self._open -= 1
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: _Client | None,
        via: str,
    ) -> None:
        flow: _Flow | None = None
        try:
            try:
                if self._open > self.limits.max_connections:
                    raise _Reply(503, "the egress proxy is at its connection limit")
                login_needed = client is not None
                if via == "unix":
                    client = await self._forwarded_for(reader, writer)
                    login_needed = False
                request = await self._read_head(reader)
                host, port, url = _destination(request)
                if client is None:
                    why = "this connection came to no client's door"
                    self._record(None, request, host, port, url, why)
                    raise _Reply(403, f"refused by the egress proxy: {why}")
                if login_needed:
                    self._check_login(client, request, host, port, url)
                why = client.rule(host, port)
                if why:
                    self._record(client, request, host, port, url, why)
                    raise _Reply(403, f"refused by the egress proxy: {why}")
                credential = client.credentials.get(host)
                secret = self._secret(client, request, host, port, url, credential)
                flow = _Flow(request.method, host, port, credential.name if credential else None)
                up_reader, up_writer = await self._connect(host, port)
                terminate = credential is not None and request.method == "CONNECT"
                if terminate:
                    try:
                        await self._upstream_handshake(up_writer, host, port)
                    except _Reply as reply:
                        up_writer.close()
                        if reply.status == 403:  # not verified: refused, not a connection
                            self._record(client, request, host, port, url, reply.reason)
                            flow = None
                        raise
            except _Reply as reply:
                if flow is not None:
                    flow.status = reply.status
                await _answer(writer, reply)
                return
            try:
                up_writer.transport.set_write_buffer_limits(high=self.limits.chunk_bytes)
                if request.method == "CONNECT":
                    writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    await writer.drain()
                    if terminate:
                        assert secret is not None
                        await self._terminate(reader, writer, up_reader, up_writer, flow, secret)
                    else:
                        await self._relay(reader, writer, up_reader, up_writer, flow)
                else:
                    bearer = f"Bearer {secret}" if secret is not None else None
                    head = _origin_head(request, host, port, authorization=bearer)
                    up_writer.write(head)
                    flow.bytes_up += len(head)
                    await up_writer.drain()
                    await self._relay(reader, writer, up_reader, up_writer, flow, http=True)
            finally:
                up_writer.close()
        finally:
            if flow is not None and client is not None:
                self._ended(client, flow)

    def _secret(
        self,
        client: _Client,
        request: _Request,
        host: str,
        port: int,
        url: str,
        credential: Credential | None,
    ) -> str | None:
        """The credential's value for this request (None: the host has none); a value that
        cannot be had is a refusal that names the credential, never a request without it."""
        if credential is None:
            return None
        why = None
        try:
            value = credential.resolve()
        except Exception:  # a broken resolver is the service's fault; say whose value
            log.exception("egress proxy: resolving credential %s failed", credential.name)
            value = None
        if not value:
            why = f"the credential {credential.name} for {host} is not set in the service"
        elif "\r" in value or "\n" in value:
            why = f"the credential {credential.name} for {host} holds a line break"
        elif request.method == "CONNECT" and self.ca is None:
            why = f"the egress proxy has no CA to add the credential {credential.name} over TLS"
        if why:
            self._record(client, request, host, port, url, why)
            raise _Reply(502, f"refused by the egress proxy: {why}")
        return value

    async def _upstream_handshake(
        self, up_writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        """TLS to the real host, its certificate and name checked, before any credential."""
        if self._upstream_tls is None:
            cafile = self.upstream_cafile or os.environ.get("SSL_CERT_FILE") or None
            context = ssl.create_default_context(cafile=cafile)
            context.set_alpn_protocols(["http/1.1"])
            self._upstream_tls = context
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                await up_writer.start_tls(self._upstream_tls, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            detail = e.verify_message or e.reason or "certificate not trusted"
            raise _Reply(
                403, f"the certificate of {host}:{port} cannot be verified ({detail})"
            ) from None
        except TimeoutError:
            raise _Reply(504, f"the TLS handshake with {host}:{port} timed out") from None
        except (ssl.SSLError, OSError) as e:
            raise _Reply(502, f"TLS with {host}:{port} failed: {e}") from None

    async def _terminate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        flow: _Flow,
        secret: str,
    ) -> None:
        """End the client's TLS as the host, read its one request, send it on with the
        credential over the verified upstream TLS, and relay the answer."""
        assert self.ca is not None
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                await writer.start_tls(self.ca.leaf_context(flow.host))
        except (TimeoutError, ssl.SSLError, OSError) as e:
            # Nothing to answer in: a client that does not trust the service CA ends here.
            log.info("egress proxy: TLS with the client for %s failed: %s", flow.host, e)
            return
        writer.transport.set_write_buffer_limits(high=self.limits.chunk_bytes)
        try:
            inner = await self._read_head(reader)
            path = _tunnelled_path(inner, flow.host)
        except _Reply as reply:
            flow.status = reply.status
            await _answer(writer, reply)
            return
        flow.method = inner.method
        head = _origin_head(
            inner, flow.host, flow.port, authorization=f"Bearer {secret}", path=path,
            default_port=443,
        )  # fmt: skip
        up_writer.write(head)
        flow.bytes_up += len(head)
        await up_writer.drain()
        await self._relay(reader, writer, up_reader, up_writer, flow, http=True)

    async def _forwarded_for(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> _Client | None:
        """The client whose door a forwarder's connection came to, if the word is good."""
        sock = writer.get_extra_info("socket")
        pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        # A process inside the sandbox's namespace (a compromised browser) could reach this
        # socket through the shared filesystem and name any door; only a process outside it,
        # in the proxy's own network namespace (the forwarder), is believed.
        if self._netns is None or _netns_of(str(pid)) != self._netns:
            raise _Reply(403, "only the namespace forwarder may use this socket")
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                line = await reader.readuntil(b"\r\n")
        except (TimeoutError, asyncio.LimitOverrunError):
            raise _Reply(400, "the forwarder did not name a door") from None
        if not line.startswith(FORWARDED_PREFIX):
            raise _Reply(400, "the forwarder did not name a door")
        return self._by_door.get(line[len(FORWARDED_PREFIX) :].strip().decode("latin-1"))

    async def _read_head(self, reader: asyncio.StreamReader) -> _Request:
        try:
            async with asyncio.timeout(self.limits.head_timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            raise _Reply(408, "the request head did not arrive in time") from None
        except asyncio.LimitOverrunError:
            raise _Reply(431, "the request head is too large") from None
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Reply(400, "not an HTTP/1.x proxy request")
        request = _Request(method=parts[0].upper(), target=parts[1], version=parts[2])
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _Reply(400, "malformed header line")
            request.headers.append((name, value.strip()))
        return request

    def _check_login(
        self, client: _Client, request: _Request, host: str, port: int, url: str
    ) -> None:
        value = request.header("proxy-authorization") or ""
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError):
                decoded = base64.b64decode(encoded, validate=True).decode()
                username, _, password = decoded.partition(":")
                if hmac.compare_digest(
                    client.username.encode(), username.encode()
                ) & hmac.compare_digest(client.password.encode(), password.encode()):
                    return
        if value:  # no login yet is the usual first step of a client; a wrong one is not
            self._record(client, request, host, port, url, "wrong proxy login for this door")
        raise _Reply(
            407,
            "the egress proxy needs the login this door was given",
            extra=f'Proxy-Authenticate: Basic realm="{_REALM}"\r\n',
        )

    async def _connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                up_reader, up_writer = await asyncio.open_connection(
                    host, port, limit=self.limits.max_head_bytes
                )
        except TimeoutError:
            raise _Reply(504, f"connecting to {host}:{port} timed out") from None
        except OSError as e:
            raise _Reply(502, f"cannot connect to {host}:{port}: {e.strerror or e}") from None
        peer = up_writer.get_extra_info("peername")
        if port == self.port and peer and ipaddress.ip_address(peer[0]) in _LOOPBACK:
            # A granted name that resolves to loopback must not lead back into the proxy.
            up_writer.close()
            raise _Reply(403, "refused by the egress proxy: it does not proxy to itself")
        return up_reader, up_writer

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        flow: _Flow,
        *,
        http: bool = False,
    ) -> None:
        """Copy both ways until either side ends or nothing moves for idle_timeout; with
        http, the upstream's answer is one HTTP response, whose status flow records."""
        loop = asyncio.get_running_loop()
        idle = self.limits.idle_timeout

        async with asyncio.timeout(idle) as deadline:

            def touched() -> None:
                deadline.reschedule(loop.time() + idle)

            async def copy(
                src: asyncio.StreamReader,
                dst: asyncio.StreamWriter,
                length: int | None = None,
                *,
                up: bool,
            ) -> None:
                left = length
                while left is None or left > 0:
                    size = self.limits.chunk_bytes if left is None else min(left, 65_536)
                    data = await src.read(size)
                    if not data:
                        break
                    touched()
                    dst.write(data)
                    if up:
                        flow.bytes_up += len(data)
                    else:
                        flow.bytes_down += len(data)
                    await dst.drain()
                    touched()
                    if left is not None:
                        left -= len(data)
                if length is None and dst.can_write_eof():
                    with contextlib.suppress(OSError):
                        dst.write_eof()

            async def respond() -> None:
                length = None
                if http:
                    # One request per connection: the response says so, and the upstream was
                    # asked to close, so a reused connection cannot reach a different host.
                    try:
                        head = await up_reader.readuntil(b"\r\n\r\n")
                    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                        return  # not an HTTP response we can pass on: the client sees a close
                    flow.status = _status_of(head)
                    closing = _closing_head(head)
                    writer.write(closing)
                    flow.bytes_down += len(closing)
                    await writer.drain()
                    touched()
                    # A server that keeps the connection open anyway is not waited for.
                    length = _body_length(head, flow.method)
                await copy(up_reader, writer, length, up=False)

            upload = asyncio.ensure_future(copy(reader, up_writer, up=True))
            try:
                await respond()
            finally:
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                    await upload

    def _ended(self, client: _Client, flow: _Flow) -> None:
        connection = Connection(
            client=client.name,
            method=flow.method,
            host=flow.host,
            port=flow.port,
            bytes_up=flow.bytes_up,
            bytes_down=flow.bytes_down,
            status=flow.status,
            credential=flow.credential,
            duration_s=time.monotonic() - flow.started,
            at=flow.at,
        )
        self.connections.append(connection)
        if client.on_connection is not None:
            try:
                client.on_connection(connection)
            except Exception:  # a broken listener must not break the proxy
                log.exception("egress proxy: connection listener failed")

    def _record(
        self, client: _Client | None, request: _Request, host: str, port: int, url: str, why: str
    ) -> None:
        refusal = Refusal(
            client=client.name if client else "",
            method=request.method,
            target=url,
            host=host,
            port=port,
            reason=why,
            at=time.time(),
        )
        self.refusals.append(refusal)
        log.info("egress refused %s %s for %r: %s", request.method, url, refusal.client, why)
        if client is not None and client.on_refusal is not None:
            try:
                client.on_refusal(refusal)
            except Exception:  # a broken listener must not turn a refusal into a pass
                log.exception("egress proxy: refusal listener failed")


def _door_address(index: int) -> str:
    """The index-th usable address of 127.0.0.0/8 from 127.0.0.2 (none ending in 0 or 255)."""
    index = index % (254 * 256 * 256)
    a, rest = divmod(index, 254 * 256)
    b, c = divmod(rest, 254)
    return f"127.{a}.{b}.{c + 1}" if (a, b, c) != (0, 0, 0) else "127.0.0.2"


def _netns_of(pid: str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _destination(request: _Request) -> tuple[str, int, str]:
    """(host, port, what to call it in a record) of a CONNECT or absolute-URI request."""
    if request.method == "CONNECT":
        host, port = _split_authority(request.target, default_port=None)
        return host, port, request.target
    parts = urlsplit(request.target)
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise _Reply(400, "a proxy request needs CONNECT host:port or an absolute http:// URL")
    try:
        port = parts.port or 80
    except ValueError:
        raise _Reply(400, "bad port in the request URL") from None
    return parts.hostname.lower().rstrip("."), port, request.target


def _split_authority(authority: str, *, default_port: int | None) -> tuple[str, int]:
    host, sep, port_text = authority.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = authority, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text:
        if default_port is None:
            raise _Reply(400, "CONNECT needs host:port")
        return host.lower(), default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536 or not host:
        raise _Reply(400, f"bad CONNECT target {authority[:100]!r}")
    return host.lower().rstrip("."), int(port_text)


def _origin_head(
    request: _Request,
    host: str,
    port: int,
    *,
    authorization: str | None = None,
    path: str | None = None,
    default_port: int = 80,
) -> bytes:
    """The request as the origin server sees it: origin-form target, our Host, no proxy
    headers, the credential's Authorization in place of the client's, and Connection: close."""
    if path is None:
        parts = urlsplit(request.target)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == default_port else f"{shown}:{port}"
    named = {token.strip().lower() for token in (request.header("connection") or "").split(",")}
    dropped = _HOP_BY_HOP | named | {"host"}
    if authorization is not None:
        dropped |= {"authorization"}
    lines = [f"{request.method} {path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{k}: {v}" for k, v in request.headers if k.lower() not in dropped]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _tunnelled_path(request: _Request, host: str) -> str:
    """The origin-form target of a request read inside terminated TLS; an absolute URL is
    taken only for the host the tunnel was opened to."""
    target = request.target
    if target.startswith("/") and not target.startswith("//"):
        return target
    parts = urlsplit(target)
    if parts.scheme.lower() == "https" and (parts.hostname or "").rstrip(".") == host:
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raise _Reply(400, f"a request inside the tunnel to {host} must be for {host}")


def _status_of(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) > 1 and parts[1].isdigit():
        return int(parts[1])
    return None


def _body_length(head: bytes, method: str) -> int | None:
    """The response body's length when its head says it (None: read until the close)."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
    if method == "HEAD" or status in ("204", "304") or status.startswith("1"):
        return 0
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "transfer-encoding":
            return None
        if name == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    return length


def _closing_head(head: bytes) -> bytes:
    lines = head.decode("latin-1").split("\r\n")
    kept = [
        line
        for line in lines[1:]
        if line and line.partition(":")[0].strip().lower() not in ("connection", "keep-alive")
    ]
    return ("\r\n".join([lines[0], *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1")


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


async def _answer(writer: asyncio.StreamWriter, reply: _Reply) -> None:
    body = (reply.reason + "\n").encode()
    head = (
        f"HTTP/1.1 {reply.status} {_STATUS_TEXT.get(reply.status, 'Error')}\r\n"
        f"{reply.extra}"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Acp-Egress-Refused: {_printable(reply.reason)[:200]}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1", "replace")
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(head + body)
        async with asyncio.timeout(5.0):
            await writer.drain()


__all__ = [
    "FORWARDED_PREFIX",
    "Admission",
    "Connection",
    "Credential",
    "EgressProxy",
    "HostRule",
    "Limits",
    "Refusal",
]
