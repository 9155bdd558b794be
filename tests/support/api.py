"""The service API for tests that drive an engine in-process and `acp` as a subprocess.

`api_for(engine)`: the API in the test's own event loop, over its engine (for tests that run
`acp` without blocking the loop). `ApiThread(env)`: the API on its own engine in a thread with
its own loop, for tests that call `acp` synchronously. Either way `acp` reaches it on the Unix
socket, as it reaches `acp serve`.
"""

from __future__ import annotations

import asyncio
import threading
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


class ApiThread:
    """`with ApiThread(env):` the service API answers on env's socket until the block ends."""

    def __init__(self, env: dict[str, str]) -> None:
        # Tests run side by side: no fixed HTTP port unless the test asks for one.
        self.env = {**env, "ACP_API_LISTEN": env.get("ACP_API_LISTEN", "")}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="acp-api", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from bot.api.server import start_api
        from runtime.engine import Engine
        from runtime.settings import Settings

        try:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            engine = await Engine.open(Settings.from_env(self.env))
            listeners = await start_api(engine)
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await listeners.close()
            await engine.close()

    def __enter__(self) -> ApiThread:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
