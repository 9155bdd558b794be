"""The browsers this worker holds open: paused jobs' sessions, kept until their approval is
decided, and the sessions a pass opened, closed when it ends.

A pass over a job never leaves a browser context open behind it: unless the job paused on it
(then it is in _live, closed when the approval is decided), it is closed when the pass ends,
also when the pass fails or is cancelled (the worker's deadline). Importing this module
imports no Playwright: the worker asks it whether anything is open on every idle poll.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from runtime.jobs import JobState

if TYPE_CHECKING:
    from runtime.kinds.base import Housekeeping
    from runtime.tools.browser import BrowserSession, HeldAction

log = logging.getLogger("acp.browser")
T = TypeVar("T")


@dataclass
class Live:
    """A paused job's browser, kept open in this worker until the approval is decided."""

    session: BrowserSession
    pending: HeldAction
    messages: list[dict[str, Any]] | None = None  # model mode: the conversation so far
    call_id: str | None = None  # model mode: the tool call that paused


_live: dict[int, Live] = {}
# The sessions a pass over a job opened or took over (see closing).
_opened: contextvars.ContextVar[list[BrowserSession]] = contextvars.ContextVar("opened")


def live_jobs() -> list[int]:
    """The jobs whose paused browser this worker holds."""
    return list(_live)


def keep(job_id: int, live: Live) -> None:
    """The job paused on this session: it stays open past the pass."""
    _live[job_id] = live


def take(job_id: int) -> Live | None:
    """The paused session of a job whose approval came, now owned by this pass."""
    live = _live.pop(job_id, None)
    if live is not None:
        _opened.get().append(live.session)
    return live


def opened(session: BrowserSession) -> None:
    """A session this pass started: closed when the pass ends, unless the job pauses on it."""
    found = _opened.get(None)
    if found is not None:
        found.append(session)


async def closing(job_id: int, work: Awaitable[T]) -> T:
    """Run one pass over a job; then close every session it opened or took over, except the
    one the job paused on, whatever ended the pass (a failure, a cancellation)."""
    sessions: list[BrowserSession] = []
    token = _opened.set(sessions)
    try:
        return await work
    except BaseException:
        live = _live.get(job_id)
        if live is not None and live.session in sessions:  # paused, but the pass did not end well
            del _live[job_id]
        raise
    finally:
        _opened.reset(token)
        live = _live.get(job_id)
        for session in sessions:
            if live is None or session is not live.session:
                await session.close()


async def sweep(house: Housekeeping) -> int:
    """Close the browsers of paused jobs that were rejected, expired or cancelled meanwhile."""
    closed = 0
    for job_id in list(_live):
        job = await house.job(job_id)
        if job.state in (JobState.awaiting_approval, JobState.approved, JobState.running):
            continue
        live = _live.pop(job_id)
        dropped = live.session.discard_pending()
        await live.session.stop()
        await house.recorder(job_id, "runtime").log(
            "browser.session_closed",
            {"reason": job.state.value, "held_requests_dropped": dropped, "sent": False},
        )
        closed += 1
    return closed


async def close_all() -> None:
    """The worker is stopping: its paused browsers go (an approval later starts afresh)."""
    from playwright.async_api import Error as PlaywrightError

    for job_id in list(_live):
        live = _live.pop(job_id)
        live.session.discard_pending()
        try:
            await live.session.stop()
        except PlaywrightError:
            log.warning("closing the browser of job %s failed", job_id, exc_info=True)
