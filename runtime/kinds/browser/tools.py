"""The browser's tools, declared once and called through the job's Toolbox (grant: browser):
`browser.step` for a step a person wrote, and the model's goto, click, fill, fill_secret,
select, wait_for and snapshot, each the same step in the grammar a person writes (steps.py).

A step that would mutate pauses the call (ToolPaused, holding what is about to be sent); the
guard's refusals (an off-list host, a forbidden scheme) are recorded by the session itself,
with the URL and the reason. Credentials are filled by name; a model never sees their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime.errors import AcpError, SandboxViolation
from runtime.kinds.browser.run import secrets_for
from runtime.kinds.browser.steps import BrowserStep, parse_step
from runtime.secrets import redact
from runtime.tools.base import ToolPaused, tool

if TYPE_CHECKING:
    from runtime.kinds.browser.run import Run
    from runtime.toolbox import ToolUse
    from runtime.tools.browser import HeldAction


class StepFailed(AcpError):
    """A step the page did not take (a missing element, a timeout), in words, redacted."""


@dataclass(frozen=True)
class Held:
    """What a paused step holds: the action about to be sent, the step, and whether it is the
    page's own request from before the step."""

    pending: HeldAction
    line: str
    before_step: bool


async def take(use: ToolUse, step: BrowserStep) -> str:
    """Take one step in the job's browser; the page as the model sees it afterwards."""
    from playwright.async_api import Error as PlaywrightError

    from runtime.tools.browser import MutationPending

    run: Run = use.workspace
    if step.secret is not None and step.secret not in run.secrets:
        run.secrets.update(secrets_for(run.site, use.job.spec.target or "", [step]))
    try:
        await run.take(step)
    except MutationPending as paused:
        await run.record()
        line = "wait 0" if paused.before_step else step.text()
        raise ToolPaused(Held(paused.pending, line, paused.before_step)) from None
    except SandboxViolation:
        await run.record()  # the guard's refusal, with the URL, on the record
        raise
    except (AcpError, PlaywrightError) as error:
        await run.record()
        message = error.message if isinstance(error, AcpError) else str(error).splitlines()[0]
        raise StepFailed(redact(message)) from None
    await run.record()
    run.took(step.text())
    return step.text()


async def _done(use: ToolUse, step: BrowserStep) -> str:
    await take(use, step)
    run: Run = use.workspace
    return f"done.\n{await run.session.observe()}"


@tool("browser.step", grant="browser", records_refusals=True)
async def browser_step(use: ToolUse, step: str) -> str:
    """Take one browser step as a person writes it (goto, click, fill, select, wait, expect,
    screenshot).

    Args:
        step: the step, e.g. `click #disable`
    """
    return await take(use, parse_step(step))


@tool("browser.goto", grant="browser", model_name="goto", records_refusals=True)
async def goto(use: ToolUse, url: str) -> str:
    """Open a URL or a path of the site.

    Args:
        url: path or http(s) URL
    """
    return await _done(use, BrowserStep(verb="goto", args=[url]))


@tool("browser.click", grant="browser", model_name="click", records_refusals=True)
async def click(use: ToolUse, selector: str) -> str:
    """Click an element.

    Args:
        selector: Playwright selector
    """
    return await _done(use, BrowserStep(verb="click", args=[selector]))


@tool("browser.fill", grant="browser", model_name="fill", records_refusals=True)
async def fill(use: ToolUse, selector: str, value: str) -> str:
    """Type a value into a field.

    Args:
        selector: Playwright selector
        value: the text
    """
    if value.startswith("secret:"):
        raise AcpError("credentials are filled with fill_secret, by name")
    return await _done(use, BrowserStep(verb="fill", args=[selector, value]))


@tool("browser.fill_secret", grant="browser", model_name="fill_secret", records_refusals=True)
async def fill_secret(use: ToolUse, selector: str, name: str) -> str:
    """Fill a credential the runtime holds.

    Args:
        selector: selector
        name: name
    """
    return await _done(use, BrowserStep(verb="fill", args=[selector, f"secret:{name}"]))


@tool("browser.select", grant="browser", model_name="select", records_refusals=True)
async def select(use: ToolUse, selector: str, value: str) -> str:
    """Choose an option.

    Args:
        selector: Playwright selector
        value: option value
    """
    return await _done(use, BrowserStep(verb="select", args=[selector, value]))


@tool("browser.wait_for", grant="browser", model_name="wait_for", records_refusals=True)
async def wait_for(use: ToolUse, selector: str) -> str:
    """Wait for an element to appear.

    Args:
        selector: Playwright selector
    """
    return await _done(use, BrowserStep(verb="wait", args=[selector]))


@tool("browser.snapshot", grant="browser", model_name="snapshot")
async def snapshot(use: ToolUse) -> str:
    """Read the current page again (its accessibility tree)."""
    run: Run = use.workspace
    return await run.session.observe()


BROWSER_TOOLS: tuple[Any, ...] = (
    browser_step, goto, click, fill, fill_secret, select, wait_for, snapshot,
)  # fmt: skip
