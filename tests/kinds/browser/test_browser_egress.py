"""Requests that never pass through the route handler still stay inside the grant.

Real Chromium, real servers on loopback that count every TCP connection and UDP datagram
they receive. The granted site is 127.0.0.1; the off-list hosts are `localhost` (a name
outside the grant, served on 127.0.0.1) and 127.0.0.2 (an address outside it). Each page
tries a way out that Playwright's route handler does not see: a shared worker's fetch and
WebSocket, WebRTC's STUN and TURN, WebTransport, preconnect and speculation hints, a beacon
sent as the page goes away. The off-list servers must count zero, the granted ones must
still be reached, and what the egress proxy refused must be the job's refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Error as PlaywrightError

import runtime.tools.browser.launch as browser_launch
from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.kinds.browser import live
from runtime.settings import Settings
from runtime.tools.browser import BrowserGrant, BrowserSession, close_shared_browser, shared_browser
from runtime.worker import Worker
from tests.standins.admin_site import page, serve

GRANT = BrowserGrant(domains=["127.0.0.1"])
OTHER_IP = "127.0.0.2"


@dataclass
class Counter:
    """A TCP server that counts connections and request lines (and answers 200)."""

    host: str
    port: int = 0
    connections: int = 0
    lines: list[str] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None

    async def start(self) -> Counter:
        self.server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
            self.lines.append(line.decode("latin-1").strip())
            writer.write(
                b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\n"
                b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1


@dataclass
class Udp:
    """A UDP socket that counts the datagrams it receives (a STUN server, a QUIC server)."""

    host: str
    port: int = 0
    protocol: _Datagrams = field(default_factory=_Datagrams)
    transport: asyncio.DatagramTransport | None = None

    async def start(self) -> Udp:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self.protocol, local_addr=(self.host, 0)
        )
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    @property
    def count(self) -> int:
        return self.protocol.count

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Sites:
    base: str
    seen: list[str]  # paths the granted site served
    by_name: Counter  # http://localhost:PORT, off-list by name
    by_ip: Counter  # http://127.0.0.2:PORT, off-list by address
    udp_by_ip: Udp  # 127.0.0.2, UDP
    udp_local: Udp  # 127.0.0.1, UDP, reached as `localhost`

    def off_list_total(self) -> dict[str, int]:
        return {
            "localhost tcp connections": self.by_name.connections,
            f"{OTHER_IP} tcp connections": self.by_ip.connections,
            f"{OTHER_IP} udp datagrams": self.udp_by_ip.count,
            "localhost udp datagrams": self.udp_local.count,
        }


def _script(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/javascript")


def _pages(sites: Sites) -> web.Application:
    off, ip = f"localhost:{sites.by_name.port}", f"{OTHER_IP}:{sites.by_ip.port}"
    tries = f"""
      const tries = {{
        name: fetch('http://{off}/fetch').then(() => 'reached', () => 'blocked'),
        ip: fetch('http://{ip}/fetch').then(() => 'reached', () => 'blocked'),
        socket: new Promise((ok) => {{
          const ws = new WebSocket('ws://{off}/socket');
          ws.onopen = () => ok('reached'); ws.onerror = () => ok('blocked');
        }}),
        font: (self.fonts ? new FontFace('x', 'url(http://{ip}/font.woff)').load()
               .then(() => 'reached', () => 'blocked') : Promise.resolve('none')),
        own: fetch('/seen/' + WHO).then((r) => r.text(), () => 'failed'),
      }};
      const report = async () => {{
        const out = {{}};
        for (const [k, p] of Object.entries(tries)) out[k] = await p;
        return out;
      }};
    """
    app = web.Application()

    async def seen(request: web.Request) -> web.Response:
        sites.seen.append(request.path)
        return web.Response(text="own")

    async def workers(request: web.Request) -> web.Response:
        return page(
            "<p id=shared>waiting</p><p id=dedicated>waiting</p><iframe src='/frame'></iframe>"
            "<script>"
            "const sw = new SharedWorker('/shared.js');"
            "sw.port.onmessage = (e) => shared.textContent = JSON.stringify(e.data);"
            "const w = new Worker('/dedicated.js');"
            "w.onmessage = (e) => dedicated.textContent = JSON.stringify(e.data);"
            "</script>"
        )

    async def frame(request: web.Request) -> web.Response:
        return page(
            "<script>const w = new Worker('/dedicated.js?in=frame');"
            "new SharedWorker('/shared.js?in=frame');</script>"
        )

    async def shared(request: web.Request) -> web.Response:
        who = "shared-" + request.query.get("in", "page")
        return _script(
            f"const WHO = {json.dumps(who)};{tries}"
            "onconnect = (e) => { const port = e.ports[0]; report().then((r) => "
            "port.postMessage(r)); };"
        )

    async def dedicated(request: web.Request) -> web.Response:
        who = "dedicated-" + request.query.get("in", "page")
        return _script(f"const WHO = {json.dumps(who)};{tries}report().then(postMessage);")

    async def rtc(request: web.Request) -> web.Response:
        servers = [
            {"urls": f"stun:{OTHER_IP}:{sites.udp_by_ip.port}"},
            {"urls": f"stun:localhost:{sites.udp_local.port}"},
            {"urls": f"turn:{OTHER_IP}:{sites.udp_by_ip.port}?transport=udp",
             "username": "u", "credential": "p"},
            {"urls": f"turn:{OTHER_IP}:{sites.by_ip.port}?transport=tcp",
             "username": "u", "credential": "p"},
        ]  # fmt: skip
        return page(
            "<p id=state>new</p><p id=candidates></p><script>"
            f"const pc = new RTCPeerConnection({{iceServers: {json.dumps(servers)}}});"
            "pc.createDataChannel('x');"
            "pc.onicecandidate = (e) => { if (e.candidate) candidates.textContent += "
            "e.candidate.candidate + '\\n'; };"
            "pc.onicegatheringstatechange = () => state.textContent = pc.iceGatheringState;"
            "pc.createOffer().then((o) => pc.setLocalDescription(o));"
            "</script>"
        )

    async def webtransport(request: web.Request) -> web.Response:
        urls = [
            f"https://{OTHER_IP}:{sites.udp_by_ip.port}/wt",
            f"https://localhost:{sites.udp_local.port}/wt",
        ]
        return page(
            "<p id=wt>trying</p><script>"
            f"const urls = {json.dumps(urls)};"
            "Promise.all(urls.map((u) => { try { const t = new WebTransport(u);"
            " return t.ready.then(() => 'reached', () => 'blocked'); }"
            " catch (e) { return 'refused: ' + e; } }))"
            ".then((r) => wt.textContent = r.join(','));"
            "</script>"
        )

    async def hints(request: web.Request) -> web.Response:
        rules = {"prefetch": [{"source": "list", "urls": [f"http://{off}/speculated"]}]}
        return page(
            f"<link rel=preconnect href='http://{off}'>"
            f"<link rel=preconnect href='http://{ip}'>"
            f"<link rel=dns-prefetch href='//{off}'>"
            f"<link rel=prefetch href='http://{off}/prefetched'>"
            f"<link rel=prerender href='http://{ip}/prerendered'>"
            f"<script type=speculationrules>{json.dumps(rules)}</script>"
            f"<a id=pinged href='/seen/after-ping' ping='http://{ip}/ping'>next</a>"
            "<script>"
            f"navigator.sendBeacon('http://{off}/beacon-now', 'x');"
            "addEventListener('pagehide', () => {"
            f" navigator.sendBeacon('http://{ip}/beacon-pagehide', 'x');"
            f" fetch('http://{off}/keepalive', {{method: 'POST', body: 'x', keepalive: true}});"
            "});"
            "</script>"
        )

    app.router.add_get("/seen/{tail:.*}", seen)
    app.router.add_get("/workers", workers)
    app.router.add_get("/frame", frame)
    app.router.add_get("/shared.js", shared)
    app.router.add_get("/dedicated.js", dedicated)
    app.router.add_get("/rtc", rtc)
    app.router.add_get("/webtransport", webtransport)
    app.router.add_get("/hints", hints)
    return app


@pytest.fixture
async def sites() -> AsyncIterator[Sites]:
    by_name = await Counter("127.0.0.1").start()
    by_ip = await Counter(OTHER_IP).start()
    udp_by_ip = await Udp(OTHER_IP).start()
    udp_local = await Udp("127.0.0.1").start()
    result = Sites("", [], by_name, by_ip, udp_by_ip, udp_local)
    runner, port = await serve(_pages(result))
    result.base = f"http://127.0.0.1:{port}"
    try:
        yield result
    finally:
        await runner.cleanup()
        for server in (by_name, by_ip, udp_by_ip, udp_local):
            server.stop()


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[BrowserSession]:
    started = await BrowserSession.start(GRANT, trace_dir=tmp_path / "trace")
    try:
        yield started
    finally:
        await started.stop()
        await close_shared_browser()


async def _text_settles(session: BrowserSession, selector: str, away_from: str) -> str:
    await session.page.wait_for_function(
        "([s, v]) => document.querySelector(s)?.textContent !== v",
        arg=[selector, away_from],
        timeout=15_000,
    )
    return await session.page.inner_text(selector)


def _egress_refusals(session: BrowserSession) -> list[str]:
    return [r["url"] for r in session.refused if r["kind"] == "egress"]


# --- workers -------------------------------------------------------------------------------


async def test_workers_reach_only_the_granted_host(sites: Sites, session: BrowserSession) -> None:
    await session.goto(f"{sites.base}/workers")
    shared = json.loads(await _text_settles(session, "#shared", "waiting"))
    dedicated = json.loads(await _text_settles(session, "#dedicated", "waiting"))
    await asyncio.sleep(1.0)  # the iframe's workers, and anything still on its way

    assert sites.off_list_total() == dict.fromkeys(sites.off_list_total(), 0), sites.by_name.lines
    for result in (shared, dedicated):
        assert {result[k] for k in ("name", "ip", "socket")} == {"blocked"}, result
        assert result["font"] in ("blocked", "none"), result
        assert result["own"] == "own", result  # the granted host still answers a worker
    assert {"/seen/shared-page", "/seen/dedicated-page", "/seen/dedicated-frame"} <= set(
        sites.seen
    ), sites.seen
    refused = _egress_refusals(session)
    assert f"http://localhost:{sites.by_name.port}/fetch" in refused, session.refused
    assert any(OTHER_IP in url for url in refused), session.refused


# --- WebRTC ----------------------------------------------------------------------------------


async def test_webrtc_stun_and_turn_reach_no_off_list_address(
    sites: Sites, session: BrowserSession
) -> None:
    await session.goto(f"{sites.base}/rtc")
    # Gathering ends when every server answered or timed out (which takes long here); the
    # packets to the servers go out at its start.
    with contextlib.suppress(PlaywrightError):
        await session.page.wait_for_function(
            "() => state.textContent === 'complete'", timeout=3_000
        )
    await asyncio.sleep(0.5)
    candidates = await session.page.inner_text("#candidates")

    assert sites.off_list_total() == dict.fromkeys(sites.off_list_total(), 0), candidates
    # No candidate carries an address learnt from a STUN or TURN server.
    assert not re.search(r"typ (srflx|relay)", candidates), candidates


# --- WebTransport ------------------------------------------------------------------------------


async def test_webtransport_sends_no_datagram_off_list(
    sites: Sites, session: BrowserSession
) -> None:
    await session.goto(f"{sites.base}/webtransport")
    outcome = await _text_settles(session, "#wt", "trying")
    await asyncio.sleep(1.0)

    assert "reached" not in outcome
    assert sites.off_list_total() == dict.fromkeys(sites.off_list_total(), 0), outcome


# --- hints and beacons --------------------------------------------------------------------------


async def test_hints_pings_and_beacons_reach_no_off_list_host(
    sites: Sites, session: BrowserSession
) -> None:
    await session.goto(f"{sites.base}/hints")
    await asyncio.sleep(1.0)
    await session.click("#pinged")  # a hyperlink ping, then the page goes away (pagehide)
    await session.goto(f"{sites.base}/seen/last")
    await asyncio.sleep(1.5)

    assert sites.off_list_total() == dict.fromkeys(sites.off_list_total(), 0), (
        sites.by_name.lines,
        sites.by_ip.lines,
    )
    assert "/seen/last" in sites.seen


# --- the layer below ---------------------------------------------------------------------------


def _browser_pids(port: int) -> list[int]:
    marker = f"--proxy-server=http://127.0.0.1:{port}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            # The namespace's forwarder carries the same arguments but is Python, outside.
            if marker in cmdline.split(b"\0") and "python" not in os.path.basename(
                os.path.realpath(f"/proc/{entry}/exe")
            ):
                pids.append(int(entry))
    return pids


async def test_chromium_runs_in_a_network_namespace_with_only_loopback() -> None:
    browser = await shared_browser()
    try:
        egress = browser_launch.egress_of(browser)
        assert egress is not None and egress.namespace in ("root", "user"), egress
        pids = _browser_pids(egress.proxy.port or 0)
        assert pids, "no Chromium process found"
        ours = os.stat("/proc/self/ns/net").st_ino
        our_users = os.stat("/proc/self/ns/user").st_ino
        for pid in pids:
            assert os.stat(f"/proc/{pid}/ns/net").st_ino != ours, pid
            if egress.namespace == "user":  # no capability over the host's network to go back
                assert os.stat(f"/proc/{pid}/ns/user").st_ino != our_users, pid
        # What the browser's namespace holds, seen from inside it.
        child = await asyncio.create_subprocess_exec(
            "nsenter", f"--net=/proc/{pids[0]}/ns/net", sys.executable, "-c",
            "import socket; print(sorted(n for _, n in socket.if_nameindex()))",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        seen = (await child.communicate())[0].decode().strip()
        assert seen == "['lo']", seen
    finally:
        await close_shared_browser()


async def test_a_context_without_a_door_reaches_nothing(sites: Sites) -> None:
    """A context opened on the shared browser without going through the session (no door of
    its own) is refused at the proxy, and the namespace holds below that."""
    browser = await shared_browser()
    try:
        context = await browser.new_context()
        try:
            page_ = await context.new_page()
            try:
                response = await page_.goto(f"{sites.base}/seen/doorless", timeout=10_000)
            except PlaywrightError:
                response = None
            assert response is None or response.status == 403
        finally:
            await context.close()
        assert "/seen/doorless" not in sites.seen
        egress = browser_launch.egress_of(browser)
        assert egress is not None
        assert any(
            r.target.endswith("/seen/doorless") and r.client == "" for r in egress.proxy.refusals
        ), egress.proxy.refusals
    finally:
        await close_shared_browser()


# --- the job's record -----------------------------------------------------------------------------


async def test_proxy_refusals_are_the_jobs_tool_refused_events(
    sites: Sites, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.kinds.browser.test_browser_jobs import write_policy

    monkeypatch.setenv("ADMIN_PASSWORD", "unused")
    settings = Settings.from_env(
        {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/acp.db",
            "ACP_POLICY_DIR": str(write_policy(tmp_path / "policy", sites.base)),
        }
    )
    engine = await Engine.open(settings)
    try:
        job = await engine.submit(
            "browse admin: start workers `goto /workers` `wait 2500` `expect #shared own`",
            engine.actor("cli", "alice"),
        )
        worker = Worker(engine)
        while await worker.run_once():
            pass
        job = await engine.get(job.id)
        assert job.state is JobState.succeeded, job.result
        refused = [e.data for e in await engine.events(job.id) if e.kind == "tool.refused"]
        egress = [r for r in refused if r.get("kind") == "egress"]
        assert any(f"localhost:{sites.by_name.port}" in r["url"] for r in egress), refused
        assert all("egress proxy" in r["reason"] for r in egress), egress
        assert sites.off_list_total() == dict.fromkeys(sites.off_list_total(), 0)
    finally:
        await live.close_all()
        await close_shared_browser()
        await engine.close()


async def test_no_namespace_means_no_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no namespace can be made the launch fails, saying why; nothing runs without it."""
    from playwright.async_api import async_playwright

    from runtime.errors import SandboxUnavailable
    from runtime.sandbox import netns

    def refusing_wrapper(program: str, *, directory: Path, **_: object) -> Path:
        path = directory / "chromium-in-netns"
        said = "acp netns: cannot create a network namespace: Operation not permitted"
        path.write_text(f"#!/bin/sh\necho '{said}' >&2\nexit {netns.EXIT_NO_NAMESPACE}\n")
        path.chmod(0o700)
        return path

    monkeypatch.setattr(netns, "wrapper_script", refusing_wrapper)
    playwright = await async_playwright().start()
    try:
        with pytest.raises(SandboxUnavailable, match="Operation not permitted"):
            await browser_launch.launch(playwright, "/usr/bin/chromium", ["--no-sandbox"])
    finally:
        await playwright.stop()
