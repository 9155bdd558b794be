"""How the worker's Chromium is started: in a network namespace, behind the egress proxy.

Chromium runs in a network namespace of its own (runtime.sandbox.netns) whose only way out
is a forwarder to an egress proxy (runtime.sandbox.egress) that the runtime holds outside.
Each job's context has a door of its own at that proxy (its proxy setting), so the proxy
applies that job's grant to whatever Chromium sends for it (a worker's fetch, a beacon, a
prefetch, WebRTC over TCP) and to the requests Playwright's driver makes for the route
handler, the first layer, which still decides first.

It must never start the browser without the namespace unless the operator turned it off
(ACP_BROWSER_NETNS=off, warned about at every launch), never open a context that is not
bound to a grant at the proxy, and never leave a context's login valid after it closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Error, Playwright

from runtime.errors import SandboxUnavailable
from runtime.sandbox import netns
from runtime.sandbox.egress import EgressProxy, Refusal

log = logging.getLogger(__name__)

NETNS_ENV = "ACP_BROWSER_NETNS"


@dataclass
class Egress:
    """What stands between one launched browser and the network."""

    proxy: EgressProxy
    directory: Path
    namespace: str  # "root" or "user": how the namespace was made; "off": no namespace
    warning: str = ""


_egress: weakref.WeakKeyDictionary[Browser, Egress] = weakref.WeakKeyDictionary()


async def launch(playwright: Playwright, executable: str | None, args: Sequence[str]) -> Browser:
    """Start Chromium in its own network namespace, behind a fresh egress proxy."""
    directory = Path(tempfile.mkdtemp(prefix="acp-browser-"))
    proxy = EgressProxy()
    try:
        await proxy.start(unix_path=directory / "egress.sock")
        assert proxy.port is not None and proxy.unix_path is not None
        program = executable or playwright.chromium.executable_path
        warning = ""
        if os.environ.get(NETNS_ENV, "").lower() in ("off", "0", "no"):
            warning = (
                f"{NETNS_ENV}=off: Chromium runs WITHOUT a network namespace; only its proxy "
                "settings and the route handler keep a page inside its grant"
            )
            log.warning("browser launch: %s", warning)
        else:
            program = str(
                netns.wrapper_script(
                    program, port=proxy.port, proxy_socket=proxy.unix_path, directory=directory
                )
            )
        try:
            browser = await playwright.chromium.launch(
                executable_path=program,
                headless=True,
                args=list(args),
                # A context opened without a door of its own still goes to the proxy, to
                # the door that is nobody's, which refuses everything.
                proxy={"server": proxy.server},
            )
        except Error as e:
            said = re.search(r"acp netns: [^\n]*", str(e))
            if said is None:
                raise
            raise SandboxUnavailable(
                f"browser jobs need a network namespace for Chromium: {said.group(0)}",
                hint="run the worker as root, or allow unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1); ACP_BROWSER_NETNS=off runs "
                "Chromium without one (the route handler and the proxy settings still apply, "
                "nothing below them)",
            ) from None
    except BaseException:
        await proxy.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    report = directory / "namespace"
    namespace = report.read_text() if report.exists() else "off"
    _egress[browser] = Egress(proxy, directory, namespace, warning)
    return browser


def egress_of(browser: Browser) -> Egress | None:
    return _egress.get(browser)


async def release(browser: Browser) -> None:
    """Close the browser's egress proxy and its directory (after the browser closed)."""
    egress = _egress.pop(browser, None)
    if egress is None:
        return
    await egress.proxy.close()
    shutil.rmtree(egress.directory, ignore_errors=True)


def discard(browser: Browser) -> None:
    """Forget a browser whose event loop is gone: its proxy went with the loop."""
    egress = _egress.pop(browser, None)
    if egress is not None:
        shutil.rmtree(egress.directory, ignore_errors=True)


async def new_context(
    browser: Browser,
    allows: Callable[[str], bool],
    on_refusal: Callable[..., Any],
    **options: Any,
) -> BrowserContext:
    """A context whose every request is checked at the proxy with allows(host).

    on_refusal(url, reason, "egress", ...) is called for each request the proxy refuses
    (the ones that did not pass through the route handler)."""
    egress = _egress.get(browser)
    if egress is None:
        raise SandboxUnavailable(
            "this browser was not started behind the egress proxy",
            hint="use runtime.tools.browser.launch_browser or shared_browser",
        )

    def rule(host: str, port: int) -> str | None:
        return None if allows(host) else f"host {host!r} is not in the job's browser grant"

    def refused(refusal: Refusal) -> None:
        url = refusal.target if "://" in refusal.target else f"//{refusal.target}"
        on_refusal(url, f"{refusal.reason} (at the egress proxy)", "egress", method=refusal.method)

    door = await egress.proxy.admit("browser context", rule, refused)
    try:
        context = await browser.new_context(
            proxy={"server": door.server, "username": door.username, "password": door.password},
            **options,
        )
    except BaseException:
        egress.proxy.revoke(door)
        raise
    context.once("close", lambda _: egress.proxy.revoke(door))
    return context


async def close(browser: Browser) -> None:
    """Close a browser started by launch(), then its proxy."""
    with contextlib.suppress(Exception):
        await browser.close()
    await release(browser)


__all__ = [
    "NETNS_ENV",
    "Egress",
    "close",
    "discard",
    "egress_of",
    "launch",
    "new_context",
    "release",
]
