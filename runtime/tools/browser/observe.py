"""How the session sees the page: a screenshot (also while a navigation is held), the
accessibility tree a model reads, and the fingerprint an approval of a click is bound to."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib

from playwright.async_api import BrowserContext, CDPSession, Error, Page

from runtime.tools.browser.deadline import BrowserTimeout, NavigationHeld


class Observing:
    """Reading the page for BrowserSession."""

    page: Page
    screenshots: list[bytes]
    _context: BrowserContext | None
    _cdp: CDPSession | None
    _navigation_held: asyncio.Event
    _step_timeout_s: float

    async def _capture(self) -> bytes | None:
        """A PNG of the page. While a navigation is held Playwright's screenshot waits on the
        page's scripts (for fonts), so Chromium's compositor is asked directly; failing both,
        the last screenshot stands in (the page still shows what it showed then)."""
        if not self._navigation_held.is_set():
            with contextlib.suppress(Error, BrowserTimeout, NavigationHeld):
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
        except NavigationHeld:
            aria = "(the page is navigating: its request is held for approval)"
        except (Error, BrowserTimeout):
            pass
        text = self.scrub(f"url: {self.page.url}\ntitle: {title}\n{aria}")
        return text if len(text) <= limit else text[:limit] + "\n[truncated]"

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
