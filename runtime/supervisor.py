"""Running the worker as a child process of the service, and keeping it running.

The child dies with the service (PR_SET_PDEATHSIG), so a killed service never leaves a
worker behind; a worker that dies on its own is restarted, and its job is recovered. It runs
at a lower CPU priority than the service, whose front doors must answer within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.engine import Engine

log = logging.getLogger("acp.supervisor")
_PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 60.0
WORKER_NICENESS = 10
# The child registers under the identity its supervisor gave it, so the supervisor waits for
# that worker's own row, never for a count that a dead worker's fresh heartbeat still inflates.
WORKER_ID_ENV = "ACP_WORKER_ID"


def _prepare_child() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # Sandbox work yields the CPU to the front doors, whose acknowledgements are timed.
    os.nice(WORKER_NICENESS)


class WorkerProcess:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.worker_id: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self, engine: Engine) -> None:
        """Start the worker and wait until it, by its own identity, has registered."""
        self.worker_id = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            preexec_fn=_prepare_child,
            stdin=subprocess.DEVNULL,
            env={**os.environ, WORKER_ID_ENV: self.worker_id},
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await engine.worker_registered(self.worker_id):
            if self.proc.returncode is not None:
                raise RuntimeError(f"the worker exited at start with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.proc.kill()
                await self.proc.wait()
                raise RuntimeError(
                    f"the worker {self.worker_id} did not register within "
                    f"{READY_TIMEOUT_S:.0f} s; it was stopped"
                )
            await asyncio.sleep(0.05)

    async def supervise(self, engine: Engine, stop: asyncio.Event) -> None:
        """Restart the worker if it exits while the service runs (with a growing pause)."""
        while not stop.is_set():
            assert self.proc is not None
            waiter = asyncio.create_task(self.proc.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                waiter.cancel()
                return
            self.restarts += 1
            pause = min(30.0, 0.5 * 2**self.restarts)
            log.error("worker exited with %s; restarting in %.1fs", self.proc.returncode, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
            if not stop.is_set():
                await self.start(engine)

    async def stop(self, grace_s: float = 30.0) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
