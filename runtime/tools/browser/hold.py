"""What the session holds for approval, and how an approved action is taken.

A mutating click is not clicked and the page's non-GET requests are held unsent
(runtime.tools.browser.guard); either becomes the session's HeldAction, bound to the page as
it was. perform_pending takes exactly the approved one, if the page is still the approved
page (else PageChanged); discard_pending (a rejection) aborts everything held, unsent.

An approval of held requests releases exactly the entries it was shown, each by its own key
and once (HeldAction.held_keys), never a number of whatever is held: a page that goes on
sending the same request (a fetch loop) gets its later copies held again, for a decision of
their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json

from playwright.async_api import Error, Page

from runtime.errors import AcpError
from runtime.tools.browser.deadline import BrowserTimeout, NavigationHeld
from runtime.tools.browser.guard import HeldEntry
from runtime.tools.browser.pending import HeldAction, MutationPending, PageChanged
from runtime.tools.browser.steps import StepResult


class Holding:
    """Approval holds for BrowserSession (which holds _pending, _held and the page)."""

    page: Page
    steps: list[StepResult]
    mutations_sent: list[dict[str, object]]
    _pending: HeldAction | None
    _held: list[HeldEntry]
    _step_timeout_s: float
    _navigation_held: asyncio.Event
    _mutations_allowed: bool
    _accept_dialogs: bool
    _acted: bool

    def discard_pending(self) -> int:
        """Reject: the pending click is forgotten and every held request is aborted unsent."""
        self._pending = None
        dropped = 0
        for entry in self._held:
            if entry.waiting:
                entry.verdict.set_result("abort")
                dropped += 1
        self._held = []
        self._sync_navigation_held()
        return dropped

    def _sync_navigation_held(self) -> None:
        if any(e.request.resource_type == "document" and e.waiting for e in self._held):
            self._navigation_held.set()
        else:
            self._navigation_held.clear()

    async def check_held(
        self, action: str = "wait", target: str | None = None, *, before_step: bool = False
    ) -> None:
        """Pause on requests the page is holding to send (a step's effect, or the page's own)."""
        pending = await self._hold_pending(target)
        if pending is not None:
            raise MutationPending(pending, before_step=before_step)

    async def _hold_pending(self, target: str | None) -> HeldAction | None:
        entries = [entry for entry in self._held if entry.waiting]
        if not entries:
            return None
        held = [entry.request for entry in entries]
        listed = "; ".join(f"{h.method} {h.url} ({h.body_bytes} bytes)" for h in held)
        description = f"the page at {self.page.url} is about to send {listed}"
        # What is approved is the requests themselves (method, URL, body hash), not the DOM,
        # which a held navigation leaves unreadable.
        fingerprint = hashlib.sha256(
            json.dumps([self.page.url, [h.model_dump() for h in held]]).encode()
        ).hexdigest()
        self._pending = HeldAction(
            kind="request",
            index=len(self.steps),
            action="request",
            selector=target or "",
            description=description,
            url=self.page.url,
            screenshot=await self._capture() or b"",
            page_fingerprint=fingerprint,
            requests=held,
            held_keys=[entry.key for entry in entries],
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

    @property
    def pending(self) -> HeldAction | None:
        return self._pending

    async def perform_pending(self, pending: HeldAction) -> StepResult:
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
        except NavigationHeld:
            raise await self._held_mid_step("perform", pending.selector or None) from None

    async def _perform_click(self, pending: HeldAction) -> StepResult:
        if await self._fingerprint() != pending.page_fingerprint or self.page.url != pending.url:
            await self._finish("perform", pending.selector, False, "page changed since approval")
            raise PageChanged(
                f"the page changed since the approval of: {pending.description}",
                hint="a fresh checkpoint is needed",
            )
        # The approved click's own effect goes out (its form, its handlers' requests, its
        # "are you sure?") while the click lands; once it has, the window closes: what the
        # page sends afterwards (a timer, a fetch loop) is held again, for a decision of its own.
        self._mutations_allowed = True
        self._accept_dialogs = True
        self._acted = True
        try:
            locator = self.page.locator(pending.selector).first
            await self._bounded(locator.click(), f"clicking {pending.selector}")
            await self._let_page_act()
            await self._settle()
        finally:
            self._mutations_allowed = False
            self._accept_dialogs = False
        await self._check_landing("perform", pending.selector)
        await self._finish("perform", pending.selector, True, pending.description)
        await self._resume_trace_if_clear()
        return self.steps[-1]

    async def _release_held(self, pending: HeldAction) -> StepResult:
        """Send exactly the held requests that were approved, nothing that came after (what
        the page tried since stays held, for a decision of its own)."""
        waiting = {entry.key: entry for entry in self._held if entry.waiting}
        approved = [waiting.get(key) for key in pending.held_keys]
        if (
            not approved
            or len(approved) != len(pending.requests)
            or any(entry is None for entry in approved)
            or [entry.request for entry in approved if entry is not None] != pending.requests
        ):
            raise PageChanged(
                f"the requests held now are not the ones approved: {pending.description}",
                hint="a fresh checkpoint is needed",
            )
        released = [entry for entry in approved if entry is not None]
        for entry in released:
            entry.verdict.set_result("send")  # this entry, once: it leaves the list now
        self._held = [entry for entry in self._held if entry.waiting]
        self._sync_navigation_held()
        with contextlib.suppress(TimeoutError):  # each released request is answered
            await asyncio.wait_for(
                asyncio.gather(*(entry.finished.wait() for entry in released)),
                timeout=self._step_timeout_s,
            )
        self._acted = True
        await self._let_page_act()
        await self._settle()
        with contextlib.suppress(Error, BrowserTimeout, NavigationHeld):
            await self._bounded(
                self.page.wait_for_load_state("networkidle", timeout=2_000),
                "the page's network to settle",
                timeout_s=3,
            )
        selector = pending.selector or None
        return await self._after_action("perform", selector, pending.description)
