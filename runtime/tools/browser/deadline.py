"""The deadline of every Playwright call the session makes.

A call is bounded by the step timeout, and one that needs the page's scripts also ends, at
once, when the page's own navigation is held for approval: Chromium then runs none of that
page's scripts, so the call would wait forever. A held page ends the step as a pause, never
as a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from runtime.errors import AcpError

T = TypeVar("T")


class BrowserTimeout(AcpError):
    """Raised when a browser call does not finish within its deadline (the step timeout)."""


class NavigationHeld(Exception):
    """A call on the page gave up because the page's own navigation is held for approval:
    Chromium then runs none of that page's scripts, so the call would wait forever."""


class Deadlines:
    """The session's bounded calls (BrowserSession sets the step timeout and the event)."""

    _step_timeout_s: float
    _navigation_held: asyncio.Event  # set while a held request is a navigation

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
        for approval ends it at once with NavigationHeld (it could never finish)."""
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
            raise NavigationHeld(what)
        raise BrowserTimeout(
            f"the browser did not finish {what} within {limit:g} s",
            hint="the policy's limits.browser_step_timeout_s sets the deadline of each step",
        )
