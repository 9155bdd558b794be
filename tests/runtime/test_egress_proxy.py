"""The egress proxy on its own, and the network namespace whose only way out it is.

Real sockets on loopback: an upstream server that counts what reaches it, raw proxy clients
that speak CONNECT and absolute-URI requests, clients that stall, and a program run by
runtime/sandbox/netns.py in a namespace of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runtime.sandbox import netns
from runtime.sandbox.egress import FORWARDED_PREFIX, Admission, EgressProxy, Limits, Refusal


@dataclass
class Upstream:
    """An HTTP server that records each request head it receives and answers 'hello'."""

    port: int = 0
    connections: int = 0
    heads: list[str] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head.decode("latin-1"))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
            )
            await writer.drain()
            await reader.read()  # until the other side closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    up.server = await asyncio.start_server(up._handle, "127.0.0.1", 0)
    up.port = up.server.sockets[0].getsockname()[1]
    yield up
    up.server.close()


@dataclass
class Setup:
    proxy: EgressProxy
    door: Admission
    refused: list[Refusal]


async def _setup(tmp_path: Path, limits: Limits | None = None) -> Setup:
    proxy = await EgressProxy(limits).start(unix_path=tmp_path / "egress.sock")
    refused: list[Refusal] = []

    def rule(host: str, port: int) -> str | None:
        return None if host == "127.0.0.1" else f"host {host!r} is not granted"

    door = await proxy.admit("job 1", rule, refused.append)
    return Setup(proxy, door, refused)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    s = await _setup(tmp_path)
    yield s
    await s.proxy.close()


def _login(door: Admission) -> str:
    token = base64.b64encode(f"{door.username}:{door.password}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n"


async def _exchange(host: str, port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send data, then read until the proxy closes the connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    finally:
        writer.close()


# --- allowed ---------------------------------------------------------------------------------


async def test_connect_to_a_granted_host_is_a_tunnel(setup: Setup, upstream: Upstream) -> None:
    reader, writer = await asyncio.open_connection(setup.door.host, setup.door.port)
    writer.write(
        f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\nHost: 127.0.0.1:{upstream.port}\r\n"
        f"{_login(setup.door)}\r\n".encode()
    )
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection Established\r\n\r\n"
    writer.write(b"GET /through HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await reader.readuntil(b"hello")
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert upstream.heads[0].startswith("GET /through HTTP/1.1")
    assert setup.refused == []


async def test_absolute_uri_request_is_sent_in_origin_form_without_the_login(
    setup: Setup, upstream: Upstream
) -> None:
    response = await _exchange(
        setup.door.host,
        setup.door.port,
        f"GET http://127.0.0.1:{upstream.port}/page?q=1 HTTP/1.1\r\nHost: elsewhere\r\n"
        f"{_login(setup.door)}Proxy-Connection: keep-alive\r\n\r\n".encode(),
    )
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert response.endswith(b"hello")
    assert b"Connection: close" in response  # one request per connection to the proxy
    head = upstream.heads[0]
    assert head.startswith("GET /page?q=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{upstream.port}\r\n" in head  # the host that was checked
    assert "Proxy-" not in head and "elsewhere" not in head


# --- refused ---------------------------------------------------------------------------------


async def test_a_host_outside_the_grant_gets_403_with_the_reason(
    setup: Setup, upstream: Upstream
) -> None:
    for request in (
        f"CONNECT localhost:{upstream.port} HTTP/1.1\r\n",
        f"GET http://localhost:{upstream.port}/x HTTP/1.1\r\n",
    ):
        response = await _exchange(
            setup.door.host, setup.door.port, f"{request}{_login(setup.door)}\r\n".encode()
        )
        assert response.startswith(b"HTTP/1.1 403 Forbidden\r\n"), response
        assert b"host 'localhost' is not granted" in response
    assert upstream.connections == 0
    assert [(r.client, r.method, r.host, r.port) for r in setup.refused] == [
        ("job 1", "CONNECT", "localhost", upstream.port),
        ("job 1", "GET", "localhost", upstream.port),
    ]
    assert list(setup.proxy.refusals) == setup.refused


async def test_a_door_needs_its_own_login(setup: Setup, upstream: Upstream, tmp_path: Path) -> None:
    connect = f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\n"
    challenged = await _exchange(setup.door.host, setup.door.port, f"{connect}\r\n".encode())
    assert challenged.startswith(b"HTTP/1.1 407 ")
    assert b'Proxy-Authenticate: Basic realm="acp-egress"' in challenged
    assert setup.refused == []  # a first request without a login is a challenge, not a refusal

    other = await setup.proxy.admit("job 2", lambda host, port: None)
    borrowed = await _exchange(
        setup.door.host, setup.door.port, f"{connect}{_login(other)}\r\n".encode()
    )
    assert borrowed.startswith(b"HTTP/1.1 407 ")
    assert [r.reason for r in setup.refused] == ["wrong proxy login for this door"]
    assert upstream.connections == 0


async def test_nobodys_door_refuses_everything(setup: Setup, upstream: Upstream) -> None:
    response = await _exchange(
        "127.0.0.1",
        setup.proxy.port or 0,
        f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\n{_login(setup.door)}\r\n".encode(),
    )
    assert response.startswith(b"HTTP/1.1 403 ")
    assert b"no client's door" in response
    assert upstream.connections == 0


async def test_the_proxy_does_not_tunnel_into_itself(setup: Setup) -> None:
    response = await _exchange(
        setup.door.host,
        setup.door.port,
        f"CONNECT 127.0.0.1:{setup.proxy.port} HTTP/1.1\r\n{_login(setup.door)}\r\n".encode(),
    )
    assert response.startswith(b"HTTP/1.1 403 ")
    assert b"does not proxy to itself" in response


async def test_a_revoked_door_is_closed(setup: Setup) -> None:
    setup.proxy.revoke(setup.door)
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(setup.door.host, setup.door.port)


async def test_an_oversized_head_is_refused(setup: Setup) -> None:
    huge = "X-Pad: " + "a" * 40_000 + "\r\n"
    response = await _exchange(
        setup.door.host,
        setup.door.port,
        f"CONNECT 127.0.0.1:1 HTTP/1.1\r\n{huge}\r\n".encode(),
    )
    assert response.startswith(b"HTTP/1.1 431 ")


# --- deadlines ---------------------------------------------------------------------------------


async def test_a_client_that_stalls_is_cut_at_the_head_deadline(
    tmp_path: Path, upstream: Upstream
) -> None:
    s = await _setup(tmp_path, Limits(head_timeout=0.3))
    try:
        started = time.monotonic()
        response = await _exchange(s.door.host, s.door.port, b"CONNECT 127.0.0.1:", timeout=5)
        assert response.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 2
        await asyncio.sleep(0.05)
        assert s.proxy._open == 0  # nothing left holding the proxy
    finally:
        await s.proxy.close()


async def test_an_idle_tunnel_is_closed(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts, never speaks

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = await _setup(tmp_path, Limits(idle_timeout=0.3))
    try:
        reader, writer = await asyncio.open_connection(s.door.host, s.door.port)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n{_login(s.door)}\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        started = time.monotonic()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # the proxy closed the silent tunnel
        assert time.monotonic() - started < 2
        writer.close()
    finally:
        await s.proxy.close()
        server.close()


# --- the namespace's forwarder -------------------------------------------------------------------


async def test_a_forwarders_word_counts_only_from_outside_the_namespace(
    setup: Setup, upstream: Upstream
) -> None:
    connect = f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\n\r\n".encode()
    word = FORWARDED_PREFIX + setup.door.host.encode() + b"\r\n"
    reader, writer = await asyncio.open_unix_connection(str(setup.proxy.unix_path))
    writer.write(word + connect)
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection Established\r\n\r\n"
    writer.close()

    # The same words from a process inside a network namespace (as a browser would be).
    script = (
        "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "try: s.sendall(bytes.fromhex(sys.argv[2]))\nexcept BrokenPipeError: pass\n"
        "print(s.recv(200).decode())"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-S", netns.__file__, "--probe", stdout=asyncio.subprocess.PIPE
    )
    if (await child.communicate())[0].split()[:1] not in ([b"root"], [b"user"]):
        pytest.skip("no network namespace can be made here")
    inside = await asyncio.create_subprocess_exec(
        "unshare", "--net", "--map-current-user", sys.executable, "-c", script,
        str(setup.proxy.unix_path), (word + connect).hex(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await inside.communicate()
    assert out.startswith(b"HTTP/1.1 403 "), (out, err)
    assert b"only the namespace forwarder" in out
    assert upstream.heads == []


async def test_the_only_way_out_of_the_namespace_is_the_proxy(
    setup: Setup, upstream: Upstream, tmp_path: Path
) -> None:
    """A program run by netns.py reaches a granted host through its door, and nothing else:
    not the host directly, not an off-list host through the door."""
    program = f"""
import json, socket, sys
def ask(addr, data):
    try:
        s = socket.create_connection(addr, timeout=5)
    except OSError as e:
        return "no route: " + type(e).__name__
    s.sendall(data)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out.decode("latin-1").split("\\r\\n")[0]
door = ({setup.door.host!r}, {setup.door.port})
print(json.dumps({{
    "interfaces": sorted(n for _, n in socket.if_nameindex()),
    "direct": ask(("127.0.0.1", {upstream.port}), b"GET / HTTP/1.1\\r\\n\\r\\n"),
    "granted": ask(door, b"GET http://127.0.0.1:{upstream.port}/in HTTP/1.1\\r\\n\\r\\n"),
    "off_list": ask(door, b"GET http://localhost:{upstream.port}/in HTTP/1.1\\r\\n\\r\\n"),
}}))
"""
    wrapper = netns.wrapper_script(
        sys.executable,
        port=setup.proxy.port or 0,
        proxy_socket=setup.proxy.unix_path or Path(),
        directory=tmp_path,
    )
    child = await asyncio.create_subprocess_exec(
        str(wrapper), "-c", program, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        out, err = await child.communicate()
    if child.returncode == netns.EXIT_NO_NAMESPACE:
        pytest.skip(err.decode())
    assert child.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen["interfaces"] == ["lo"]
    assert seen["direct"].startswith("no route"), seen  # 127.0.0.1 inside is not the host's
    assert seen["granted"] == "HTTP/1.1 200 OK", seen
    assert seen["off_list"] == "HTTP/1.1 403 Forbidden", seen
    assert [h.split("\r\n")[0] for h in upstream.heads] == ["GET /in HTTP/1.1"]
    assert [(r.client, r.host) for r in setup.refused] == [("job 1", "localhost")]
