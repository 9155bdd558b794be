"""Benchmark: `acp show J-1` through the service API (Unix socket) vs the direct database read
`acp` did before the API (open the engine, read the job and its events, render).

Both as whole processes (what a person waits for; budget: acp start-up < 0.5 s) and as one
call inside a process (the API round trip itself vs a database read). Medians; ratios.

Run:  .venv/bin/python bench/api_roundtrip.py [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIRECT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from runtime.engine import Engine
from bot.cli.render import render_job
async def main():
    engine = await Engine.open()
    job = await engine.get(1)
    await engine.events(job.id)
    print(render_job(engine, job, with_diff=False))
    await engine.close()
asyncio.run(main())
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {done.stderr[-500:]}")
    return took


async def in_process(env: dict[str, str], runs: int) -> tuple[float, float]:
    os.environ.update(env)
    from bot.cli.client import ServiceClient
    from runtime.engine import Engine

    client = ServiceClient(env)
    engine = await Engine.open()
    api, db = [], []
    for _ in range(runs):
        started = time.perf_counter()
        await client.get(1)
        api.append(time.perf_counter() - started)
        started = time.perf_counter()
        await engine.get(1)
        db.append(time.perf_counter() - started)
    await engine.close()
    return statistics.median(api), statistics.median(db)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
        env.update(ACP_HOME=f"{tmp}/home", ACP_API_LISTEN="", ACP_CONSOLE_LISTEN="")
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True")
        log = Path(tmp) / "serve.log"
        with open(log, "w") as out:
            service = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], env=env,
                                       cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "ready" not in log.read_text():
                if time.monotonic() > deadline or service.poll() is not None:
                    raise SystemExit(log.read_text())
                time.sleep(0.1)
            acp = [sys.executable, "-m", "bot.cli"]
            subprocess.run([*acp, "submit", "--as", "alice", "code demo: run `true`"], env=env,
                           cwd=ROOT, capture_output=True, check=True)  # fmt: skip
            direct = [sys.executable, "-c", DIRECT.format(root=str(ROOT))]
            socket_runs, direct_runs = [], []
            for i in range(args.runs):
                pair = [(socket_runs, [*acp, "show", "J-1"]), (direct_runs, direct)]
                for bucket, cmd in pair if i % 2 == 0 else pair[::-1]:
                    bucket.append(timed(cmd, env))
            s, d = statistics.median(socket_runs), statistics.median(direct_runs)
            print(f"`acp show J-1` as a process, median of {args.runs}: over the socket "
                  f"{s * 1000:.0f} ms, direct database read {d * 1000:.0f} ms "
                  f"(ratio {s / d:.2f}; budget < 500 ms)")  # fmt: skip
            api, db = asyncio.run(in_process(env, 200))
            print(f"one job read in a process, median of 200: API round trip {api * 1000:.2f} ms,"
                  f" database read {db * 1000:.2f} ms (ratio {api / db:.2f})")  # fmt: skip
        finally:
            service.terminate()
            service.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
