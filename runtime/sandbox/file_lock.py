"""An exclusive lock on a file, taken without blocking the event loop and given up at a deadline:
one process at a time per mirror, per environment build.

It must never wait without a deadline, and never be held by a waiter that was cancelled (it
polls; a blocking flock in a thread could wake up later holding the lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from runtime.errors import AcpError


@contextlib.asynccontextmanager
async def file_lock(path: Path, wait_s: float, held_by: str) -> AsyncIterator[None]:
    """Hold path's lock for the block; AcpError naming `held_by` after wait_s seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AcpError(
                        f"{held_by} has held {path} for {wait_s:.0f} s",
                        hint="check for a hung acp process; the lock frees when it exits",
                    ) from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
