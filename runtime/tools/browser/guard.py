"""The session's network guard: every request, redirect hop, WebSocket, dialog and download
of a job's context, checked against its grant and held when it would mutate.

It must never let a request reach a host outside the grant (navigations, sub-resources,
each redirect hop, popups, iframes), never save a download unless granted, and never let a
non-GET request out without an approved action: such a request is held unsent until an
approval lets it go or a rejection drops it (runtime.tools.browser.hold). The egress proxy
(launch.py) checks the same grant below this layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any
from urllib.parse import urljoin

from playwright.async_api import BrowserContext, Download, Error, Page, Route, WebSocketRoute

from runtime.tools.browser.grant import BrowserGrant, refusal_reason
from runtime.tools.browser.pending import HeldRequest

_SAFE_METHODS = {"GET", "HEAD"}
_REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 20


class HeldEntry:
    """One request held unsent: what it is, its own key, and the decision it waits for.

    An approval names the keys of the entries it covers (HeldAction.held_keys): each one is
    released once, by its key, and leaves the list; no other request is sent by it."""

    def __init__(self, key: int, request: HeldRequest) -> None:
        self.key = key
        self.request = request
        self.verdict: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.finished = asyncio.Event()  # set once the route is answered (sent or dropped)

    @property
    def waiting(self) -> bool:
        return not self.verdict.done()


class NetworkGuard:
    """Route handlers for BrowserSession (which holds the grant, the refusals and the held)."""

    grant: BrowserGrant
    refused: list[dict[str, Any]]
    mutations_sent: list[dict[str, Any]]
    dialogs: list[dict[str, str]]
    _context: BrowserContext | None
    _page: Page | None
    _step_refusals: list[dict[str, Any]]
    _mutations_allowed: bool
    _accept_dialogs: bool
    _stopped: bool
    _redirect_target: str | None
    _held: list[HeldEntry]
    _held_keys: int
    _step_timeout_ms: float

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
        entry: HeldEntry | None = None
        if req.method not in _SAFE_METHODS:
            if self._stopped:
                await _quiet(route.abort("blockedbyclient"))
                return
            if not self._mutations_allowed:
                # Held, unsent, until an approval of this very request lets it go (its own
                # entry, by key, once) or a rejection drops it. Nothing is ever released by
                # count: a request the page sends after an approval is a new entry, held.
                body = req.post_data_buffer or b""
                held = HeldRequest(
                    method=req.method,
                    url=req.url,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body_bytes=len(body),
                    resource_type=req.resource_type,
                )
                self._held_keys += 1
                entry = HeldEntry(self._held_keys, held)
                self._held.append(entry)
                self._sync_navigation_held()  # ends any call waiting on the page's scripts
                if await entry.verdict != "send" or self._stopped:
                    entry.finished.set()
                    self._refuse(
                        req.url,
                        f"{req.method} request outside an approved action (not approved)",
                        "mutation",
                        **meta,
                    )
                    await _quiet(route.abort("blockedbyclient"))
                    return
            self.mutations_sent.append({"url": req.url, "method": req.method})
        try:
            await self._fetch_and_fulfill(route, meta)
        except Error:
            await _quiet(route.abort("failed"))
        finally:
            if entry is not None:
                entry.finished.set()

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
        for _ in range(MAX_REDIRECTS):
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


async def _quiet(awaitable: Any) -> None:
    with contextlib.suppress(Error):
        await awaitable
