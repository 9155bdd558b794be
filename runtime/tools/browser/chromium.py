"""The worker's one Chromium: which binary, with which flags, launched once per event loop
(in its network namespace, behind the egress proxy: launch.py) and shared by every job's
context.

Chromium is the system one (ACP_CHROMIUM, default /usr/bin/chromium): `playwright install`
is not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from playwright.async_api import Browser, Error, Playwright, async_playwright

import runtime.tools.browser.launch as browser_launch
from runtime.errors import AcpError

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
