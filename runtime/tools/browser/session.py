"""The browser tool's session: one Chromium context per job, governed at the network layer.

It must never let a request reach a host outside the grant (navigations, sub-resources,
each redirect hop, popups, iframes), never navigate to data:, blob:, javascript:, file:,
chrome: or about: pages (about:blank aside), never save a download unless granted, never
click a mutating control or let a non-GET request out without an approved HeldAction,
and never let a secret filled with fill_secret reach the trace: recording stops before the
value enters the page and starts again once no page holds it (Playwright writes what it
records to disk as it goes, input values and request bodies included).

Every Playwright call has a deadline, and a page whose navigation is held for approval (it
then answers no script at all) ends the step as a pause, never as a hang.

Every step leaves a screenshot; stop() leaves trace.zip (open with `playwright show-trace`).
The trace's live files are kept in the job's own directory (mode 0700), removed at stop().

The session is one class made of one mixin per concept: its steps (steps.py), the holds on
mutations (hold.py), the network guard (guard.py), the trace (trace.py), reading the page
(observe.py), scrubbing secrets (scrub.py) and bounded calls (deadline.py). This module holds
its state and its lifecycle: start, the start and end of a step, stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import shutil
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from playwright.async_api import Browser, BrowserContext, CDPSession, Error, Page

import runtime.tools.browser.launch as browser_launch
from runtime.errors import SandboxViolation
from runtime.tools.browser.chromium import shared_browser
from runtime.tools.browser.deadline import BrowserTimeout, Deadlines, NavigationHeld
from runtime.tools.browser.grant import BrowserGrant, host_allowed, refusal_reason
from runtime.tools.browser.guard import MAX_REDIRECTS, HeldEntry, NetworkGuard
from runtime.tools.browser.hold import Holding
from runtime.tools.browser.observe import Observing
from runtime.tools.browser.pending import HeldAction, HeldRequest, MutationPending
from runtime.tools.browser.scrub import Scrubbing
from runtime.tools.browser.steps import StepResult, Steps
from runtime.tools.browser.trace import Tracing

log = logging.getLogger("acp.browser")


class BrowserSession(Steps, Holding, NetworkGuard, Tracing, Observing, Scrubbing, Deadlines):
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
        self._pending: HeldAction | None = None
        self._mutations_allowed = False
        self._secrets: list[str] = []
        self._step_refusals: list[dict[str, Any]] = []
        self._stopped = False
        self._redirect_target: str | None = None
        self._held: list[HeldEntry] = []  # requests held unsent, in the order they came
        self._held_keys = 0  # the last key given to a held request
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
        return [entry.request for entry in self._held if entry.waiting]

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

    async def _close_context(self) -> None:
        if self._context is None:
            return
        # The page's network is cut first. While Playwright closes a context, a request the
        # page still sends (a script's fetch loop, a timer) no longer reaches the route
        # handler: it would go out unchecked, past the hold on mutations, to a granted host.
        # Before that, the pages' scripts are stopped, so that nothing new is sent at all.
        for page in list(self._context.pages):
            with contextlib.suppress(Error, BrowserTimeout):
                cdp = await self._bounded(
                    self._context.new_cdp_session(page), "freezing the page", held_ends=False,
                    timeout_s=2,
                )  # fmt: skip
                frozen = cdp.send("Emulation.setScriptExecutionDisabled", {"value": True})
                await self._bounded(frozen, "freezing the page", held_ends=False, timeout_s=2)
        with contextlib.suppress(Error, BrowserTimeout):
            offline = self._context.set_offline(True)
            await self._bounded(offline, "cutting the page's network", held_ends=False)
        try:
            closing = self._context.close()
            await self._bounded(closing, "closing the browser context", held_ends=False)
        except (Error, BrowserTimeout):
            log.warning("closing a browser context failed", exc_info=True)

    # --- a step's start and end ---------------------------------------------------------

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

    async def _let_page_act(self) -> None:
        """Give the page's own handlers a frame to run, then see what they tried to send."""
        with contextlib.suppress(Error, BrowserTimeout, NavigationHeld):
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
                with contextlib.suppress(Error, BrowserTimeout, NavigationHeld):
                    await self._bounded(self.page.goto("about:blank"), "leaving the page")
        if blocked is not None:
            await self._finish(action, target, False, f"refused: {blocked['reason']}")
            raise SandboxViolation(
                f"refused navigation to {blocked['url']}: {blocked['reason']}",
                hint="the job's browser grant lists the hosts it may visit",
            )

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
        except NavigationHeld:
            return
        except (Error, BrowserTimeout):
            pass
        for _ in range(MAX_REDIRECTS):
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
            except NavigationHeld:
                return
            except (Error, BrowserTimeout):
                pass
