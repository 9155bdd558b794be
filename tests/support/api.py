"""The service API in the test's own event loop, over the test's engine: `acp` subprocesses
(run without blocking the loop) reach it on the Unix socket, as they reach `acp serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def api_for(engine: Any) -> AsyncIterator[Any]:
    from bot.api.server import start_api

    listeners = await start_api(engine)
    try:
        yield listeners
    finally:
        await listeners.close()
