"""The session's trace: Playwright tracing in parts, dark while a secret is in a page.

Recording stops before a secret enters the page and starts again once no page holds it
(Playwright writes what it records to disk as it goes, input values and request bodies
included). Each saved trace.zip joins the parts recorded since the last save, every entry
scrubbed; the live files are kept in the job's own directory (mode 0700), removed at stop().
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Error

from runtime.errors import AcpError
from runtime.tools.browser.deadline import BrowserTimeout, NavigationHeld
from runtime.tools.browser.scrub import REDACTED

# Read in a page while the trace is dark: its markup and what its fields hold (values are
# properties, not in the markup).
_PAGE_TEXT_JS = """() => document.documentElement.outerHTML + '\\n' + Array.from(
  document.querySelectorAll('input, textarea, select'), (el) => el.value).join('\\n')"""


class Tracing:
    """Tracing for BrowserSession (which holds the context, the patterns and the parts)."""

    trace_dir: Path
    _context: BrowserContext | None
    _live_dir: Path
    _trace_name: str
    _trace_state: Literal["off", "recording", "dark"]
    _trace_parts: list[Path]  # recorded spans not yet written to a trace.zip
    _parts_made: int
    _stopped: bool

    async def save_trace(self, name: str = "trace.zip") -> Path:
        """Write the trace recorded since the last save (secrets scrubbed); keep tracing."""
        assert self._context is not None
        path = self.trace_dir / name
        if self._trace_state == "recording":
            await self._close_part()
            await self._bounded(
                self._context.tracing.start_chunk(name=self._trace_name),
                "starting the trace",
                held_ends=False,
            )
        self._write_trace(path)
        return path

    def _make_live_dir(self) -> None:
        """The job's directory (0700) and, in it, the one Playwright writes live files to."""
        self.trace_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.trace_dir, 0o700)
        self._live_dir.mkdir(mode=0o700, exist_ok=True)
        # Playwright writes a trace's live files to <the browser's artifacts dir>/<name>.trace
        # (and .network, .stacks): the artifacts dir is per launch and the browser is shared,
        # so a name that climbs to the root and down again puts them in this job's directory.
        # (Content-addressed resources stay in the artifacts dir; nothing secret is recorded.)
        self._trace_name = "../" * 64 + str(self._live_dir.resolve() / "trace").lstrip("/")

    async def _start_tracing(self) -> None:
        assert self._context is not None
        await self._context.tracing.start(
            name=self._trace_name, screenshots=True, snapshots=True, sources=False
        )
        self._trace_state = "recording"

    async def _close_part(self) -> None:
        """End the current chunk of the trace into a part file of the job's directory."""
        assert self._context is not None
        self._parts_made += 1
        part = self._live_dir / f"part-{self._parts_made}.zip"
        await self._bounded(
            self._context.tracing.stop_chunk(path=part),
            "writing the trace",
            timeout_s=self._step_timeout_s + 10,
            held_ends=False,
        )
        self._trace_parts.append(part)

    async def _go_dark(self) -> None:
        """Stop recording before a secret enters the page. Playwright records input values in
        its DOM snapshots, call arguments and request bodies, and writes them to disk as it
        goes: what it never records cannot leak, from the trace or from its live files."""
        if self._trace_state != "recording":
            return
        assert self._context is not None
        self._trace_state = "dark"
        try:
            await self._close_part()
        finally:
            try:
                stopping = self._context.tracing.stop()
                await self._bounded(stopping, "pausing the trace", held_ends=False)
            except (Error, BrowserTimeout) as error:
                raise AcpError(
                    "the trace could not be paused before filling a secret, so it was not filled"
                ) from error

    async def _resume_trace_if_clear(self) -> None:
        """Record again once no page holds a filled secret and nothing is held unsent."""
        if self._trace_state != "dark" or self._stopped or self.held_requests:
            return
        if await self._secret_in_pages():
            return
        await self._bounded(self._start_tracing(), "starting the trace", held_ends=False)

    async def _secret_in_pages(self) -> bool:
        """Whether a filled secret is in any page: its URL, its markup or a field's value."""
        assert self._context is not None
        for page in self._context.pages:
            if self._holds_secret(page.url):
                return True
            for frame in page.frames:
                if urlsplit(frame.url).scheme not in ("http", "https"):
                    continue  # about:blank, a blocked frame's error page
                try:
                    text = await self._bounded(
                        frame.evaluate(_PAGE_TEXT_JS), "reading the page", timeout_s=3
                    )
                except (Error, BrowserTimeout, NavigationHeld):
                    return True  # cannot tell: stay dark
                if self._holds_secret(f"{frame.url}\n{text}"):
                    return True
        return False

    def _write_trace(self, path: Path) -> None:
        parts, self._trace_parts = self._trace_parts, []
        write_trace(parts, path, self._patterns)


def write_trace(parts: list[Path], path: Path, patterns: list[re.Pattern[bytes]]) -> None:
    """One trace.zip from the spans recorded between dark ones, every entry scrubbed. The
    first span keeps Playwright's names; later ones are prefixed (the viewer opens each
    <name>.trace in a zip with its <name>.network and <name>.stacks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if len(parts) == 1 and not patterns:
        parts[0].replace(path)
        return
    tmp = path.with_suffix(".zip.tmp")
    seen: set[str] = set()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        if not parts:
            out.writestr("trace.trace", unrecorded_trace())
        for number, part in enumerate(parts):
            with zipfile.ZipFile(part) as src:
                for info in src.infolist():
                    name = info.filename
                    if number and name in ("trace.trace", "trace.network", "trace.stacks"):
                        name = f"part{number + 1}-{name}"
                    if name in seen:
                        continue
                    seen.add(name)
                    data = src.read(info)
                    for pattern in patterns:
                        data = pattern.sub(REDACTED, data)
                    out.writestr(name, data)
    tmp.replace(path)
    for part in parts:
        part.unlink(missing_ok=True)


def unrecorded_trace() -> str:
    """A trace with nothing in it: every moment of its span had a secret in the page."""
    return json.dumps(
        {"version": 8, "type": "context-options", "origin": "library", "browserName": "chromium",
         "options": {}, "platform": sys.platform, "wallTime": int(time.time() * 1000),
         "monotonicTime": 0, "sdkLanguage": "python",
         "title": "not recorded: a filled secret was in the page"}
    ) + "\n"  # fmt: skip
