"""The browser tool: one Chromium context per job, governed at the network layer.

It must never let a request reach a host outside the grant (navigations, sub-resources,
each redirect hop, popups, iframes), never navigate to data:, blob:, javascript:, file:,
chrome: or about: pages (about:blank aside), never save a download unless granted, never
click a mutating control or let a non-GET request out without an approved PendingAction,
and never let a secret filled with fill_secret reach the trace: recording stops before the
value enters the page and starts again once no page holds it (Playwright writes what it
records to disk as it goes, input values and request bodies included).

Every Playwright call has a deadline, and a page whose navigation is held for approval (it
then answers no script at all) ends the step as a pause, never as a hang.

Every step leaves a screenshot; stop() leaves trace.zip (open with `playwright show-trace`).
The trace's live files are kept in the job's own directory (mode 0700), removed at stop().
Chromium is the system one (ACP_CHROMIUM, default /usr/bin/chromium): `playwright install`
is not assumed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Awaitable
from functools import cache
from html.entities import html5 as html5_entities
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urljoin, urlsplit

from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Download,
    Error,
    Page,
    Playwright,
    Route,
    WebSocketRoute,
    async_playwright,
    expect,
)
from pydantic import BaseModel, Field

from runtime.errors import AcpError, SandboxViolation
from runtime.tools import browser_launch

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    # Pages here are served through route.fulfill, so Chromium cannot tell their address
    # space and its Local Network Access checks block a granted local WebSocket. The grant
    # (every request and socket checked against the site's hosts) is the stricter rule.
    "--disable-features=LocalNetworkAccessChecks,AutofillServerCommunication",
    # WebRTC may use UDP only through a proxy, and an HTTP proxy carries none: no STUN or
    # TURN packet leaves by itself (the network namespace would drop it anyway).
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
]

MUTATING_WORDS = re.compile(
    r"\b(submit|delete|remove|purchase|buy|pay|save|confirm|disable|update)\b", re.IGNORECASE
)
_SAFE_METHODS = {"GET", "HEAD"}
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 20
_REDACTED = b"[redacted]"
log = logging.getLogger("acp.browser")
T = TypeVar("T")


class BrowserGrant(BaseModel):
    """What a job's browser may reach: host names (exact or "*.example.com"; ports ignored)."""

    domains: list[str]
    allow_downloads: bool = False


class StepResult(BaseModel):
    index: int
    action: str
    target: str | None
    url: str
    screenshot_sha256: str | None
    ok: bool
    detail: str = ""


class HeldRequest(BaseModel):
    """A non-GET request the page is about to send, held at the network layer."""

    method: str
    url: str
    body_sha256: str
    body_bytes: int
    resource_type: str


class PendingAction(BaseModel):
    """An action held back for approval, bound to the page as it was.

    kind "click": a control whose role, text or form means a mutation, not yet clicked.
    kind "request": non-GET requests the page already tried to send, held unsent.
    """

    kind: Literal["click", "request"] = "click"
    index: int
    action: str
    selector: str
    description: str
    url: str
    screenshot: bytes = Field(exclude=True, repr=False)
    page_fingerprint: str
    requests: list[HeldRequest] = Field(default_factory=list)

    def binding(self) -> dict[str, Any]:
        """What an approval of this action is bound to (JSON-safe, no screenshot bytes)."""
        return self.model_dump(mode="json")


class MutationPending(AcpError):
    """Raised instead of clicking a control that would mutate; carries the PendingAction."""

    def __init__(self, pending: PendingAction, *, before_step: bool = False) -> None:
        super().__init__(
            f"approval needed: {pending.description}",
            hint="approve to perform this action; reject and nothing is sent",
        )
        self.pending = pending
        # The page sent it on its own before the step could act: the step is still to take.
        self.before_step = before_step


class PageChanged(AcpError):
    """Raised by perform_pending when the page is no longer the one that was approved."""


class BrowserTimeout(AcpError):
    """Raised when a browser call does not finish within its deadline (the step timeout)."""


class _NavigationHeld(Exception):
    """A call on the page gave up because the page's own navigation is held for approval:
    Chromium then runs none of that page's scripts, so the call would wait forever."""


# --- the shared browser ----------------------------------------------------------------

_shared: tuple[asyncio.AbstractEventLoop, Playwright, Browser] | None = None
_shared_lock: asyncio.Lock | None = None


SYSTEM_CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str:
    """The configured Chromium (ACP_CHROMIUM), else the system one."""
    return os.environ.get("ACP_CHROMIUM") or SYSTEM_CHROMIUM


def browser_executable(playwright: Playwright) -> str | None:
    """ACP_CHROMIUM if set; else Playwright's own Chromium when `playwright install` put it
    there (None: Playwright finds it); else the system Chromium (Debian's `chromium`)."""
    configured = os.environ.get("ACP_CHROMIUM")
    if configured:
        path = configured
    else:
        with contextlib.suppress(Error):
            own = playwright.chromium.executable_path
            if own and os.path.exists(own):
                return None
        path = SYSTEM_CHROMIUM
    if not os.access(path, os.X_OK):
        raise AcpError(
            f"no Chromium to run browser jobs: {path} is not an executable",
            hint="run scripts/setup.sh (it installs the Debian package chromium), "
            "`playwright install chromium`, or set ACP_CHROMIUM to a Chromium binary",
        )
    return path


async def launch_browser(playwright: Playwright) -> Browser:
    """Chromium in a network namespace whose only way out is the runtime's egress proxy."""
    return await browser_launch.launch(playwright, browser_executable(playwright), CHROMIUM_ARGS)


async def shared_browser() -> Browser:
    """The worker's one browser (launched on first use, per event loop)."""
    global _shared, _shared_lock
    loop = asyncio.get_running_loop()
    if _shared_lock is None or _shared is None or _shared[0] is not loop:
        _shared_lock = asyncio.Lock()
    async with _shared_lock:
        if _shared is not None and _shared[0] is loop and _shared[2].is_connected():
            return _shared[2]
        if _shared is not None and _shared[0] is loop:
            await close_shared_browser()
        playwright = await async_playwright().start()
        try:
            browser = await launch_browser(playwright)
        except BaseException:
            await playwright.stop()
            raise
        _shared = (loop, playwright, browser)
        return browser


async def close_shared_browser() -> None:
    global _shared
    if _shared is None:
        return
    loop, playwright, browser = _shared
    _shared = None
    if loop is not asyncio.get_running_loop():
        browser_launch.discard(browser)
        return  # its loop is gone; nothing can be awaited on it from here
    with contextlib.suppress(Error):
        await browser.close()
    await browser_launch.release(browser)
    await playwright.stop()


# --- rules ------------------------------------------------------------------------------


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


_INSPECT_JS = """(el) => {
  const tag = el.tagName.toLowerCase();
  const rawType = (el.getAttribute('type') || '').toLowerCase();
  const form = el.form || el.closest('form');
  const type = rawType || (tag === 'button' ? 'submit' : '');
  const isSubmit = (tag === 'button' && type === 'submit' && !!form)
    || (tag === 'input' && (type === 'submit' || type === 'image'));
  const method = (el.getAttribute('formmethod')
    || (form && form.getAttribute('method')) || 'get').toLowerCase();
  const action = el.getAttribute('formaction') || (form && form.getAttribute('action')) || '';
  return {
    tag, type, isSubmit, method, action,
    role: el.getAttribute('role') || '',
    name: el.getAttribute('aria-label') || el.getAttribute('title') || '',
    text: ((el.innerText || el.value || '') + '').trim().slice(0, 200),
  };
}"""

_OUTLINE_ON = """(el) => {
  const saved = el.getAttribute('style');
  el.style.outline = '4px solid #e00';
  el.style.outlineOffset = '2px';
  el.scrollIntoView({block: 'center'});
  return saved;
}"""
# Restores the style attribute exactly (or removes it), so the page fingerprint is unchanged.
_OUTLINE_OFF = """(el, saved) => {
  if (saved === null) el.removeAttribute('style'); else el.setAttribute('style', saved);
}"""


def _role_and_name(aria: str) -> tuple[str, str]:
    first = aria.strip().splitlines()[0] if aria.strip() else ""
    m = re.match(r'-\s*([\w-]+)(?:\s+"((?:[^"\\]|\\.)*)")?', first)
    return (m.group(1), m.group(2) or "") if m else ("", "")


class BrowserSession:
    """One job's browser: a fresh context of the shared browser, traced and governed.

    Each Playwright call it makes is bounded (_bounded): by the step timeout, and, for a call
    that needs the page's scripts, by the page's own navigation being held for approval.
    """

    def __init__(self, grant: BrowserGrant, trace_dir: Path) -> None:
        self.grant = grant
        self.trace_dir = Path(trace_dir)
        self.refused: list[dict[str, Any]] = []
        self.steps: list[StepResult] = []
        self.screenshots: list[bytes] = []
        self.screenshot_bytes: dict[str, bytes] = {}  # by SHA-256, until the job records it
        self.mutations_sent: list[dict[str, Any]] = []
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._pending: PendingAction | None = None
        self._mutations_allowed = False
        self._secrets: list[str] = []
        self._step_refusals: list[dict[str, Any]] = []
        self._stopped = False
        self._redirect_target: str | None = None
        self._held: list[tuple[HeldRequest, asyncio.Future[str]]] = []
        self._accept_dialogs = False
        self.dialogs: list[dict[str, str]] = []
        self._step_timeout_ms = 15_000.0
        self._step_timeout_s = 15.0
        self._navigation_held = asyncio.Event()  # set while a held request is a navigation
        self._acted = False  # whether the current step has dispatched its action
        self._cdp: CDPSession | None = None
        self._patterns: list[re.Pattern[bytes]] = []  # every form of each filled secret
        self._live_dir = self.trace_dir / ".playwright"
        self._trace_name = ""
        self._trace_state: Literal["off", "recording", "dark"] = "off"
        self._trace_parts: list[Path] = []  # recorded spans not yet written to a trace.zip
        self._parts_made = 0

    # --- lifecycle -------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        grant: BrowserGrant,
        *,
        trace_dir: Path,
        browser: Browser | None = None,
        step_timeout_s: float = 15.0,
    ) -> BrowserSession:
        self = cls(grant, trace_dir)
        browser = browser or await shared_browser()
        self._context = await browser_launch.new_context(
            browser,
            lambda host: host_allowed(grant, host),
            self._refuse,  # what the egress proxy refused: requests the route never saw
            accept_downloads=grant.allow_downloads,
            service_workers="block",
        )
        try:
            self._step_timeout_s = step_timeout_s
            self._step_timeout_ms = step_timeout_s * 1000
            self._context.set_default_timeout(self._step_timeout_ms)
            self._make_live_dir()
            await self._bounded(self._start_tracing(), "starting the trace", held_ends=False)
            await self._bounded(
                self._context.route("**/*", self._route), "routing", held_ends=False
            )
            await self._bounded(
                self._context.route_web_socket(lambda _: True, self._route_websocket),
                "routing WebSockets",
                held_ends=False,
            )
            self._context.on("page", self._on_page)
            # "page" wires its handlers
            self._page = await self._bounded(
                self._context.new_page(), "opening a page", held_ends=False
            )
        except BaseException:
            await self._close_context()
            shutil.rmtree(self._live_dir, ignore_errors=True)
            raise
        return self

    @property
    def page(self) -> Page:
        assert self._page is not None, "session not started"
        return self._page

    @property
    def pending_mutations(self) -> list[dict[str, Any]]:
        """Non-GET requests the page tried to send outside an approved action."""
        return [r for r in self.refused if r["kind"] == "mutation"]

    @property
    def held_requests(self) -> list[HeldRequest]:
        return [held for held, future in self._held if not future.done()]

    async def save_trace(self, name: str = "trace.zip") -> Path:
        """Write the trace recorded since the last save (secrets scrubbed); keep tracing."""
        assert self._context is not None
        path = self.trace_dir / name
        if self._trace_state == "recording":
            await self._close_part()
            await self._bounded(
                self._context.tracing.start_chunk(name=self._trace_name),
                "starting the trace",
                held_ends=False,
            )
        self._write_trace(path)
        return path

    async def stop(self, name: str = "trace.zip", *, save: bool = True) -> Path:
        """Refuse what is still held, write the last trace part (unless save is False),
        close the context and remove the trace's live files. Safe to call again."""
        assert self._context is not None
        path = self.trace_dir / name
        if self._stopped:
            return path
        self._stopped = True
        self.discard_pending()
        try:
            if self._trace_state == "recording":
                self._trace_state = "off"
                try:
                    if save:
                        await self._close_part()
                finally:
                    with contextlib.suppress(Error, BrowserTimeout):
                        stopping = self._context.tracing.stop()
                        await self._bounded(stopping, "stopping the trace", held_ends=False)
        finally:
            await self._close_context()
            if save:
                self._write_trace(path)
            for part in self._trace_parts:
                part.unlink(missing_ok=True)
            shutil.rmtree(self._live_dir, ignore_errors=True)
        return path

    async def close(self) -> None:
        """Close without a trace, whatever state the session is in (a cancelled job)."""
        if self._context is None:
            return
        try:
            await self.stop(save=False)
        except Exception:  # closing must not hide why the job is being closed
            log.warning("closing a browser session failed", exc_info=True)

    def discard_pending(self) -> int:
        """Reject: the pending click is forgotten and every held request is aborted unsent."""
        self._pending = None
        dropped = 0
        for _, future in self._held:
            if not future.done():
                future.set_result("abort")
                dropped += 1
        self._held = []
        self._sync_navigation_held()
        return dropped

    def _sync_navigation_held(self) -> None:
        if any(h.resource_type == "document" and not f.done() for h, f in self._held):
            self._navigation_held.set()
        else:
            self._navigation_held.clear()

    async def _close_context(self) -> None:
        if self._context is None:
            return
        # The page's network is cut first. While Playwright closes a context, a request the
        # page still sends (a script's fetch loop, a timer) no longer reaches the route
        # handler: it would go out unchecked, past the hold on mutations, to a granted host.
        with contextlib.suppress(Error, BrowserTimeout):
            offline = self._context.set_offline(True)
            await self._bounded(offline, "cutting the page's network", held_ends=False)
        try:
            closing = self._context.close()
            await self._bounded(closing, "closing the browser context", held_ends=False)
        except (Error, BrowserTimeout):
            log.warning("closing a browser context failed", exc_info=True)

    # --- the trace ---------------------------------------------------------------------

    def _make_live_dir(self) -> None:
        """The job's directory (0700) and, in it, the one Playwright writes live files to."""
        self.trace_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.trace_dir, 0o700)
        self._live_dir.mkdir(mode=0o700, exist_ok=True)
        # Playwright writes a trace's live files to <the browser's artifacts dir>/<name>.trace
        # (and .network, .stacks): the artifacts dir is per launch and the browser is shared,
        # so a name that climbs to the root and down again puts them in this job's directory.
        # (Content-addressed resources stay in the artifacts dir; nothing secret is recorded.)
        self._trace_name = "../" * 64 + str(self._live_dir.resolve() / "trace").lstrip("/")

    async def _start_tracing(self) -> None:
        assert self._context is not None
        await self._context.tracing.start(
            name=self._trace_name, screenshots=True, snapshots=True, sources=False
        )
        self._trace_state = "recording"

    async def _close_part(self) -> None:
        """End the current chunk of the trace into a part file of the job's directory."""
        assert self._context is not None
        self._parts_made += 1
        part = self._live_dir / f"part-{self._parts_made}.zip"
        await self._bounded(
            self._context.tracing.stop_chunk(path=part),
            "writing the trace",
            timeout_s=self._step_timeout_s + 10,
            held_ends=False,
        )
        self._trace_parts.append(part)

    async def _go_dark(self) -> None:
        """Stop recording before a secret enters the page. Playwright records input values in
        its DOM snapshots, call arguments and request bodies, and writes them to disk as it
        goes: what it never records cannot leak, from the trace or from its live files."""
        if self._trace_state != "recording":
            return
        assert self._context is not None
        self._trace_state = "dark"
        try:
            await self._close_part()
        finally:
            try:
                stopping = self._context.tracing.stop()
                await self._bounded(stopping, "pausing the trace", held_ends=False)
            except (Error, BrowserTimeout) as error:
                raise AcpError(
                    "the trace could not be paused before filling a secret, so it was not filled"
                ) from error

    async def _resume_trace_if_clear(self) -> None:
        """Record again once no page holds a filled secret and nothing is held unsent."""
        if self._trace_state != "dark" or self._stopped or self.held_requests:
            return
        if await self._secret_in_pages():
            return
        await self._bounded(self._start_tracing(), "starting the trace", held_ends=False)

    async def _secret_in_pages(self) -> bool:
        """Whether a filled secret is in any page: its URL, its markup or a field's value."""
        assert self._context is not None
        for page in self._context.pages:
            if self._holds_secret(page.url):
                return True
            for frame in page.frames:
                if urlsplit(frame.url).scheme not in ("http", "https"):
                    continue  # about:blank, a blocked frame's error page
                try:
                    text = await self._bounded(
                        frame.evaluate(_PAGE_TEXT_JS), "reading the page", timeout_s=3
                    )
                except (Error, BrowserTimeout, _NavigationHeld):
                    return True  # cannot tell: stay dark
                if self._holds_secret(f"{frame.url}\n{text}"):
                    return True
        return False

    def _holds_secret(self, text: str) -> bool:
        data = text.encode(errors="replace")
        return any(pattern.search(data) for pattern in self._patterns)

    def _write_trace(self, path: Path) -> None:
        parts, self._trace_parts = self._trace_parts, []
        _write_trace(parts, path, self._patterns)

    # --- network rules -----------------------------------------------------------------

    def _refuse(self, url: str, reason: str, kind: str, **extra: Any) -> dict[str, Any]:
        entry = {"url": url, "reason": reason, "kind": kind, **extra}
        self.refused.append(entry)
        self._step_refusals.append(entry)
        return entry

    async def _route(self, route: Route) -> None:
        req = route.request
        main = False
        with contextlib.suppress(Error):
            main = req.is_navigation_request() and req.frame == self._page.main_frame
        meta = {"method": req.method, "resource_type": req.resource_type, "main_frame": main}
        why = refusal_reason(self.grant, req.url)
        if why:
            self._refuse(
                req.url, why, "navigation" if req.is_navigation_request() else "request", **meta
            )
            await _quiet(route.abort("blockedbyclient"))
            return
        if req.method not in _SAFE_METHODS:
            if not self._mutations_allowed and not self._stopped:
                # Held, unsent, until an approval lets it go or a rejection drops it.
                body = req.post_data_buffer or b""
                held = HeldRequest(
                    method=req.method,
                    url=req.url,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body_bytes=len(body),
                    resource_type=req.resource_type,
                )
                future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                self._held.append((held, future))
                self._sync_navigation_held()  # ends any call waiting on the page's scripts
                if await future != "send":
                    self._refuse(
                        req.url,
                        f"{req.method} request outside an approved action (not approved)",
                        "mutation",
                        **meta,
                    )
                    await _quiet(route.abort("blockedbyclient"))
                    return
            elif not self._mutations_allowed:
                await _quiet(route.abort("blockedbyclient"))
                return
            self.mutations_sent.append({"url": req.url, "method": req.method})
        try:
            await self._fetch_and_fulfill(route, meta)
        except Error:
            await _quiet(route.abort("failed"))

    async def _route_websocket(self, ws: WebSocketRoute) -> None:
        """A WebSocket may open only to a host in the grant (ws: and wss: as http: and https:).
        Messages on an allowed socket are not checkpointed; see the README's limits."""
        url = ws.url
        scheme, _, rest = url.partition(":")
        as_http = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme) + ":" + rest
        why = refusal_reason(self.grant, as_http)
        if why:
            self._refuse(url, why.replace(as_http.split(":")[0] + ":", scheme + ":"), "websocket")
            await _quiet(ws.close(code=1008, reason="blocked by the job's browser grant"))
            return
        ws.connect_to_server()

    async def _fetch_and_fulfill(self, route: Route, meta: dict[str, Any]) -> None:
        """Fetch with redirects handled here, so that every hop is checked against the grant.

        Playwright's route handler sees only the first URL of a redirect chain; a chain
        followed by the browser would reach an off-list host unchecked. A navigation that
        redirects to an allowed URL is answered with a page that navigates there (a new,
        routed request); other requests follow the chain here, hop by hop.
        """
        req = route.request
        assert self._context is not None
        url = req.url
        resp = await route.fetch(max_redirects=0, timeout=self._step_timeout_ms)
        for _ in range(_MAX_REDIRECTS):
            location = resp.headers.get("location")
            if resp.status not in _REDIRECTS or not location:
                break
            nxt = urljoin(url, location)
            why = refusal_reason(self.grant, nxt)
            await resp.dispose()
            if why:
                self._refuse(nxt, f"{why} (redirect from {url})", "redirect", **meta)
                await _quiet(route.abort("blockedbyclient"))
                return
            if req.is_navigation_request() and (
                req.method in _SAFE_METHODS or resp.status not in (307, 308)
            ):
                # Let the frame navigate to the next hop itself: the document gets the right
                # URL, and the hop comes back through this handler as a request of its own.
                if meta["main_frame"]:
                    self._redirect_target = nxt
                await route.fulfill(
                    status=200,
                    content_type="text/html",
                    body=f"<!doctype html><script>location.replace({json.dumps(nxt)})</script>",
                )
                return
            if resp.status in (307, 308):
                resp = await route.fetch(url=nxt, max_redirects=0, timeout=self._step_timeout_ms)
            else:
                headers = {
                    k: v
                    for k, v in req.headers.items()
                    if k.lower() not in ("content-type", "content-length", "origin")
                }
                resp = await self._context.request.fetch(
                    nxt, method="GET", headers=headers, max_redirects=0,
                    timeout=self._step_timeout_ms,
                )  # fmt: skip
            url = nxt
        disposition = resp.headers.get("content-disposition", "").lower()
        if disposition.startswith("attachment") and not self.grant.allow_downloads:
            self._refuse(url, "downloads are not granted to this job", "download", **meta)
            await resp.dispose()
            if req.is_navigation_request():  # 204: the frame stays on the page it was on
                await _quiet(route.fulfill(status=204, body=b""))
            else:
                await _quiet(route.abort("blockedbyclient"))
            return
        await route.fulfill(response=resp)

    def _on_page(self, page: Page) -> None:
        page.on("download", self._on_download)
        page.on("dialog", self._on_dialog)

    async def _on_dialog(self, dialog: Any) -> None:
        """alert/confirm/prompt: accepted inside an approved action, dismissed otherwise."""
        accept = self._accept_dialogs and dialog.type != "beforeunload"
        self.dialogs.append(
            {"type": dialog.type, "message": dialog.message[:500], "accepted": str(accept)}
        )
        await _quiet(dialog.accept() if accept else dialog.dismiss())

    async def _on_download(self, download: Download) -> None:
        if self.grant.allow_downloads:
            return
        if not any(r["kind"] == "download" and r["url"] == download.url for r in self.refused):
            self._refuse(download.url, "downloads are not granted to this job", "download")
        await _quiet(download.cancel())

    # --- steps -------------------------------------------------------------------------

    async def _begin(self, *, held_pauses: bool = True) -> None:
        if self._stopped:
            raise SandboxViolation("this browser session is stopped")
        if self._pending is not None:
            raise MutationPending(self._pending)
        self._mutations_allowed = False
        self._accept_dialogs = False
        self._step_refusals = []
        self._redirect_target = None
        self._acted = False
        if held_pauses:
            # Sent by the page on its own since the last step (a timer, a script): it is
            # decided before this step is taken, and the step is taken after.
            await self.check_held("wait", None, before_step=True)

    async def _bounded(
        self,
        call: Awaitable[T],
        what: str,
        *,
        timeout_s: float | None = None,
        held_ends: bool = True,
    ) -> T:
        """Await one Playwright call within a deadline (by default the step timeout, plus a
        second so that Playwright's own timeout, when the call has one, reports first).

        held_ends: the call needs the page's scripts, so a navigation of the page's own held
        for approval ends it at once with _NavigationHeld (it could never finish)."""
        limit = self._step_timeout_s + 1 if timeout_s is None else timeout_s
        task = asyncio.ensure_future(call)
        held = asyncio.ensure_future(self._navigation_held.wait()) if held_ends else None
        try:
            done, _ = await asyncio.wait(
                [task] if held is None else [task, held],
                timeout=limit,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # cancelled: the call goes too (Playwright aborts it)
            task.cancel()
            raise
        finally:
            if held is not None:
                held.cancel()
        if task in done:
            return task.result()
        task.cancel()
        await asyncio.wait([task], timeout=1)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: the call failed after its deadline
        if held is not None and held in done:
            raise _NavigationHeld(what)
        raise BrowserTimeout(
            f"the browser did not finish {what} within {limit:g} s",
            hint="the policy's limits.browser_step_timeout_s sets the deadline of each step",
        )

    async def _let_page_act(self) -> None:
        """Give the page's own handlers a frame to run, then see what they tried to send."""
        with contextlib.suppress(Error, BrowserTimeout, _NavigationHeld):
            await self._bounded(
                self.page.evaluate(
                    "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"
                ),
                "the page's next frame",
                timeout_s=min(2.0, self._step_timeout_s),
            )
        for _ in range(3):
            if self.held_requests:
                return
            await asyncio.sleep(0.005)

    async def check_held(
        self, action: str = "wait", target: str | None = None, *, before_step: bool = False
    ) -> None:
        """Pause on requests the page is holding to send (a step's effect, or the page's own)."""
        pending = await self._hold_pending(target)
        if pending is not None:
            raise MutationPending(pending, before_step=before_step)

    async def _hold_pending(self, target: str | None) -> PendingAction | None:
        held = self.held_requests
        if not held:
            return None
        listed = "; ".join(f"{h.method} {h.url} ({h.body_bytes} bytes)" for h in held)
        description = f"the page at {self.page.url} is about to send {listed}"
        # What is approved is the requests themselves (method, URL, body hash), not the DOM,
        # which a held navigation leaves unreadable.
        fingerprint = hashlib.sha256(
            json.dumps([self.page.url, [h.model_dump() for h in held]]).encode()
        ).hexdigest()
        self._pending = PendingAction(
            kind="request",
            index=len(self.steps),
            action="request",
            selector=target or "",
            description=description,
            url=self.page.url,
            screenshot=await self._capture() or b"",
            page_fingerprint=fingerprint,
            requests=held,
        )
        return self._pending

    async def _held_mid_step(self, action: str, target: str | None) -> AcpError:
        """What ends a step during which the page's own navigation was held: a pause after
        the step if its action was dispatched (the navigation is its effect), else a pause
        before it (the step is taken after the decision)."""
        if self._acted:
            await self._finish(action, target, True)
        pending = await self._hold_pending(target)
        if pending is None:  # dropped meanwhile (the session is closing)
            return BrowserTimeout(f"{action}: the page's held navigation was dropped")
        return MutationPending(pending, before_step=not self._acted)

    async def _capture(self) -> bytes | None:
        """A PNG of the page. While a navigation is held Playwright's screenshot waits on the
        page's scripts (for fonts), so Chromium's compositor is asked directly; failing both,
        the last screenshot stands in (the page still shows what it showed then)."""
        if not self._navigation_held.is_set():
            with contextlib.suppress(Error, BrowserTimeout, _NavigationHeld):
                return await self._bounded(self.page.screenshot(type="png"), "a screenshot")
        with contextlib.suppress(Error, BrowserTimeout, KeyError, binascii.Error):
            assert self._context is not None
            if self._cdp is None:
                self._cdp = await self._bounded(
                    self._context.new_cdp_session(self.page),
                    "a screenshot",
                    timeout_s=min(5.0, self._step_timeout_s),
                    held_ends=False,
                )
            shot = await self._bounded(
                self._cdp.send("Page.captureScreenshot", {"format": "png"}),
                "a screenshot",
                timeout_s=min(5.0, self._step_timeout_s),
                held_ends=False,
            )
            return base64.b64decode(shot["data"])
        return self.screenshots[-1] if self.screenshots else None

    async def _finish(self, action: str, target: str | None, ok: bool, detail: str = "") -> None:
        shot = await self._capture()
        if shot is not None:
            self.screenshots.append(shot)
            self.screenshot_bytes[hashlib.sha256(shot).hexdigest()] = shot
        self.steps.append(
            StepResult(
                index=len(self.steps),
                action=action,
                target=target,
                url=self.page.url,
                screenshot_sha256=hashlib.sha256(shot).hexdigest() if shot else None,
                ok=ok,
                detail=detail,
            )
        )

    def _main_frame_refusal(self) -> dict[str, Any] | None:
        for entry in self._step_refusals:
            if entry.get("main_frame") and entry["kind"] in ("navigation", "redirect"):
                return entry
        return None

    async def _check_landing(self, action: str, target: str | None) -> None:
        """After a step: refuse a main-frame navigation the network layer blocked, or a page
        that ended up on a forbidden scheme (e.g. a blob: or data: page)."""
        blocked = self._main_frame_refusal()
        if blocked is None:
            why = refusal_reason(self.grant, self.page.url)
            scheme = urlsplit(self.page.url).scheme
            # chrome-error: is Chromium's own page for a failed load, not a place to go to.
            if why and scheme not in ("http", "https", "chrome-error"):
                blocked = self._refuse(self.page.url, why, "navigation", main_frame=True)
                with contextlib.suppress(Error, BrowserTimeout, _NavigationHeld):
                    await self._bounded(self.page.goto("about:blank"), "leaving the page")
        if blocked is not None:
            await self._finish(action, target, False, f"refused: {blocked['reason']}")
            raise SandboxViolation(
                f"refused navigation to {blocked['url']}: {blocked['reason']}",
                hint="the job's browser grant lists the hosts it may visit",
            )

    async def _after_action(self, action: str, target: str | None, detail: str = "") -> StepResult:
        """The end of every step that acted: let the page act, land, record, pause on what
        it holds, and record the trace again if no secret is left in the page."""
        await self._let_page_act()
        await self._settle()
        await self._check_landing(action, target)
        await self._finish(action, target, True, detail)
        await self.check_held(action, target)
        await self._resume_trace_if_clear()
        return self.steps[-1]

    async def goto(self, url: str) -> StepResult:
        await self._begin()
        why = refusal_reason(self.grant, url)
        if why:
            self._refuse(url, why, "navigation", main_frame=True)
            await self._finish("goto", url, False, f"refused: {why}")
            raise SandboxViolation(
                f"refused navigation to {url[:200]}: {why}",
                hint="the job's browser grant lists the hosts it may visit (http/https only)",
            )
        try:
            return await self._goto(url)
        except _NavigationHeld:
            raise await self._held_mid_step("goto", url) from None

    async def _goto(self, url: str) -> StepResult:
        error: Error | None = None
        self._acted = True
        try:
            await self._bounded(self.page.goto(url), f"opening {url[:200]}")
        except Error as e:
            error = e
        else:
            await self._let_page_act()
            await self._settle()
        await self._check_landing("goto", url)
        if error is not None:
            downloads = [r for r in self._step_refusals if r["kind"] == "download"]
            if downloads or "Download is starting" in str(error):
                if not downloads:
                    self._refuse(url, "downloads are not granted to this job", "download")
                await self._finish("goto", url, False, "refused: download")
                raise SandboxViolation(
                    f"refused download from {url}", hint="the job's grant does not allow downloads"
                )
            await self._finish("goto", url, False, str(error).splitlines()[0])
            raise AcpError(f"navigation to {url} failed: {str(error).splitlines()[0]}")
        await self._finish("goto", url, True)
        await self.check_held("goto", url)
        await self._resume_trace_if_clear()
        return self.steps[-1]

    async def click(self, selector: str) -> StepResult:
        await self._begin()
        try:
            return await self._click(selector)
        except _NavigationHeld:
            raise await self._held_mid_step("click", selector) from None

    async def _click(self, selector: str) -> StepResult:
        locator = self.page.locator(selector).first
        info = await self._bounded(locator.evaluate(_INSPECT_JS), f"finding {selector}")
        aria = await self._bounded(locator.aria_snapshot(), f"reading {selector}")
        role, name = _role_and_name(aria)
        words = " ".join([info["text"], info["name"], info["role"], role, name])
        submits_mutation = info["isSubmit"] and info["method"] != "get"
        if MUTATING_WORDS.search(words) or submits_mutation:
            fingerprint = await self._fingerprint()
            label = name or info["text"] or selector
            description = f"click '{label}' ({role or info['tag']}) on {self.page.url}"
            if info["isSubmit"]:
                target = urljoin(self.page.url, info["action"] or self.page.url)
                description += f"; submits a {info['method'].upper()} form to {target}"
            saved_style = await self._bounded(locator.evaluate(_OUTLINE_ON), "highlighting")
            try:
                shot = await self._capture()
            finally:
                with contextlib.suppress(Error, BrowserTimeout):
                    await self._bounded(locator.evaluate(_OUTLINE_OFF, saved_style), "highlighting")
            self._pending = PendingAction(
                index=len(self.steps),
                action="click",
                selector=selector,
                description=description,
                url=self.page.url,
                screenshot=shot or b"",
                page_fingerprint=fingerprint,
            )
            await self._finish("click", selector, False, f"pending approval: {description}")
            raise MutationPending(self._pending)
        self._acted = True
        await self._bounded(locator.click(), f"clicking {selector}")
        return await self._after_action("click", selector)

    @property
    def pending(self) -> PendingAction | None:
        return self._pending

    async def perform_pending(self, pending: PendingAction) -> StepResult:
        """Take an approved action, if the page is still the one that was approved."""
        current = self._pending
        if current is None or current.binding() != pending.binding():
            raise PageChanged("this approval is not for the action pending in this session")
        self._pending = None
        await self._begin(held_pauses=False)
        try:
            if pending.kind == "request":
                return await self._release_held(pending)
            return await self._perform_click(pending)
        except _NavigationHeld:
            raise await self._held_mid_step("perform", pending.selector or None) from None

    async def _perform_click(self, pending: PendingAction) -> StepResult:
        if await self._fingerprint() != pending.page_fingerprint or self.page.url != pending.url:
            await self._finish("perform", pending.selector, False, "page changed since approval")
            raise PageChanged(
                f"the page changed since the approval of: {pending.description}",
                hint="a fresh checkpoint is needed",
            )
        self._mutations_allowed = True  # until the next step begins
        self._accept_dialogs = True  # the approval covers the page's own "are you sure?"
        self._acted = True
        locator = self.page.locator(pending.selector).first
        await self._bounded(locator.click(), f"clicking {pending.selector}")
        await self._let_page_act()
        await self._settle()
        await self._check_landing("perform", pending.selector)
        await self._finish("perform", pending.selector, True, pending.description)
        await self._resume_trace_if_clear()
        return self.steps[-1]

    async def _release_held(self, pending: PendingAction) -> StepResult:
        """Send exactly the held requests that were approved, nothing that came after (what
        the page tried since stays held, for a decision of its own)."""
        held = [(h, f) for h, f in self._held if not f.done()]
        approved = held[: len(pending.requests)]
        if [h for h, _ in approved] != pending.requests:
            raise PageChanged(
                f"the requests held now are not the ones approved: {pending.description}",
                hint="a fresh checkpoint is needed",
            )
        sent_before = len(self.mutations_sent)
        for _, future in approved:
            future.set_result("send")
        self._sync_navigation_held()
        for _ in range(200):  # each released request reaches the route's fetch
            if len(self.mutations_sent) - sent_before >= len(approved):
                break
            await asyncio.sleep(0.01)
        self._held = [(h, f) for h, f in self._held if not f.done()]
        self._acted = True
        await self._let_page_act()
        await self._settle()
        with contextlib.suppress(Error, BrowserTimeout, _NavigationHeld):
            await self._bounded(
                self.page.wait_for_load_state("networkidle", timeout=2_000),
                "the page's network to settle",
                timeout_s=3,
            )
        selector = pending.selector or None
        return await self._after_action("perform", selector, pending.description)

    async def fill(self, selector: str, value: str) -> StepResult:
        await self._begin()
        try:
            await self._bounded(
                self.page.locator(selector).first.fill(value), f"filling {selector}"
            )
        except _NavigationHeld:  # not filled for sure: filled again after the decision
            raise await self._held_mid_step("fill", selector) from None
        return await self._after_input("fill", selector)

    async def fill_secret(self, selector: str, secret_value: str) -> StepResult:
        """Fill a credential. The trace stops recording first, and records again only once
        no page holds the value (see _go_dark); its forms are also scrubbed from what the
        job keeps (step details, the model's view of the page, trace.zip)."""
        await self._begin()
        if secret_value:
            self._secrets.append(secret_value)
            self._patterns.append(secret_pattern(secret_value))
        await self._go_dark()
        try:
            locator = self.page.locator(selector).first
            await self._bounded(locator.fill(secret_value), f"filling {selector}")
        except _NavigationHeld:
            raise await self._held_mid_step("fill_secret", selector) from None
        return await self._after_input(
            "fill_secret", selector, "secret value filled (not recorded)"
        )

    async def _after_input(self, action: str, target: str, detail: str = "") -> StepResult:
        await self._finish(action, target, True, detail)
        await self.check_held(action, target)
        await self._resume_trace_if_clear()
        return self.steps[-1]

    async def select(self, selector: str, value: str) -> StepResult:
        await self._begin()
        try:
            locator = self.page.locator(selector).first
            await self._bounded(locator.select_option(value), f"choosing in {selector}")
        except _NavigationHeld:
            raise await self._held_mid_step("select", selector) from None
        return await self._after_input("select", selector)

    async def wait(self, selector_or_ms: str | float) -> StepResult:
        await self._begin()
        target = str(selector_or_ms)
        try:
            if isinstance(selector_or_ms, int | float):
                ms = float(selector_or_ms)
                await self._bounded(
                    self.page.wait_for_timeout(ms),
                    f"waiting {ms:g} ms",
                    timeout_s=ms / 1000 + self._step_timeout_s,
                )
            else:
                await self._bounded(
                    self.page.wait_for_selector(selector_or_ms), f"waiting for {target}"
                )
        except _NavigationHeld:  # the page's own navigation, held: the wait comes after
            raise await self._held_mid_step("wait", target) from None
        return await self._after_input("wait", target)

    async def expect(self, selector: str, text: str | None = None) -> StepResult:
        """An assertion step: the element becomes visible (and contains text, when given)
        within the step timeout, as Playwright's own expect() waits."""
        await self._begin()
        locator = self.page.locator(selector).first
        try:
            if text is None:
                check = expect(locator).to_be_visible(timeout=self._step_timeout_ms)
            else:
                check = expect(locator).to_contain_text(text, timeout=self._step_timeout_ms)
            await self._bounded(check, f"checking {selector}")
        except _NavigationHeld:  # the page is navigating on its own: asserted after
            raise await self._held_mid_step("expect", selector) from None
        except (AssertionError, Error, BrowserTimeout):
            found = None
            with contextlib.suppress(Error, BrowserTimeout, _NavigationHeld):
                found = await self._bounded(
                    locator.inner_text(timeout=500), f"reading {selector}", timeout_s=2
                )
            detail = (
                f"expected {selector} to be visible; it is not on the page"
                if found is None
                else f"expected {selector} to contain {text!r}; it shows {found[:200]!r}"
            )
            await self._finish("expect", selector, False, self.scrub(detail))
            raise AcpError(self.scrub(detail)) from None
        return await self._after_input("expect", selector, text or "")

    async def observe(self, limit: int = 12_000) -> str:
        """The page as a model sees it: URL, title and the accessibility tree (YAML)."""
        aria, title = "", ""
        try:
            title = await self._bounded(self.page.title(), "reading the title", timeout_s=5)
            aria = await self._bounded(
                self.page.locator("body").aria_snapshot(timeout=5_000),
                "reading the page",
                timeout_s=6,
            )
        except _NavigationHeld:
            aria = "(the page is navigating: its request is held for approval)"
        except (Error, BrowserTimeout):
            pass
        text = self.scrub(f"url: {self.page.url}\ntitle: {title}\n{aria}")
        return text if len(text) <= limit else text[:limit] + "\n[truncated]"

    def scrub(self, text: str) -> str:
        """Text about the page with every form of a filled secret replaced (a password field
        shows its value in the accessibility tree)."""
        if not self._patterns:
            return text
        data = text.encode(errors="replace")
        for pattern in self._patterns:
            data = pattern.sub(_REDACTED, data)
        return data.decode(errors="replace")

    async def screenshot(self) -> bytes:
        await self._begin()
        await self._finish("screenshot", None, True)
        return self.screenshots[-1] if self.screenshots else b""

    # --- helpers -----------------------------------------------------------------------

    async def _settle(self) -> None:
        """Wait for the page to load, following redirect hops handed back to the frame (a
        held navigation ends the wait: the page will not load until it is decided)."""
        wait_s = min(10.0, self._step_timeout_s)
        try:
            await self._bounded(
                self.page.wait_for_load_state("load", timeout=wait_s * 1000),
                "the page's load",
                timeout_s=wait_s + 1,
            )
        except _NavigationHeld:
            return
        except (Error, BrowserTimeout):
            pass
        for _ in range(_MAX_REDIRECTS):
            target, self._redirect_target = self._redirect_target, None
            if target is None or self._main_frame_refusal() is not None:
                return
            try:
                await self._bounded(
                    self.page.wait_for_url(
                        lambda u, t=target: u == t or self._main_frame_refusal() is not None,
                        wait_until="load",
                        timeout=wait_s * 1000,
                    ),
                    "a redirect",
                    timeout_s=wait_s + 1,
                )
            except _NavigationHeld:
                return
            except (Error, BrowserTimeout):
                pass

    async def _fingerprint(self) -> str:
        content = await self._bounded(self.page.content(), "reading the page")
        aria = ""
        with contextlib.suppress(Error, BrowserTimeout):
            aria = await self._bounded(
                self.page.locator("body").aria_snapshot(timeout=5_000),
                "reading the page",
                timeout_s=6,
            )
        digest = hashlib.sha256()
        for part in (self.page.url, content, aria):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()


# Read in a page while the trace is dark: its markup and what its fields hold (values are
# properties, not in the markup).
_PAGE_TEXT_JS = """() => document.documentElement.outerHTML + '\\n' + Array.from(
  document.querySelectorAll('input, textarea, select'), (el) => el.value).join('\\n')"""


async def _quiet(awaitable: Any) -> None:
    with contextlib.suppress(Error):
        await awaitable


# --- secrets: every form a browser, a server or a trace writer gives a value ----------------


@cache
def _named_references() -> dict[str, tuple[str, ...]]:
    """HTML named character references by the character they stand for (amp -> &)."""
    names: dict[str, set[str]] = {}
    for name, value in html5_entities.items():
        if len(value) == 1:
            names.setdefault(value, set()).add(name.rstrip(";"))
    return {char: tuple(sorted(found)) for char, found in names.items()}


def _hex_digits(value: int, width: int) -> bytes:
    """value in hexadecimal, each letter in either case."""
    return b"".join(
        f"[{d.lower()}{d.upper()}]".encode() if d.isalpha() else d.encode()
        for d in f"{value:0{width}x}"
    )


def _char_forms(char: str) -> bytes:
    """A regular expression for one character in any encoding it meets on its way into a
    trace: raw; percent-encoded (either case of hex, also with the % itself encoded, as a
    URL inside a URL has it); + for a space (form encoding); JSON and JavaScript escapes
    (\\" \\\\ \\/ \\uXXXX) at any depth of nesting; HTML character references (decimal, hex,
    named; with the & itself escaped any number of times)."""
    raw = char.encode()
    point = ord(char)
    forms = [re.escape(raw), b"".join(b"%(?:25)*" + _hex_digits(byte, 2) for byte in raw)]
    if char == " ":
        forms.append(rb"\+")
    units = [point] if point < 0x10000 else [0xD800 + ((point - 0x10000) >> 10),
                                             0xDC00 + ((point - 0x10000) & 0x3FF)]  # fmt: skip
    forms.append(b"".join(rb"\\+u" + _hex_digits(unit, 4) for unit in units))
    if char in "\"\\/'":
        forms.append(rb"\\+" + re.escape(raw))
    amp = rb"&(?:amp;)*"
    forms.append(amp + b"#0*" + str(point).encode() + b";?")
    forms.append(amp + b"#[xX]0*" + _hex_digits(point, 1) + b";?")
    forms.extend(
        amp + re.escape(name.encode()) + b";?" for name in _named_references().get(char, ())
    )
    return b"(?:" + b"|".join(forms) + b")"


def _base64_forms(data: bytes) -> list[bytes]:
    """The base64 characters that depend only on data, at each of the three alignments it
    can have in a longer encoded body (standard and URL-safe alphabets)."""
    found = []
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data)
        kept = bytes(
            c
            for i, c in enumerate(encoded)
            if 6 * i >= 8 * offset and 6 * i + 6 <= 8 * (offset + len(data))
        )
        if len(kept) >= 4:
            found.extend({kept, kept.replace(b"+", b"-").replace(b"/", b"_")})
    return found


def secret_pattern(secret: str) -> re.Pattern[bytes]:
    """Every form of secret a browser can put in a trace or a page (see _char_forms), and
    its base64 (a request body stored encoded)."""
    chars = b"".join(_char_forms(char) for char in secret)
    alternatives = [chars, *(re.escape(form) for form in _base64_forms(secret.encode()))]
    return re.compile(b"|".join(alternatives))


def _write_trace(parts: list[Path], path: Path, patterns: list[re.Pattern[bytes]]) -> None:
    """One trace.zip from the spans recorded between dark ones, every entry scrubbed. The
    first span keeps Playwright's names; later ones are prefixed (the viewer opens each
    <name>.trace in a zip with its <name>.network and <name>.stacks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1 and not patterns:
        parts[0].replace(path)
        return
    tmp = path.with_suffix(".zip.tmp")
    seen: set[str] = set()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        if not parts:
            out.writestr("trace.trace", _unrecorded_trace())
        for number, part in enumerate(parts):
            with zipfile.ZipFile(part) as src:
                for info in src.infolist():
                    name = info.filename
                    if number and name in ("trace.trace", "trace.network", "trace.stacks"):
                        name = f"part{number + 1}-{name}"
                    if name in seen:
                        continue
                    seen.add(name)
                    data = src.read(info)
                    for pattern in patterns:
                        data = pattern.sub(_REDACTED, data)
                    out.writestr(name, data)
    tmp.replace(path)
    for part in parts:
        part.unlink(missing_ok=True)


def _unrecorded_trace() -> str:
    """A trace with nothing in it: every moment of its span had a secret in the page."""
    return json.dumps(
        {"version": 8, "type": "context-options", "origin": "library", "browserName": "chromium",
         "options": {}, "platform": sys.platform, "wallTime": int(time.time() * 1000),
         "monotonicTime": 0, "sdkLanguage": "python",
         "title": "not recorded: a filled secret was in the page"}
    ) + "\n"  # fmt: skip


__all__ = [
    "CHROMIUM_ARGS",
    "BrowserGrant",
    "BrowserSession",
    "BrowserTimeout",
    "MutationPending",
    "PageChanged",
    "PendingAction",
    "StepResult",
    "close_shared_browser",
    "host_allowed",
    "refusal_reason",
    "secret_pattern",
    "shared_browser",
]
