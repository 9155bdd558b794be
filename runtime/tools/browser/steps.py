"""The steps a job takes in its browser: goto, click, fill, fill_secret, select, wait,
expect, screenshot. Each one begins by deciding what the page sent on its own, ends with a
screenshot and a StepResult, and pauses (MutationPending) instead of mutating.

A click on a control whose role, text or form means a mutation is not clicked: it is held
for approval (runtime.tools.browser.hold), with the element outlined in the screenshot.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import urljoin

from playwright.async_api import Error, Page, expect
from pydantic import BaseModel

from runtime.errors import AcpError, SandboxViolation
from runtime.tools.browser.deadline import BrowserTimeout, NavigationHeld
from runtime.tools.browser.grant import BrowserGrant, refusal_reason
from runtime.tools.browser.pending import HeldAction, MutationPending
from runtime.tools.browser.scrub import secret_pattern

MUTATING_WORDS = re.compile(
    r"\b(submit|delete|remove|purchase|buy|pay|save|confirm|disable|update)\b", re.IGNORECASE
)


class StepResult(BaseModel):
    index: int
    action: str
    target: str | None
    url: str
    screenshot_sha256: str | None
    ok: bool
    detail: str = ""


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


class Steps:
    """The step methods of BrowserSession."""

    grant: BrowserGrant
    steps: list[StepResult]
    screenshots: list[bytes]
    page: Page
    _pending: HeldAction | None
    _secrets: list[str]
    _patterns: list[re.Pattern[bytes]]
    _step_refusals: list[dict]
    _step_timeout_ms: float
    _step_timeout_s: float
    _acted: bool

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
        except NavigationHeld:
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
        except NavigationHeld:
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
            self._pending = HeldAction(
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

    async def fill(self, selector: str, value: str) -> StepResult:
        await self._begin()
        try:
            await self._bounded(
                self.page.locator(selector).first.fill(value), f"filling {selector}"
            )
        except NavigationHeld:  # not filled for sure: filled again after the decision
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
        except NavigationHeld:
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
        except NavigationHeld:
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
        except NavigationHeld:  # the page's own navigation, held: the wait comes after
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
        except NavigationHeld:  # the page is navigating on its own: asserted after
            raise await self._held_mid_step("expect", selector) from None
        except (AssertionError, Error, BrowserTimeout):
            found = None
            with contextlib.suppress(Error, BrowserTimeout, NavigationHeld):
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

    async def screenshot(self) -> bytes:
        await self._begin()
        await self._finish("screenshot", None, True)
        return self.screenshots[-1] if self.screenshots else b""
