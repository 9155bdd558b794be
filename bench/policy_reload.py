"""Benchmark: reloading the policy, and deciding under a large one.

- Reload: the service's whole reload path (read the folder, parse with line numbers, validate,
  check references, run the examples, store the bundle, record the load and its event, swap)
  for the bundled policy and for a generated policy of 2,000 people and 500 targets. Budget
  200 ms. Baseline in the same run: yaml.safe_load of the same files alone.
- decide(): median per call on the large policy (budget 50 us) against the bundled one.

Medians of several runs (the machine is noisy, 2 cores); ratios.

Run:  .venv/bin/python bench/policy_reload.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def generate(folder: Path, people: int = 2000, targets: int = 500) -> None:
    """A policy the size of a large organisation: people in teams with roles, repos and
    databases, grants by glob and by name, approval rules per team, examples."""
    folder.mkdir(parents=True, exist_ok=True)
    teams = [f"team{n:02d}" for n in range(25)]
    lines = ["version: 1", "people:"]
    for n in range(people):
        team = teams[n % len(teams)]
        roles = [f"{team}-engineer"] + ([f"{team}-approver"] if n % 10 == 0 else [])
        lines += [
            f"  person{n:04d}:",
            f"    display_name: Person {n}",
            f"    email: person{n}@example.com",
            f"    team: {team}",
            f"    roles: [{', '.join(roles)}]",
            f"    identities: {{cli: [person{n:04d}], slack: [U{n:09d}]}}",
        ]
    (folder / "people.yml").write_text("\n".join(lines) + "\n")
    lines = ["roles:"]
    for team in teams:
        lines += [
            f"  {team}-engineer:",
            "    grants:",
            f"      - id: {team}.code",
            "        job_types: [code]",
            f"        targets: ['{team}-repo-*']",
            "        tools: [fs.read, fs.write, shell, git.diff]",
            f"      - id: {team}.sql",
            "        job_types: [sql]",
            f"        targets: ['{team}-db-*']",
            "        tools: [sql.query]",
            f"  {team}-approver:",
            "    grants: []",
        ]
    lines.append("approvals:")
    for team in teams:
        lines += [
            f"  - id: {team}.merge.review",
            "    job_types: [code]",
            f"    targets: ['{team}-repo-*']",
            "    actions: [merge]",
            f"    approvers: {{roles: [{team}-approver]}}",
            "    four_eyes: true",
            "    expires_after: 72h",
        ]
    lines += ["models:", "  routes:", "    - id: models.direct", "      model: direct"]
    expect_at = len(lines)
    lines += ["targets:", "  repos:"]
    half = targets // 2
    for n in range(half):
        team = teams[n % len(teams)]
        lines += [f"    {team}-repo-{n:03d}:", f"      url: /srv/git/{team}/{n}.git",
                  "      base_branch: main"]  # fmt: skip
    lines.append("  databases:")
    for n in range(targets - half):
        team = teams[n % len(teams)]
        lines += [f"    {team}-db-{n:03d}:", f"      dsn_env: DSN_{n:03d}"]
    rules, targets_part = lines[:expect_at], lines[expect_at:]
    rules.append("expect:")
    for n in range(0, 50):
        team = teams[n % len(teams)]
        rules += [
            f"  - as: person{n:04d}",
            f"    request: 'code {team}-repo-{n:03d}: run `make test`'",
            f"    approvals: [{team}.merge.review]",
        ]
    (folder / "rules.yml").write_text("\n".join(rules) + "\n")
    (folder / "targets.yml").write_text("\n".join(targets_part) + "\n")


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def reload_ms(folder: Path, home: Path, runs: int, *, every_file: bool) -> float:
    files = sorted(folder.glob("*.yml"))  # noqa: ASYNC240 - a bench, before any timing
    return await _reload_ms(folder, home, runs, files, every_file)


async def _reload_ms(
    folder: Path, home: Path, runs: int, files: list[Path], every_file: bool
) -> float:
    """The service's reload after an edit (to one file, or to every file), so every run loads,
    validates and swaps a new version."""
    from runtime.engine import Engine
    from runtime.settings import Settings

    settings = Settings(home=home, database_url=f"sqlite+aiosqlite:///{home}/acp.db",
                        policy_dir=folder)  # fmt: skip
    engine = await Engine.open(settings, upgrade=True)
    edited = files if every_file else [files[-1]]
    original = {path: path.read_text() for path in files}
    times = []
    try:
        for n in range(runs):
            for path in edited:
                path.write_text(original[path] + f"# edit {n} {every_file}\n")
            started = time.perf_counter()
            result = await engine.policies.reload("reload", "bench")
            times.append((time.perf_counter() - started) * 1000)
            assert result.changed and result.error is None, result.error
    finally:
        for path, text in original.items():
            path.write_text(text)
        await engine.close()
    return statistics.median(times)


def decide_us(policy, facts, runs: int, calls: int = 2000) -> float:
    from runtime.policy import decide

    per_run = []
    for _ in range(runs):
        started = time.perf_counter()
        for fact in facts * (calls // len(facts)):
            decide(policy, fact)
        per_run.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(per_run)


def main() -> None:
    import yaml

    from runtime.jobs import JobType
    from runtime.policy import RequestFacts, load_policy

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="acp-bench-policy-"))
    try:
        bundled = work / "bundled"
        shutil.copytree(ROOT / "policies", bundled)
        large = work / "large"
        generate(large)
        size = sum(p.stat().st_size for p in large.glob("*.yml"))
        print(f"large policy: 2000 people, 500 targets, {size / 1024:.0f} KiB of YAML")
        for name, folder in (("bundled", bundled), ("large", large)):
            raw = [p.read_text() for p in folder.glob("*.yml")]
            parse = median_ms(
                lambda raw=raw: [yaml.load(t, Loader=yaml.CSafeLoader) for t in raw], args.runs
            )
            from runtime.policy import load as load_module

            def cold(folder=folder):
                load_module._PARSED.clear()
                load_policy(folder)

            load = median_ms(cold, args.runs)
            for every in (False, True):
                home = work / f"home-{name}-{every}"
                home.mkdir()
                reload = asyncio.run(reload_ms(folder, home, args.runs, every_file=every))
                verdict = "within" if reload <= 200 else "OVER"
                edit = "every file edited" if every else "one file edited  "
                print(
                    f"{name:8} {edit}: reload {reload:7.1f} ms ({verdict} the 200 ms budget); "
                    f"bare YAML parse of all files (libyaml) {parse:6.1f} ms; "
                    f"reload/parse {reload / parse:4.1f}x"
                )
            print(f"{name:8} load_policy from cold (every file parsed) {load:6.1f} ms")
        small = load_policy(bundled).policy
        big = load_policy(large).policy
        small_facts = [
            RequestFacts(person="alice", job_type=JobType.code, target="demo"),
            RequestFacts(person="carol", job_type=JobType.sql, target="payments-replica"),
            RequestFacts(person="carol", job_type=JobType.code, target="demo"),
        ]
        big_facts = [
            RequestFacts(person="person0010", job_type=JobType.code, target="team10-repo-010"),
            RequestFacts(person="person0011", job_type=JobType.sql, target="team11-db-011"),
            RequestFacts(person="person0012", job_type=JobType.code, target="team01-repo-001"),
        ]
        small_us = decide_us(small, small_facts, args.runs)
        big_us = decide_us(big, big_facts, args.runs)
        verdict = "within" if big_us <= 50 else "OVER"
        print(
            f"decide() median: bundled {small_us:.1f} us, large {big_us:.1f} us ({verdict} the "
            f"50 us budget); large/bundled {big_us / small_us:.2f}x"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
