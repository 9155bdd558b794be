"""The console under test: a real `acp serve` (its console on a free port), real Chromium
through Playwright, and the pages' screenshots kept under test-output/console/ (CI keeps the
folder as an artifact; the README shows two of them)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from runtime.tools.browser.chromium import CHROMIUM_ARGS, browser_executable
from tests.support.acp_process import ROOT, Service, acp, service_env

SHOTS = ROOT / "test-output" / "console"
BUNDLED_POLICY = ROOT / "policies"


class ConsoleRig:
    """A service with its console, and a browser to use it with."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.env = service_env(tmp, **{"ACP_POLICY_DIR": str(BUNDLED_POLICY), **env})
        self.service = Service(self.env)
        self.url = ""
        self._playwright = None
        self.browser: Browser | None = None

    async def start(self) -> ConsoleRig:
        await asyncio.to_thread(self.service.start)
        found = re.search(r"^  console  : (http://\S+)", self.service.output(), re.M)
        assert found, self.service.output()
        self.url = found.group(1)
        self._playwright = await async_playwright().start()
        self.browser = await self._playwright.chromium.launch(
            executable_path=browser_executable(self._playwright), args=CHROMIUM_ARGS
        )
        return self

    async def stop(self) -> None:
        if self.browser is not None:
            await self.browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        await asyncio.to_thread(self.service.stop)

    def acp(self, *args: str) -> str:
        done = acp(self.env, *args)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    def acp_result(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`acp` run as a person would, its exit code and messages to look at."""
        return acp(self.env, *args)

    async def wait_state(self, job: str, states: set[str], timeout: float = 90) -> str:
        import json

        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            done = await asyncio.to_thread(acp, self.env, "show", job, "--json")
            if done.returncode == 0:
                state = json.loads(done.stdout)["state"]
                if state in states:
                    return state
            await asyncio.sleep(0.3)
        raise AssertionError(f"{job} stayed {state!r}, not {states}")

    async def page_for(self, person: str | None) -> tuple[BrowserContext, Page]:
        """A fresh browser profile, signed in as `person` with the local demo sign-in."""
        assert self.browser is not None
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        if person is not None:
            await page.goto(f"{self.url}/signin")
            await page.select_option("select[name=person]", person)
            await page.click("form.demo button[type=submit]")
            await page.wait_for_url(f"{self.url}/")
        return context, page


async def shot(page: Page, name: str) -> Path:
    """Keep a screenshot of the page as it is now (the whole page)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def job_id_of(output: str) -> str:
    found = re.search(r"\bJ-\d+\b", output)
    assert found, output
    return found.group(0)
