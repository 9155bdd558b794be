"""Benchmark: job workspace ready (worktree + first sandboxed command) against raw git + bwrap.

Budget (DESIGN.md): ours / baseline <= 1.2 on the same repo. A script, not a test; it only
writes under --workdir and removes each round's worktrees outside the timed part.

    python bench/workspace_ready.py [--rounds 7] [--workdir /tmp/acp-bench-workspace]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.sandbox.bwrap import bwrap_args, run_sandboxed
from runtime.sandbox.worktree import create_worktree

FILES = 10_000
DIRS = 200
BUDGET = 1.2


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def build_repo(repo: Path) -> None:
    """A repo of FILES small files in DIRS directories, built once and reused."""
    if (repo / ".git").exists() and git(repo, "rev-parse", "--verify", "main"):
        return
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    per_dir = FILES // DIRS
    for d in range(DIRS):
        folder = repo / f"pkg{d:03d}"
        folder.mkdir()
        for f in range(per_dir):
            (folder / f"mod{f:03d}.py").write_text(f"# module {d}.{f}\nVALUE = {d * per_dir + f}\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "bench fixture")


def cleanup(repo: Path, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    git(repo, "worktree", "prune")
    branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    for branch in branches.splitlines():
        if branch != "main":
            git(repo, "branch", "-q", "-D", branch)


def baseline_round(repo: Path, root: Path, name: str) -> float:
    wt = root / name
    common = repo / ".git"
    started = time.perf_counter()
    subprocess.run(
        ["git", "worktree", "add", "-q", "-b", f"base/{name}", str(wt), "main"],
        cwd=repo,
        check=True,
    )
    subprocess.run([*bwrap_args(wt, ro_paths=[common]), "true"], check=True)
    return time.perf_counter() - started


async def ours_round(repo: Path, root: Path, name: str) -> float:
    started = time.perf_counter()
    wt = await create_worktree(repo, "main", name, root)
    result = await run_sandboxed("true", wt.path, ro_paths=[wt.git_common_dir])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.stderr
    return elapsed


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/acp-bench-workspace"))
    args = parser.parse_args()

    repo = args.workdir / "repo"
    root = args.workdir / "worktrees"
    build_started = time.perf_counter()
    build_repo(repo)
    print(
        f"repo: {repo} ({FILES} files in {DIRS} dirs), ready in "
        f"{time.perf_counter() - build_started:.1f} s"
    )
    cleanup(repo, root)

    # One untimed round each, so both start with a warm page cache.
    baseline_round(repo, root, "warm-base")
    await ours_round(repo, root, "warm-ours")
    cleanup(repo, root)

    baseline: list[float] = []
    ours: list[float] = []
    for i in range(args.rounds):
        # Alternate who goes first so neither always inherits the other's cache state.
        order = ("base", "ours") if i % 2 == 0 else ("ours", "base")
        for who in order:
            if who == "base":
                baseline.append(baseline_round(repo, root, f"B-{i}"))
            else:
                ours.append(await ours_round(repo, root, f"J-{i}"))
        cleanup(repo, root)

    def ms(x: float) -> str:
        return f"{x * 1000:8.1f} ms"

    print(f"rounds: {args.rounds}")
    print(
        f"baseline (git worktree add + bwrap true): median {ms(statistics.median(baseline))}"
        f"  p90 {ms(p90(baseline))}"
    )
    print(
        f"ours (create_worktree + run_sandboxed):   median {ms(statistics.median(ours))}"
        f"  p90 {ms(p90(ours))}"
    )
    ratio = statistics.median(ours) / statistics.median(baseline)
    ratio_p90 = p90(ours) / p90(baseline)
    verdict = "within" if ratio <= BUDGET else "OVER"
    print(
        f"ratio ours/baseline: median {ratio:.3f}  p90 {ratio_p90:.3f}  ({verdict} budget {BUDGET})"
    )
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
