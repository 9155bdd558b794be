"""Benchmark: a code job's start with a cached environment against the same job without one.

Two repository targets on the same small bare repository, identical but for one having an
`environment:` (one setup command, built once before the timed part, so every timed job is a
cache hit: the key computed from the key files, meta.json read, the build mounted at /env).
Jobs `code T: run \\`true\\`` go through the real engine (`engine.submit`, then
`Worker.run_once` until the job settles, on SQLite), alternating targets. Timed: submission
to the first command finished (the job's start), and submission to settled. The job's calls
are wrapped in place to show where the time goes. Budget (DESIGN.md): with / without <= 1.1.
A script, not a test; it uses a temporary directory it removes and no network.

    python bench/env_cache.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runtime.kinds.code.environment as environment_module
import runtime.kinds.code.run as run_module
import runtime.sandbox.worktree as worktree_module
import runtime.tools.workspace as workspace_module
from runtime.engine import Engine
from runtime.jobs import TERMINAL_STATES, JobState
from runtime.sandbox.egress_route import close_shared_proxy
from runtime.settings import Settings
from runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 1.1
WITH, WITHOUT = "envy", "plain"
SETUP = (
    "mkdir -p /env/bin && printf '#!/bin/sh\\necho hi\\n' > /env/bin/hello && "
    "chmod +x /env/bin/hello"
)
FILES = {
    "README.md": "# bench\n\nA small repository for bench/env_cache.py.\n",
    "pyproject.toml": '[project]\nname = "bench"\nversion = "0.1.0"\n',
    "src/bench/__init__.py": "VALUE = 1\n",
    "src/bench/core.py": "def double(x):\n    return 2 * x\n",
    "tests/test_core.py": "from bench.core import double\n\n\ndef test():\n    assert double(2)\n",
}
# Where a job's time goes: (owner, attribute, label), each wrapped for the whole run.
PHASES = (
    (run_module, "fetched", "fetch mirror"),
    (worktree_module, "create_worktree", "create worktree"),
    (run_module, "sandbox_plan", "sandbox plan"),
    (environment_module, "ensure", "  environment.ensure"),
    (environment_module, "key_for", "    key_for"),
    (workspace_module, "open_route", "open egress route"),
    (workspace_module, "run_sandboxed", "run_sandboxed (command)"),
    (worktree_module, "commit_all", "commit_all"),
    (worktree_module, "remove_worktree", "remove worktree"),
)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_upstream(directory: Path) -> Path:
    work = directory / "src"
    for name, text in FILES.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(directory, "init", "-q", "-b", "main", str(work))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "bench fixture")
    bare = directory / "upstream.git"
    git(directory, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def write_policy(directory: Path, bare: Path) -> Path:
    policy = yaml.safe_load((ROOT / "policies" / "default.yml").read_text())
    targets = [WITH, WITHOUT]
    policy["roles"]["engineer"]["grants"].append(
        {
            "id": "engineer.code.bench",
            "job_types": ["code"],
            "targets": targets,
            "tools": ["fs.read", "fs.write", "shell", "git.diff"],
        }
    )
    policy["approvals"].append(
        {
            "id": "bench.review",
            "job_types": ["code"],
            "targets": targets,
            "actions": ["merge"],
            "approvers": {"roles": ["demo-approver"]},
        }
    )
    plain = {"url": str(bare), "base_branch": "main", "publish": "merge"}
    policy["targets"]["repos"][WITHOUT] = plain
    policy["targets"]["repos"][WITH] = {
        **plain,
        "environment": {"setup": [SETUP], "key_files": ["README.md"]},
    }
    folder = directory / "policy"
    folder.mkdir()
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


class Probe:
    """Wraps the job's calls in place; sums their time per label for the job being timed, and
    notes when the job's first command ended."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.first_command_end: float | None = None
        self._undo: list[Callable[[], None]] = []

    def reset(self) -> None:
        self.laps = {}
        self.first_command_end = None

    def _add(self, label: str, seconds: float) -> None:
        self.laps[label] = self.laps.get(label, 0.0) + seconds

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        probe = self
        if attr == "open_route":  # an async context manager: time its entry and exit

            @functools.wraps(original)
            def wrapper(*a: Any, **kw: Any) -> Any:
                return _TimedContext(original(*a, **kw), probe, label)
        else:

            @functools.wraps(original)
            async def wrapper(*a: Any, **kw: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*a, **kw)
                finally:
                    ended = time.perf_counter()
                    probe._add(label, ended - started)
                    if attr == "run_sandboxed" and probe.first_command_end is None:
                        probe.first_command_end = ended

        setattr(owner, attr, wrapper)
        self._undo.append(lambda: setattr(owner, attr, original))

    def unwrap(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


class _TimedContext:
    def __init__(self, inner: Any, probe: Probe, label: str) -> None:
        self.inner, self.probe, self.label = inner, probe, label

    async def __aenter__(self) -> Any:
        started = time.perf_counter()
        try:
            return await self.inner.__aenter__()
        finally:
            self.probe._add(self.label, time.perf_counter() - started)

    async def __aexit__(self, *exc: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self.inner.__aexit__(*exc)
        finally:
            self.probe._add(self.label, time.perf_counter() - started)


async def run_job(engine: Engine, target: str, command: str, probe: Probe) -> dict[str, float]:
    """One job, submit to settled; its start, its whole time and its laps, in seconds."""
    alice = engine.actor("cli", "alice")
    probe.reset()
    started = time.perf_counter()
    job = await engine.submit(f"code {target}: run `{command}`", alice)
    submitted = time.perf_counter()
    worker = Worker(engine)
    while True:
        done = await worker.run_once()
        if done is None:
            record = await engine.get(job.id)
            break
        if done.id == job.id and done.state in TERMINAL_STATES:
            record = done
            break
    settled = time.perf_counter()
    if record.state is not JobState.succeeded:
        raise SystemExit(f"job on {target} ended {record.state}: {record.result}")
    if probe.first_command_end is None:
        raise SystemExit(f"job on {target} ran no command")
    return {
        "start": probe.first_command_end - started,
        "settled": settled - started,
        "submit": submitted - started,
        **probe.laps,
    }


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


async def bench(directory: Path, rounds: int) -> int:
    bare = make_upstream(directory)
    env = {
        "ACP_HOME": str(directory / "home"),
        "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'acp.db'}",
        "ACP_POLICY_DIR": str(write_policy(directory, bare)),
    }
    engine = await Engine.open(Settings.from_env(env))
    probe = Probe()
    for owner, attr, label in PHASES:
        probe.wrap(owner, attr, label)
    try:
        # Untimed: the build (the one cache miss) and a warm job per target.
        built = time.perf_counter()
        await run_job(engine, WITH, 'test "$(hello)" = hi', probe)
        print(f"environment built by a first job in {time.perf_counter() - built:.2f} s")
        for _ in range(2):
            await run_job(engine, WITHOUT, "true", probe)
            await run_job(engine, WITH, "true", probe)

        samples: dict[str, list[dict[str, float]]] = {WITH: [], WITHOUT: []}
        for i in range(rounds):
            # Alternate who goes first so neither always inherits the other's warm state.
            order = (WITH, WITHOUT) if i % 2 == 0 else (WITHOUT, WITH)
            for target in order:
                samples[target].append(await run_job(engine, target, "true", probe))
            w, wo = samples[WITH][-1], samples[WITHOUT][-1]
            print(
                f"round {i + 1:2}: start with {ms(w['start'])}  without {ms(wo['start'])}"
                f"   settled with {ms(w['settled'])}  without {ms(wo['settled'])}",
                flush=True,
            )
    finally:
        probe.unwrap()
        await engine.close()
        await close_shared_proxy()

    def med(target: str, key: str) -> float:
        return statistics.median(s.get(key, 0.0) for s in samples[target])

    def p90(target: str, key: str) -> float:
        return percentile([s.get(key, 0.0) for s in samples[target]], 0.9)

    print(f"\nrounds: {rounds} jobs per target, `code T: run \\`true\\``, alternating")
    print(f"{'':<42}{'with env':>14}{'without':>14}{'ratio':>8}")
    rows = (
        ("submit -> first command done (median)", "start", med),
        ("submit -> first command done (p90)", "start", p90),
        ("submit -> settled (median)", "settled", med),
        ("submit -> settled (p90)", "settled", p90),
    )
    for label, key, stat in rows:
        a, b = stat(WITH, key), stat(WITHOUT, key)
        print(f"{label:<42}{ms(a):>14}{ms(b):>14}{a / b:8.3f}")
    print(
        f"\nwhere the time goes (median per job){'':<6}{'with env':>14}{'without':>14}{'added':>14}"
    )
    before = ("submit", "fetch mirror", "create worktree", "sandbox plan", "open egress route")
    for target in samples:
        for job in samples[target]:
            # The engine's and the worker's own part of the start: claiming, records, events.
            job["rest of the start"] = (
                job["start"]
                - sum(job.get(k, 0.0) for k in before)
                - job.get("run_sandboxed (command)", 0.0)
            )
    labels = ["submit", *(label for _, _, label in PHASES), "rest of the start"]
    for label in labels:
        a, b = med(WITH, label), med(WITHOUT, label)
        print(f"  {label:<40}{ms(a):>14}{ms(b):>14}{ms(a - b):>14}")
    # Each round's two jobs ran back to back, so the ratio within a round is less exposed to
    # the machine's load swinging between rounds than the ratio of the two medians.
    paired = statistics.median(
        w["start"] / wo["start"] for w, wo in zip(samples[WITH], samples[WITHOUT], strict=True)
    )
    ratio = med(WITH, "start") / med(WITHOUT, "start")
    settled_ratio = med(WITH, "settled") / med(WITHOUT, "settled")
    added = med(WITH, "start") - med(WITHOUT, "start")
    # What the environment adds by the laps alone (the plan: key, meta.json, its event), put
    # on the plain job's start; steadier than the ratio of medians when the load swings.
    plan = med(WITH, "sandbox plan") - med(WITHOUT, "sandbox plan")
    by_laps = (med(WITHOUT, "start") + plan) / med(WITHOUT, "start")
    verdict = "within" if ratio <= BUDGET else "OVER"
    print(
        f"\nratio with/without, job start: median {ratio:.3f} ({verdict} budget {BUDGET}), "
        f"median of per-round ratios {paired:.3f}, added {added * 1000:.1f} ms; "
        f"submit -> settled: {settled_ratio:.3f}"
    )
    print(
        f"from the laps: the sandbox plan adds {plan * 1000:.1f} ms to the plain job's "
        f"{med(WITHOUT, 'start') * 1000:.1f} ms start, ratio {by_laps:.3f}"
    )
    return 0 if ratio <= BUDGET else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="acp-bench-envcache-"))
    try:
        return asyncio.run(bench(directory, max(1, args.rounds)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
