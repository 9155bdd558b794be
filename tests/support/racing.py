"""Processes started together at one barrier, for what several services do at the same moment
(first start in one ACP_HOME): each runs `target(*args)` and the results come back."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def _run(target: Callable[..., Any], args: tuple[Any, ...], barrier: Any, out: Any) -> None:
    barrier.wait()
    out.put(target(*args))


def race(target: Callable[..., Any], *args: Any, processes: int = 8) -> list[Any]:
    """What each of `processes` forked processes returned from `target(*args)`, all of them
    released at once; asserts every one exited cleanly."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_run, args=(target, args, barrier, out)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return results
