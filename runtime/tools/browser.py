"""The browser tool: one Chromium context per job, governed at the network layer.

It must never let a request reach a host outside the grant (navigations, sub-resources,
each redirect hop, popups, iframes), never navigate to data:, blob:, javascript:, file:,
chrome: or about: pages (about:blank aside), never save a download unless granted, never
click a mutating control or let a non-GET request out without an approved PendingAction,
and never write a secret filled with fill_secret into the trace in clear.

Every step leaves a screenshot; stop() leaves trace.zip (open with `playwright show-trace`).
Chromium is the system one (ACP_CHROMIUM, default /usr/bin/chromium): `playwright install`
is not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, quote_plus, urljoin, urlsplit

from playwright.async_api import (
    Browser,
    BrowserContext,
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

    def __init__(self, pending: PendingAction) -> None:
        super().__init__(
            f"approval needed: {pending.description}",
            hint="approve to perform this action; reject and nothing is sent",
        )
        self.pending = pending


class PageChanged(AcpError):
    """Raised by perform_pending when the page is no longer the one that was approved."""


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
    """One job's browser: a fresh context of the shared browser, traced and governed."""

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
        self._trace_open = False
        self._step_timeout_ms = 15_000.0

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
            self._step_timeout_ms = step_timeout_s * 1000
            self._context.set_default_timeout(self._step_timeout_ms)
            await self._context.tracing.start(screenshots=True, snapshots=True, sources=False)
            await self._context.tracing.start_chunk()
            self._trace_open = True
            await self._context.route("**/*", self._route)
            await self._context.route_web_socket(lambda _: True, self._route_websocket)
            self._context.on("page", self._on_page)
            self._page = await self._context.new_page()  # "page" wires its handlers
        except BaseException:
            await self._context.close()
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
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        path = self.trace_dir / name
        if self._trace_open:
            self._trace_open = False
            await self._context.tracing.stop_chunk(path=path)
            _scrub_zip(path, self._secrets)
            await self._context.tracing.start_chunk()
            self._trace_open = True
        return path

    async def stop(self, name: str = "trace.zip") -> Path:
        """Refuse what is still held, write the last trace part, close the context."""
        assert self._context is not None
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        path = self.trace_dir / name
        if not self._stopped:
            self._stopped = True
            self.discard_pending()
            try:
                if self._trace_open:
                    self._trace_open = False
                    await self._context.tracing.stop_chunk(path=path)
                await self._context.tracing.stop()
            finally:
                await self._context.close()
            _scrub_zip(path, self._secrets)
        return path

    def discard_pending(self) -> int:
        """Reject: the pending click is forgotten and every held request is aborted unsent."""
        self._pending = None
        dropped = 0
        for _, future in self._held:
            if not future.done():
                future.set_result("abort")
                dropped += 1
        self._held = []
        return dropped

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
        resp = await route.fetch(max_redirects=0)
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
                resp = await route.fetch(url=nxt, max_redirects=0)
            else:
                headers = {
                    k: v
                    for k, v in req.headers.items()
                    if k.lower() not in ("content-type", "content-length", "origin")
                }
                resp = await self._context.request.fetch(
                    nxt, method="GET", headers=headers, max_redirects=0
                )
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

    def _begin(self) -> None:
        if self._stopped:
            raise SandboxViolation("this browser session is stopped")
        if self._pending is not None:
            raise MutationPending(self._pending)
        self._mutations_allowed = False
        self._accept_dialogs = False
        self._step_refusals = []
        self._redirect_target = None

    async def _let_page_act(self) -> None:
        """Give the page's own handlers a frame to run, then see what they tried to send."""
        with contextlib.suppress(Error):
            await self.page.evaluate(
                "() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"
            )
        for _ in range(3):
            if self.held_requests:
                return
            await asyncio.sleep(0.005)

    async def check_held(self, action: str = "wait", target: str | None = None) -> None:
        """Pause on requests the page is holding to send (a step's effect, or the page's own)."""
        held = self.held_requests
        if not held:
            return
        listed = "; ".join(f"{h.method} {h.url} ({h.body_bytes} bytes)" for h in held)
        description = f"the page at {self.page.url} is about to send {listed}"
        self._pending = PendingAction(
            kind="request",
            index=len(self.steps),
            action="request",
            selector=target or "",
            description=description,
            url=self.page.url,
            screenshot=await self.page.screenshot(type="png"),
            page_fingerprint=await self._fingerprint(),
            requests=held,
        )
        raise MutationPending(self._pending)

    async def _finish(self, action: str, target: str | None, ok: bool, detail: str = "") -> None:
        shot: bytes | None = None
        with contextlib.suppress(Error):
            shot = await self.page.screenshot(type="png")
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
                with contextlib.suppress(Error):
                    await self.page.goto("about:blank")
        if blocked is not None:
            await self._finish(action, target, False, f"refused: {blocked['reason']}")
            raise SandboxViolation(
                f"refused navigation to {blocked['url']}: {blocked['reason']}",
                hint="the job's browser grant lists the hosts it may visit",
            )

    async def goto(self, url: str) -> StepResult:
        self._begin()
        why = refusal_reason(self.grant, url)
        if why:
            self._refuse(url, why, "navigation", main_frame=True)
            await self._finish("goto", url, False, f"refused: {why}")
            raise SandboxViolation(
                f"refused navigation to {url[:200]}: {why}",
                hint="the job's browser grant lists the hosts it may visit (http/https only)",
            )
        error: Error | None = None
        try:
            await self.page.goto(url)
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
        return self.steps[-1]

    async def click(self, selector: str) -> StepResult:
        self._begin()
        locator = self.page.locator(selector).first
        info = await locator.evaluate(_INSPECT_JS)
        role, name = _role_and_name(await locator.aria_snapshot())
        words = " ".join([info["text"], info["name"], info["role"], role, name])
        submits_mutation = info["isSubmit"] and info["method"] != "get"
        if MUTATING_WORDS.search(words) or submits_mutation:
            fingerprint = await self._fingerprint()
            label = name or info["text"] or selector
            description = f"click '{label}' ({role or info['tag']}) on {self.page.url}"
            if info["isSubmit"]:
                target = urljoin(self.page.url, info["action"] or self.page.url)
                description += f"; submits a {info['method'].upper()} form to {target}"
            saved_style = await locator.evaluate(_OUTLINE_ON)
            try:
                shot = await self.page.screenshot(type="png")
            finally:
                await locator.evaluate(_OUTLINE_OFF, saved_style)
            self._pending = PendingAction(
                index=len(self.steps),
                action="click",
                selector=selector,
                description=description,
                url=self.page.url,
                screenshot=shot,
                page_fingerprint=fingerprint,
            )
            await self._finish("click", selector, False, f"pending approval: {description}")
            raise MutationPending(self._pending)
        await locator.click()
        await self._let_page_act()
        await self._settle()
        await self._check_landing("click", selector)
        await self._finish("click", selector, True)
        await self.check_held("click", selector)
        return self.steps[-1]

    @property
    def pending(self) -> PendingAction | None:
        return self._pending

    async def perform_pending(self, pending: PendingAction) -> StepResult:
        """Take an approved action, if the page is still the one that was approved."""
        current = self._pending
        if current is None or current.binding() != pending.binding():
            raise PageChanged("this approval is not for the action pending in this session")
        self._pending = None
        self._begin()
        if pending.kind == "request":
            return await self._release_held(pending)
        if await self._fingerprint() != pending.page_fingerprint or self.page.url != pending.url:
            await self._finish("perform", pending.selector, False, "page changed since approval")
            raise PageChanged(
                f"the page changed since the approval of: {pending.description}",
                hint="a fresh checkpoint is needed",
            )
        self._mutations_allowed = True  # until the next step begins
        self._accept_dialogs = True  # the approval covers the page's own "are you sure?"
        await self.page.locator(pending.selector).first.click()
        await self._let_page_act()
        await self._settle()
        await self._check_landing("perform", pending.selector)
        await self._finish("perform", pending.selector, True, pending.description)
        return self.steps[-1]

    async def _release_held(self, pending: PendingAction) -> StepResult:
        """Send exactly the held requests that were approved, nothing that came after."""
        held = [(h, f) for h, f in self._held if not f.done()]
        if [h for h, _ in held] != pending.requests:
            raise PageChanged(
                f"the requests held now are not the ones approved: {pending.description}",
                hint="a fresh checkpoint is needed",
            )
        self._mutations_allowed = True
        sent_before = len(self.mutations_sent)
        for _, future in held:
            future.set_result("send")
        for _ in range(200):  # each released request reaches the route's fetch
            if len(self.mutations_sent) - sent_before >= len(held):
                break
            await asyncio.sleep(0.01)
        self._held = [(h, f) for h, f in self._held if not f.done()]
        await self._let_page_act()
        await self._settle()
        with contextlib.suppress(Error):
            await self.page.wait_for_load_state("networkidle", timeout=2_000)
        await self._check_landing("perform", pending.selector or None)
        await self._finish("perform", pending.selector or None, True, pending.description)
        return self.steps[-1]

    async def fill(self, selector: str, value: str) -> StepResult:
        self._begin()
        await self.page.locator(selector).first.fill(value)
        await self._finish("fill", selector, True)
        await self.check_held("fill", selector)
        return self.steps[-1]

    async def fill_secret(self, selector: str, secret_value: str) -> StepResult:
        """Fill a credential; its value (raw, JSON-, URL- or HTML-escaped) is scrubbed from
        trace.zip at stop(): Playwright records it in the fill call and in DOM snapshots."""
        self._begin()
        if secret_value:
            self._secrets.append(secret_value)
        await self.page.locator(selector).first.fill(secret_value)
        await self._finish("fill_secret", selector, True, "secret value filled (not recorded)")
        await self.check_held("fill_secret", selector)
        return self.steps[-1]

    async def select(self, selector: str, value: str) -> StepResult:
        self._begin()
        await self.page.locator(selector).first.select_option(value)
        await self._finish("select", selector, True)
        await self.check_held("select", selector)
        return self.steps[-1]

    async def wait(self, selector_or_ms: str | float) -> StepResult:
        self._begin()
        if isinstance(selector_or_ms, int | float):
            await self.page.wait_for_timeout(float(selector_or_ms))
        else:
            await self.page.wait_for_selector(selector_or_ms)
        await self._finish("wait", str(selector_or_ms), True)
        await self.check_held("wait", str(selector_or_ms))
        return self.steps[-1]

    async def expect(self, selector: str, text: str | None = None) -> StepResult:
        """An assertion step: the element becomes visible (and contains text, when given)
        within the step timeout, as Playwright's own expect() waits."""
        self._begin()
        locator = self.page.locator(selector).first
        try:
            if text is None:
                await expect(locator).to_be_visible(timeout=self._step_timeout_ms)
            else:
                await expect(locator).to_contain_text(text, timeout=self._step_timeout_ms)
        except (AssertionError, Error):
            found = None
            with contextlib.suppress(Error):
                found = await locator.inner_text(timeout=500)
            detail = (
                f"expected {selector} to be visible; it is not on the page"
                if found is None
                else f"expected {selector} to contain {text!r}; it shows {found[:200]!r}"
            )
            await self._finish("expect", selector, False, self.scrub(detail))
            raise AcpError(self.scrub(detail)) from None
        await self._finish("expect", selector, True, text or "")
        return self.steps[-1]

    async def observe(self, limit: int = 12_000) -> str:
        """The page as a model sees it: URL, title and the accessibility tree (YAML)."""
        aria = ""
        with contextlib.suppress(Error):
            aria = await self.page.locator("body").aria_snapshot(timeout=5_000)
        text = self.scrub(f"url: {self.page.url}\ntitle: {await self.page.title()}\n{aria}")
        return text if len(text) <= limit else text[:limit] + "\n[truncated]"

    def scrub(self, text: str) -> str:
        """Text about the page with every form of a filled secret replaced (a password field
        shows its value in the accessibility tree)."""
        for secret in self._secrets:
            for form in sorted(_secret_forms(secret), key=len, reverse=True):
                text = text.replace(form.decode(), _REDACTED.decode())
        return text

    async def screenshot(self) -> bytes:
        self._begin()
        await self._finish("screenshot", None, True)
        return self.screenshots[-1]

    # --- helpers -----------------------------------------------------------------------

    async def _settle(self) -> None:
        """Wait for the page to load, following redirect hops handed back to the frame."""
        with contextlib.suppress(Error):
            await self.page.wait_for_load_state("load", timeout=10_000)
        for _ in range(_MAX_REDIRECTS):
            target, self._redirect_target = self._redirect_target, None
            if target is None or self._main_frame_refusal() is not None:
                return
            with contextlib.suppress(Error):
                await self.page.wait_for_url(
                    lambda u, t=target: u == t or self._main_frame_refusal() is not None,
                    wait_until="load",
                    timeout=10_000,
                )

    async def _fingerprint(self) -> str:
        content = await self.page.content()
        aria = ""
        with contextlib.suppress(Error):
            aria = await self.page.locator("body").aria_snapshot(timeout=5_000)
        digest = hashlib.sha256()
        for part in (self.page.url, content, aria):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()


async def _quiet(awaitable: Any) -> None:
    with contextlib.suppress(Error):
        await awaitable


def _secret_forms(secret: str) -> set[bytes]:
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        html.escape(secret),
    }
    return {f.encode() for f in forms if f}


def _scrub_zip(path: Path, secrets: list[str]) -> None:
    """Rewrite trace.zip with every recorded form of each secret replaced."""
    if not secrets or not path.exists():
        return
    forms = sorted(set().union(*(_secret_forms(s) for s in secrets)), key=len, reverse=True)
    tmp = path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            for form in forms:
                data = data.replace(form, _REDACTED)
            dst.writestr(info.filename, data)
    tmp.replace(path)


__all__ = [
    "CHROMIUM_ARGS",
    "BrowserGrant",
    "BrowserSession",
    "MutationPending",
    "PageChanged",
    "PendingAction",
    "StepResult",
    "close_shared_browser",
    "host_allowed",
    "refusal_reason",
    "shared_browser",
]
