"""Benchmark: the service mirror's fetch before a job, on a 10,000-file repository with one new
commit upstream, against a plain `git fetch` of the same refspec.

An upstream bare repository of 10,000 small files (100 directories x 100, made with `git
fast-import`); the service's mirrors (runtime/sandbox/mirror.py `ensure`, then one `fetch`)
and plain bare repositories for the baseline, one of each per URL form (file:// and a plain
path). Each round pushes one commit touching one file upstream, then times every arm's fetch
of it (`await mirror.fetch(mirror, url, "main")`, and `git fetch` run directly with
subprocess), then a fetch with nothing new. Budget (DESIGN.md): <= 300 ms at the median.
A script, not a test; it uses a temporary directory it removes and no network.

    python bench/mirror_fetch.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.sandbox import mirror as mirrors
from runtime.sandbox.worktree import _rev, _run_git

DIRS = 100
PER_DIR = 100
BUDGET_S = 0.300
BRANCH = "main"
REFSPEC = f"+refs/heads/{BRANCH}:refs/remotes/origin/{BRANCH}"
COMMITTER = "bench <bench@example.com>"


def git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, check=True, capture_output=True
    ).stdout.decode()


def _data(text: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(text), text)


def make_upstream(bare: Path) -> None:
    """A bare repository whose main has DIRS x PER_DIR small files, in one commit."""
    git("init", "-q", "--bare", "-b", BRANCH, str(bare))
    chunks = [
        b"commit refs/heads/%s\n" % BRANCH.encode(),
        b"committer %s %d +0000\n" % (COMMITTER.encode(), int(time.time())),
        _data(b"10,000 files"),
    ]
    for d in range(DIRS):
        for f in range(PER_DIR):
            chunks.append(b"M 100644 inline pkg%03d/mod%03d.py\n" % (d, f))
            chunks.append(_data(b"# module %d.%d\nVALUE = %d\n" % (d, f, d * PER_DIR + f)))
    git("fast-import", "--quiet", cwd=bare, stdin=b"".join(chunks))


def push_one_commit(bare: Path, n: int) -> str:
    """One new commit on main upstream, changing one file; returns it."""
    path = b"pkg%03d/mod%03d.py" % (n % DIRS, (n * 7) % PER_DIR)
    stream = b"".join(
        [
            b"commit refs/heads/%s\n" % BRANCH.encode(),
            b"committer %s %d +0000\n" % (COMMITTER.encode(), int(time.time())),
            _data(b"change %d" % n),
            b"from refs/heads/%s^0\n" % BRANCH.encode(),
            b"M 100644 inline %s\n" % path,
            _data(b"# changed in round %d\nVALUE = %d\n" % (n, -n)),
        ]
    )
    git("fast-import", "--quiet", cwd=bare, stdin=stream)
    return git("rev-parse", BRANCH, cwd=bare).strip()


def plain_fetch(repo: Path, url: str) -> str:
    """The baseline: the same fetch as the mirror's, as a plain git command, then the tip."""
    subprocess.run(
        ["git", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, REFSPEC],
        cwd=repo,
        check=True,
    )
    return git("rev-parse", f"refs/remotes/origin/{BRANCH}", cwd=repo).strip()


def plain_fetch_only(repo: Path, url: str, *, start_new_session: bool = False) -> None:
    """The baseline's fetch alone (no tip lookup), for the diagnostics."""
    subprocess.run(
        ["git", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, REFSPEC],
        cwd=repo,
        check=True,
        start_new_session=start_new_session,
    )


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


async def bench(directory: Path, rounds: int) -> int:
    upstream = directory / "upstream.git"
    started = time.perf_counter()
    make_upstream(upstream)
    print(
        f"upstream: {DIRS * PER_DIR} files in {DIRS} dirs, made in "
        f"{time.perf_counter() - started:.1f} s"
    )
    urls = {"file://": f"file://{upstream}", "path": str(upstream)}

    # arm -> (repository, url, is_ours)
    arms: dict[str, tuple[Path, str, bool]] = {}
    for form, url in urls.items():
        tag = "file" if form == "file://" else "path"
        mirror = await mirrors.ensure(directory / f"mirror-{tag}.git")
        began = time.perf_counter()
        await mirrors.fetch(mirror, url, BRANCH)
        print(f"mirror.fetch first (whole repo), {form:<7}: {ms(time.perf_counter() - began)}")
        arms[f"ours {form}"] = (mirror, url, True)
        plain = directory / f"plain-{tag}.git"
        git("init", "-q", "--bare", str(plain))
        git("config", "gc.auto", "0", cwd=plain)  # as the mirror has it
        began = time.perf_counter()
        plain_fetch(plain, url)
        print(f"git fetch first (whole repo),    {form:<7}: {ms(time.perf_counter() - began)}")
        arms[f"git fetch {form}"] = (plain, url, False)

    async def fetch(arm: str) -> tuple[float, str]:
        repo, url, ours = arms[arm]
        began = time.perf_counter()
        if ours:
            tip = await mirrors.fetch(repo, url, BRANCH)
        else:
            tip = plain_fetch(repo, url)
        return time.perf_counter() - began, tip

    # Untimed: one round so every arm starts warm.
    tip = push_one_commit(upstream, 0)
    for arm in arms:
        assert (await fetch(arm))[1] == tip

    new: dict[str, list[float]] = {arm: [] for arm in arms}
    same: dict[str, list[float]] = {arm: [] for arm in arms}
    # Diagnostics, nothing new, plain path: the mirror's fetch in its parts, and git's alone.
    parts: dict[str, list[float]] = {
        "git fetch, no rev-parse (subprocess.run)": [],
        "  the same, start_new_session=True": [],  # as _run_git starts git
        "git fetch, no rev-parse (mirror's _run_git)": [],
        "the tip's rev-parse (mirror's _rev)": [],
    }
    names = list(arms)
    for i in range(rounds):
        tip = push_one_commit(upstream, i + 1)
        # Rotate who goes first so none always inherits the others' cache state.
        order = names[i % len(names) :] + names[: i % len(names)]
        for arm in order:
            elapsed, got = await fetch(arm)
            assert got == tip, (arm, got, tip)
            new[arm].append(elapsed)
        for arm in order:
            elapsed, got = await fetch(arm)
            assert got == tip, (arm, got, tip)
            same[arm].append(elapsed)
        repo, url, _ = arms["git fetch path"]
        began = time.perf_counter()
        plain_fetch_only(repo, url)
        parts["git fetch, no rev-parse (subprocess.run)"].append(time.perf_counter() - began)
        began = time.perf_counter()
        plain_fetch_only(repo, url, start_new_session=True)
        parts["  the same, start_new_session=True"].append(time.perf_counter() - began)
        repo, url, _ = arms["ours path"]
        began = time.perf_counter()
        await _run_git(
            "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url, REFSPEC, cwd=repo
        )
        parts["git fetch, no rev-parse (mirror's _run_git)"].append(time.perf_counter() - began)
        began = time.perf_counter()
        await _rev(repo, f"refs/remotes/origin/{BRANCH}^{{commit}}")
        parts["the tip's rev-parse (mirror's _rev)"].append(time.perf_counter() - began)
        print(
            f"round {i + 1}: one new commit  "
            + "  ".join(f"{arm} {ms(new[arm][-1])}" for arm in names),
            flush=True,
        )

    print(f"\nrounds: {rounds}; one new commit (one file changed) upstream before each")
    print(f"{'':<34}{'median':>12}{'p90':>12}{'vs git fetch':>14}")
    for label, table in (("one new commit", new), ("nothing new", same)):
        for form in urls:
            ours, base = table[f"ours {form}"], table[f"git fetch {form}"]
            for arm, samples in ((f"ours {form}", ours), (f"git fetch {form}", base)):
                ratio = statistics.median(samples) / statistics.median(base)
                print(
                    f"{label + ', ' + arm:<34}{ms(statistics.median(samples)):>12}"
                    f"{ms(percentile(samples, 0.9)):>12}{ratio:14.3f}"
                )
    print("where the time goes, nothing new, path (median):")
    for label, samples in parts.items():
        print(f"  {label:<46}{ms(statistics.median(samples))}")

    verdicts = []
    for form in urls:
        samples = new[f"ours {form}"]
        median, p90 = statistics.median(samples), percentile(samples, 0.9)
        passed = median <= BUDGET_S
        verdicts.append(passed)
        print(
            f"mirror.fetch, one new commit, {form:<7}: median {ms(median)}  p90 {ms(p90)}  "
            f"{'PASS' if passed else 'FAIL'} (budget {BUDGET_S * 1000:.0f} ms at the median"
            f"{'' if p90 <= BUDGET_S else '; p90 over it'})"
        )
    return 0 if all(verdicts) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="acp-bench-mirror-"))
    try:
        return asyncio.run(bench(directory, max(1, args.rounds)))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
