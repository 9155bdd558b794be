"""Live pages: one poller of the audit log for every open console page, fanned out as
server-sent events, so a page updates without reload and a hundred open pages cost one query.

An event says only that a job changed ("J-12 approved"); the page fetches what it shows
through the same handlers as a reload, so nothing reaches a browser by this path that the
page itself would not show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from aiohttp import web

from runtime.store import audit_store

log = logging.getLogger("acp.console")

POLL_S = 0.1  # an approval shows on another open page within a poll and a fetch
KEEPALIVE_S = 15.0
MIN_GAP_S = 0.2  # a page re-fetches at most five times a second, however busy its job
QUEUE = 256


@dataclass(eq=False)
class _Listener:
    job: int | None
    queue: asyncio.Queue[dict | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))


class LiveHub:
    """Follows the audit log while anyone listens; `close()` ends every stream."""

    def __init__(self, db) -> None:
        self.db = db
        self._listeners: set[_Listener] = set()
        self._task: asyncio.Task | None = None
        self._closed = False

    async def _poll(self) -> None:
        after = await audit_store.last_seq(self.db)
        while self._listeners:
            try:
                rows = await audit_store.job_events_after(self.db, after, limit=500)
            except Exception:  # a database hiccup: the pages keep their stream
                log.exception("the console's live poll failed; trying again")
                await asyncio.sleep(1.0)
                continue
            for seq, job_id, kind, _actor, state in rows:
                after = seq
                change = {"seq": seq, "job": f"J-{job_id}", "kind": kind, "state": state}
                for listener in list(self._listeners):
                    if listener.job in (None, job_id):
                        with contextlib.suppress(asyncio.QueueFull):  # it reloads anyway
                            listener.queue.put_nowait(change)
            if len(rows) < 500:
                await asyncio.sleep(POLL_S)
        self._task = None

    def _subscribe(self, job: int | None) -> _Listener:
        listener = _Listener(job)
        self._listeners.add(listener)
        if self._task is None:
            self._task = asyncio.create_task(self._poll())
        return listener

    async def stream(self, request: web.Request, job: int | None) -> web.StreamResponse:
        """The SSE response: `event: change` for each change (of `job`, or of any job)."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        })  # fmt: skip
        if self._closed:
            response.set_status(503)
            await response.prepare(request)
            return response
        await response.prepare(request)
        listener = self._subscribe(job)
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    change = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if change is None:  # the console is stopping
                    break
                # A burst (a job's steps) is one `change`, the latest, at most one per
                # MIN_GAP_S and never the first dropped; each move of a state is a `state` too.
                batch = [change]
                while not listener.queue.empty():
                    batch.append(listener.queue.get_nowait())
                if None in batch:
                    break
                out = [self._event("state", c) for c in batch if c["state"]]
                out.append(self._event("change", batch[-1]))
                await response.write("".join(out).encode())
                await asyncio.sleep(MIN_GAP_S)
        except ConnectionResetError:  # the page was closed
            pass
        finally:
            self._listeners.discard(listener)
        return response

    @staticmethod
    def _event(name: str, change: dict) -> str:
        return f"id: {change['seq']}\nevent: {name}\ndata: {json.dumps(change)}\n\n"

    async def close(self) -> None:
        self._closed = True
        for listener in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
