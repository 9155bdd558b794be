"""Credentials by reference through the egress proxy, its connection records, and the service CA.

Real sockets on loopback: upstream servers (plain HTTP and HTTPS with a test CA's certificate)
that answer 200 only to the token, raw proxy clients and curl through a client's door, and a
ServiceCA made in a temporary directory. The token's value lives only in this process's
environment; the clients never hold it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runtime.sandbox.egress import Admission, Connection, Credential, EgressProxy, Refusal
from runtime.sandbox.tls_ca import ServiceCA

TOKEN_VARIABLE = "ACP_TEST_EGRESS_TOKEN"
TOKEN = "tok-9f2c51e7-never-in-a-sandbox"


# --- a test CA for the "real" hosts ------------------------------------------------------------


@dataclass
class TestCA:
    """A CA standing in for the public ones: it signs the upstream servers' certificates."""

    __test__ = False
    cert_path: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, directory: Path, name: str = "test upstream CA") -> TestCA:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name.replace(' ', '-')}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(path, key, cert)

    def server_context(self, directory: Path) -> ssl.SSLContext:
        """A server context for localhost and 127.0.0.1, signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        pem = directory / f"leaf-{cert.serial_number}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        return context


@dataclass
class Upstream:
    """An HTTP(S) server: 200 'authenticated' to the token, 401 otherwise; records heads."""

    __test__ = False
    port: int = 0
    heads: list[str] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.heads.append(head)
            ok = f"Authorization: Bearer {TOKEN}\r\n" in head
            body = b"authenticated\n" if ok else b"who are you?\n"
            status = b"200 OK" if ok else b"401 Unauthorized"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: keep-alive\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    @classmethod
    async def start(cls, context: ssl.SSLContext | None = None) -> Upstream:
        up = cls()
        up.server = await asyncio.start_server(up._handle, "127.0.0.1", 0, ssl=context)
        up.port = up.server.sockets[0].getsockname()[1]
        return up

    def close(self) -> None:
        assert self.server is not None
        self.server.close()


# --- fixtures ------------------------------------------------------------------------------------


@dataclass
class World:
    proxy: EgressProxy
    service_ca: ServiceCA
    bundle: Path
    upstream_ca: TestCA
    https: Upstream  # certificate from upstream_ca, which the proxy trusts
    plain: Upstream
    refused: list[Refusal]
    connections: list[Connection]
    door: Admission | None = None
    recorded: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, connection: Connection) -> None:
        self.connections.append(connection)
        self.recorded.set()


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    upstream_ca = TestCA.make(tmp_path / "upstream-ca")
    service_ca = ServiceCA.load_or_create(tmp_path / "service-ca")
    bundle = service_ca.bundle(tmp_path / "bundle.pem")
    proxy = await EgressProxy(ca=service_ca, upstream_cafile=upstream_ca.cert_path).start()
    https = await Upstream.start(upstream_ca.server_context(tmp_path))
    plain = await Upstream.start()
    w = World(proxy, service_ca, bundle, upstream_ca, https, plain, [], [])
    w.door = await proxy.admit(
        "job 7",
        lambda host, port: None if host in ("127.0.0.1", "localhost") else f"{host} not granted",
        w.refused.append,
        w.record,
        {"127.0.0.1": Credential.from_env(TOKEN_VARIABLE)},
    )
    yield w
    await proxy.close()
    https.close()
    plain.close()


def _login(door: Admission) -> str:
    token = base64.b64encode(f"{door.username}:{door.password}".encode()).decode()
    return f"Proxy-Authorization: Basic {token}\r\n"


async def _until_recorded(w: World, count: int) -> None:
    async with asyncio.timeout(5):
        while len(w.connections) < count:
            await w.recorded.wait()
            w.recorded.clear()


async def _through_tls(
    w: World, host: str, port: int, trust: Path, request: bytes, *, until: bytes | None = None
) -> tuple[bytes, bytes]:
    """CONNECT through the door, TLS trusting only `trust`, send request: (CONNECT answer,
    response up to the close, or up to `until`)."""
    assert w.door is not None
    reader, writer = await asyncio.open_connection(w.door.host, w.door.port)
    try:
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\n{_login(w.door)}\r\n".encode())
        answer = await reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer + await reader.read(), b""
        await writer.start_tls(ssl.create_default_context(cafile=str(trust)), server_hostname=host)
        writer.write(request)
        async with asyncio.timeout(5):
            return answer, await (reader.readuntil(until) if until else reader.read())
    finally:
        writer.close()


# --- plain http ----------------------------------------------------------------------------------


async def test_a_plain_http_request_gets_the_credential_in_place_of_the_clients(
    world: World,
) -> None:
    assert world.door is not None
    reader, writer = await asyncio.open_connection(world.door.host, world.door.port)
    writer.write(
        f"GET http://127.0.0.1:{world.plain.port}/api HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer client-guess\r\n{_login(world.door)}\r\n".encode()
    )
    async with asyncio.timeout(5):
        response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK"), response
    assert response.endswith(b"authenticated\n")
    head = world.plain.heads[0]
    assert head.count("Authorization:") == 1 and "client-guess" not in head
    await _until_recorded(world, 1)
    [seen] = world.connections
    assert (seen.client, seen.method, seen.host, seen.port) == (
        "job 7", "GET", "127.0.0.1", world.plain.port,
    )  # fmt: skip
    assert seen.status == 200 and seen.credential == TOKEN_VARIABLE
    assert seen.bytes_up == len(head)  # the head as sent on, with no body
    assert seen.bytes_down == len(response)
    assert TOKEN not in seen.model_dump_json()
    assert list(world.proxy.connections) == [seen]


# --- TLS ended for a credential's host -----------------------------------------------------------


async def test_https_to_a_credential_host_is_authenticated_by_the_proxy(world: World) -> None:
    request = f"GET /who HTTP/1.1\r\nHost: 127.0.0.1:{world.https.port}\r\n\r\n".encode()
    answer, response = await _through_tls(
        world, "127.0.0.1", world.https.port, world.bundle, request
    )
    assert answer == b"HTTP/1.1 200 Connection Established\r\n\r\n"
    assert response.startswith(b"HTTP/1.1 200 OK"), response
    assert b"Connection: close" in response
    assert response.endswith(b"authenticated\n")
    assert world.https.heads[0].startswith("GET /who HTTP/1.1\r\n")
    await _until_recorded(world, 1)
    [seen] = world.connections
    assert (seen.method, seen.status, seen.credential) == ("GET", 200, TOKEN_VARIABLE)
    assert seen.bytes_up > len(request) and seen.bytes_down == len(response)
    assert world.refused == []


async def test_curl_trusting_only_the_bundle_is_authenticated_without_the_token(
    world: World,
) -> None:
    assert world.door is not None
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"}
    assert TOKEN not in "".join(f"{k}={v}" for k, v in env.items())
    proxy_user = f"{world.door.username}:{world.door.password}"
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", "--proxy", world.door.server, "--proxy-user",
        proxy_user, "--cacert", str(world.bundle), f"https://127.0.0.1:{world.https.port}/c",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    out, err = await curl.communicate()
    assert curl.returncode == 0, err.decode()
    assert out == b"authenticated\n"
    assert world.https.heads[0].startswith("GET /c HTTP/1.1\r\n")


async def test_a_host_without_a_credential_keeps_a_plain_tunnel(world: World) -> None:
    """localhost has no credential: the client's TLS reaches the upstream itself (it trusts
    the upstream's CA, not ours), and the upstream sees no token."""
    request = f"GET /t HTTP/1.1\r\nHost: localhost:{world.https.port}\r\n\r\n".encode()
    _, response = await _through_tls(
        world, "localhost", world.https.port, world.upstream_ca.cert_path, request,
        until=b"who are you?\n",
    )  # fmt: skip
    assert response.startswith(b"HTTP/1.1 401 "), response
    assert "Authorization" not in world.https.heads[0]
    await _until_recorded(world, 1)
    [seen] = world.connections
    assert (seen.method, seen.status, seen.credential) == ("CONNECT", None, None)
    assert seen.bytes_up > len(request) and seen.bytes_down > len(response)  # TLS around them


async def test_an_upstream_whose_certificate_cannot_be_verified_is_refused(
    world: World, tmp_path: Path
) -> None:
    stranger = TestCA.make(tmp_path / "stranger", "stranger CA")
    unverified = await Upstream.start(stranger.server_context(tmp_path))
    try:
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        answer, _ = await _through_tls(world, "127.0.0.1", unverified.port, world.bundle, request)
    finally:
        unverified.close()
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert b"cannot be verified" in answer
    assert unverified.heads == []  # nothing, least of all the token, was sent
    assert [r.host for r in world.refused] == ["127.0.0.1"]
    assert "cannot be verified" in world.refused[0].reason
    assert world.connections == []


async def test_an_unset_credential_is_refused_naming_the_variable(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_VARIABLE)
    answer, _ = await _through_tls(world, "127.0.0.1", world.https.port, world.bundle, b"")
    assert answer.startswith(b"HTTP/1.1 502 "), answer
    assert f"the credential {TOKEN_VARIABLE} for 127.0.0.1 is not set".encode() in answer
    assert world.https.heads == []
    assert [r.reason for r in world.refused] == [
        f"the credential {TOKEN_VARIABLE} for 127.0.0.1 is not set in the service"
    ]


async def test_a_tunnelled_request_for_another_host_is_refused(world: World) -> None:
    request = b"GET https://elsewhere.example/x HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n"
    _, response = await _through_tls(world, "127.0.0.1", world.https.port, world.bundle, request)
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert world.https.heads == []


# --- the service CA ------------------------------------------------------------------------------


def test_the_service_ca_keeps_its_key_private_and_out_of_the_bundle(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca = ServiceCA.load_or_create(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
    bundle = ca.bundle(tmp_path / "bundle.pem").read_bytes()
    assert b"PRIVATE KEY" not in bundle
    assert bundle.endswith(ca.certificate_pem)
    constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.value.path_length == 0
    again = ServiceCA.load_or_create(directory)
    assert again.certificate == ca.certificate
    assert ca.leaf_context("api.example") is ca.leaf_context("API.example.")  # cached


def test_two_processes_that_race_end_with_one_ca(tmp_path: Path) -> None:
    directory = tmp_path / "raced"
    script = (
        "import sys; from pathlib import Path; from runtime.sandbox.tls_ca import ServiceCA\n"
        "print(ServiceCA.load_or_create(Path(sys.argv[1])).certificate.serial_number)"
    )
    root = Path(__file__).resolve().parents[2]
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(directory)],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    serials = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert len(serials) == 1 and serials != {""}
    assert str(ServiceCA.load_or_create(directory).certificate.serial_number) in serials
