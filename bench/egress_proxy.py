"""Benchmark: an HTTPS request through the egress proxy's CONNECT tunnel against the same
request made directly.

Each request is a new TCP connection, a TLS handshake and one GET to a local HTTPS server (no
credential for its host, so the proxy is a plain byte tunnel). The server and the proxy run
in processes of their own so the client's event loop times only the client. A script, not a
test; it uses only 127.0.0.1 and a temporary directory it removes.

    python bench/egress_proxy.py [--rounds 5] [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import multiprocessing
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.sandbox.egress import Admission, EgressProxy
from runtime.sandbox.tls_ca import ServiceCA

BODY = b"ok\n"


def serve_https(ca_directory: Path, report: Connection) -> None:
    """The upstream: one small response per connection, over TLS for 127.0.0.1."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(BODY), BODY)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        context = ServiceCA.load_or_create(ca_directory).leaf_context("127.0.0.1")
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=512)
        report.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def serve_proxy(report: Connection) -> None:
    """The egress proxy with one client whose grant allows everything."""

    async def main() -> None:
        proxy = await EgressProxy().start()
        admission = await proxy.admit("bench", lambda host, port: None)
        report.send(admission.model_dump())
        await asyncio.Event().wait()

    asyncio.run(main())


async def read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert await reader.readexactly(len(BODY)) == BODY


async def direct(port: int, context: ssl.SSLContext) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await read_response(reader)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


async def through_proxy(port: int, context: ssl.SSLContext, door: Admission, login: str) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(door.host, door.port)
    writer.write(
        f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Proxy-Authorization: Basic {login}\r\n\r\n".encode()
    )
    answer = await reader.readuntil(b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    await writer.start_tls(context, server_hostname="127.0.0.1")
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await read_response(reader)
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def run(rounds: int, requests: int, port: int, ca_file: Path, door: Admission) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    login = base64.b64encode(f"{door.username}:{door.password}".encode()).decode()
    for _ in range(10):  # warm both paths: imports, first handshakes, the leaf
        await direct(port, context)
        await through_proxy(port, context, door, login)

    def ms(x: float) -> str:
        return f"{x * 1000:7.2f} ms"

    summary: dict[str, list[tuple[float, float]]] = {"direct": [], "proxy": []}
    for i in range(rounds):
        # Alternate who goes first so neither always inherits the other's warm state.
        order = ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct")
        for who in order:
            samples = []
            for _ in range(requests):
                if who == "direct":
                    samples.append(await direct(port, context))
                else:
                    samples.append(await through_proxy(port, context, door, login))
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            summary[who].append((p50, p99))
            print(f"round {i + 1} {who:>6}: p50 {ms(p50)}  p99 {ms(p99)}")

    print(f"rounds: {rounds} x {requests} sequential requests (new TCP + TLS each)")
    medians = {}
    for who, rows in summary.items():
        p50 = statistics.median(r[0] for r in rows)
        p99 = statistics.median(r[1] for r in rows)
        medians[who] = (p50, p99)
        label = "direct" if who == "direct" else "through the proxy (CONNECT tunnel)"
        print(f"{label:<36} median p50 {ms(p50)}  median p99 {ms(p99)}")
    added = medians["proxy"][0] - medians["direct"][0]
    added99 = medians["proxy"][1] - medians["direct"][1]
    print(f"added by the proxy: p50 {ms(added)}  p99 {ms(added99)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="acp-bench-egress-"))
    processes: list[multiprocessing.Process] = []
    try:
        ca = ServiceCA.load_or_create(directory / "ca")
        ours, theirs = multiprocessing.Pipe()
        processes.append(multiprocessing.Process(target=serve_https, args=(ca.directory, theirs)))
        processes.append(multiprocessing.Process(target=serve_proxy, args=(theirs,)))
        processes[0].start()
        port = ours.recv()
        processes[1].start()
        door = Admission(**ours.recv())
        asyncio.run(run(args.rounds, args.requests, port, ca.directory / "ca.pem", door))
    finally:
        for process in processes:
            process.terminate()
            process.join(5)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
