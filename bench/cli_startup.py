"""Benchmark: wall time of `acp` commands that need no model, against a bare interpreter.

Budget (shared/DESIGN.md, "Performance budgets"): `acp` commands that need no model start in
< 0.5 s (import litellm lazily).

Measures, in fresh processes, with ACP_HOME set to a temp dir whose SQLite database already
holds --jobs jobs (default 100; J-1 is submitted through `acp submit`, the rest in-process):
  acp --help, acp schema, acp jobs, acp show J-1
Baselines in the same run, same interpreter:  python -c pass  and
  python -c "import sqlalchemy, pydantic"
Runs are interleaved round-robin so machine noise hits every command alike. Then prints where
the time goes: `python -X importtime` top imports for `acp jobs`, and an in-process phase split
(imports / load policy / open database + schema revision check / query).

Run:  .venv/bin/python bench/cli_startup.py [--rounds 10] [--jobs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
ACP = str(VENV_BIN / "acp")
BUDGET_S = 0.5
LIBS = "import sqlalchemy, pydantic"


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    if len(s) < 2:
        return s[0]
    k = (len(s) - 1) * 0.9
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def make_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACP_")}
    env["ACP_HOME"] = str(home)
    env["ACP_USER"] = "alice"
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def run(cmd: list[str], env: dict[str, str], *, check: bool = True) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=60,
        check=False,
    )
    took = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return took


SEED = """
import asyncio, sys
from runtime.engine import Engine
from runtime.jobs import Origin

async def main(n):
    engine = await Engine.open()
    try:
        actor = engine.actor("cli", "alice")
        for i in range(n):
            await engine.submit(f"code demo: run `echo bench {i}`", actor, Origin.cli)
    finally:
        await engine.close()

asyncio.run(main(int(sys.argv[1])))
"""

PHASES = """
import time
t0 = time.perf_counter()
import asyncio, json
import bot.cli
t1 = time.perf_counter()
from runtime.engine import Engine
t2 = time.perf_counter()
from runtime.policy import load_policy
from runtime.settings import Settings
from runtime.store import migrate
from runtime.store.database import Database

async def main():
    s = Settings.from_env()
    a = time.perf_counter()
    loaded = load_policy(s.policy_dir)
    b = time.perf_counter()
    db = Database(s.database_url)
    await migrate.prepare(db, may_upgrade=False)
    c = time.perf_counter()
    engine = Engine(s, db, loaded)
    jobs = await engine.jobs(limit=50)
    lines = [bot.cli._job_line(j) for j in jobs]
    d = time.perf_counter()
    await engine.close()
    e = time.perf_counter()
    return {"load policy": b - a, "Database() + revision check": c - b,
            "list 50 jobs + render": d - c, "engine.close": e - d}

t3 = time.perf_counter()
phases = asyncio.run(main())
t4 = time.perf_counter()
out = {"import bot.cli": t1 - t0, "import runtime.engine": t2 - t1}
out.update(phases)
out["asyncio.run overhead"] = (t4 - t3) - sum(phases.values())
print(json.dumps(out))
"""


def seed(env: dict[str, str], jobs: int) -> None:
    run([ACP, "jobs"], env)  # creates ACP_HOME/acp.db and the schema
    if jobs > 0:
        run([ACP, "submit", "--as", "alice", "--no-wait", "code demo: run `true`"], env)
    if jobs > 1:
        run([PYTHON, "-c", SEED, str(jobs - 1)], env)


def importtime(env: dict[str, str], argv: list[str], runs: int = 3) -> dict[str, list]:
    """Median self/cumulative microseconds per module over `runs` runs of -X importtime."""
    samples: dict[str, list[tuple[int, int, int]]] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [PYTHON, "-X", "importtime", *argv],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "[us]" in line:
                continue
            try:
                self_us, cum_us, name = line[len("import time:") :].split("|", 2)
                depth = (len(name) - len(name.lstrip(" "))) // 2
                samples.setdefault(name.strip(), []).append((int(self_us), int(cum_us), depth))
            except ValueError:
                continue
    return {
        name: [
            statistics.median(s[0] for s in vals),
            statistics.median(s[1] for s in vals),
            min(s[2] for s in vals),
        ]
        for name, vals in samples.items()
    }


def top_level_package(name: str) -> str:
    return name.split(".")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="runs per command (10)")
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the database (100)")
    args = parser.parse_args()
    if not Path(ACP).exists():
        raise SystemExit(f"{ACP} not found: install the project into .venv first")

    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="acp-bench-cli-"))
    try:
        env = make_env(home)
        t0 = time.perf_counter()
        seed(env, args.jobs)
        print(
            f"cli_startup: ACP_HOME={home} with {args.jobs} jobs (seeded in "
            f"{time.perf_counter() - t0:.1f}s), {args.rounds} runs each, interleaved; "
            f"python {PYTHON}, {os.cpu_count()} cpus"
        )
        commands: list[tuple[str, list[str], bool]] = [
            ("python -c pass", [PYTHON, "-c", "pass"], False),
            ("python -c 'import sqlalchemy, pydantic'", [PYTHON, "-c", LIBS], False),
            ("acp --help", [ACP, "--help"], True),
            ("acp schema", [ACP, "schema"], True),
            ("acp jobs", [ACP, "jobs"], True),
            ("acp show J-1" if args.jobs > 0 else "", [ACP, "show", "J-1"], True),
        ]
        commands = [c for c in commands if c[0]]
        for _label, cmd, _ in commands:  # warm-up: page cache, .pyc files
            run(cmd, env)
        times: dict[str, list[float]] = {label: [] for label, _, _ in commands}
        for _ in range(args.rounds):
            for label, cmd, _ in commands:
                times[label].append(run(cmd, env))

        base_pass = statistics.median(times["python -c pass"])
        base_libs = statistics.median(times["python -c 'import sqlalchemy, pydantic'"])
        print()
        head = ("command", "median ms", "p90 ms", "min ms", "x pass", "x libs", "budget", "verdict")
        rows = []
        for label, _cmd, is_acp in commands:
            xs = times[label]
            med, hi = statistics.median(xs), p90(xs)
            if is_acp:
                verdict = "PASS" if med < BUDGET_S else "FAIL"
                if verdict == "PASS" and hi >= BUDGET_S:
                    verdict = "PASS (p90 over)"
                budget = f"<{BUDGET_S * 1000:.0f} ms"
            else:
                verdict, budget = "baseline", "-"
            rows.append(
                (
                    label,
                    f"{med * 1000:.0f}",
                    f"{hi * 1000:.0f}",
                    f"{min(xs) * 1000:.0f}",
                    f"{med / base_pass:.1f}x",
                    f"{med / base_libs:.2f}x",
                    budget,
                    verdict,
                )
            )
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
        print(line)
        print("-" * len(line))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        print(
            "x pass = median / median(python -c pass); "
            "x libs = median / median(python -c 'import sqlalchemy, pydantic')"
        )

        # Where `acp jobs` spends its time.
        print("\n== python -X importtime, `acp jobs` (median of 3 runs)")
        imports = importtime(env, [ACP, "jobs"])
        total_us = sum(v[0] for v in imports.values())
        print(f"total import time (sum of self): {total_us / 1000:.0f} ms, {len(imports)} modules")
        print("\ntop 10 by cumulative time:")
        print(f"  {'cumulative ms':>13}  {'self ms':>8}  depth  module")
        by_cum = sorted(imports.items(), key=lambda kv: kv[1][1], reverse=True)[:10]
        for name, (self_us, cum_us, depth) in by_cum:
            print(f"  {cum_us / 1000:>13.1f}  {self_us / 1000:>8.1f}  {depth:>5}  {name}")
        print("\ntop 10 top-level packages by total self time:")
        per_pkg: dict[str, float] = {}
        for name, (self_us, _cum, _depth) in imports.items():
            per_pkg[top_level_package(name)] = per_pkg.get(top_level_package(name), 0) + self_us
        for pkg, us in sorted(per_pkg.items(), key=lambda kv: kv[1], reverse=True)[:10]:
            print(f"  {us / 1000:>8.1f} ms  {pkg}")
        heavy = [n for n in imports if top_level_package(n) in ("litellm", "openai", "slack_bolt")]
        print(
            "\nmodel/slack libraries imported by `acp jobs`: "
            + (", ".join(sorted({top_level_package(n) for n in heavy})) or "none")
        )

        print("\n== in-process phases of `acp jobs` (median of 3 fresh processes)")
        phase_runs = []
        for _ in range(3):
            out = subprocess.run(
                [PYTHON, "-c", PHASES],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            phase_runs.append(json.loads(out.strip().splitlines()[-1]))
        for key in phase_runs[0]:
            value = statistics.median(r[key] for r in phase_runs)
            print(f"  {value * 1000:>8.1f} ms  {key}")
        print(f"  (plus interpreter start, ~{base_pass * 1000:.0f} ms = python -c pass)")
        # Interpreter teardown after the imports (module and object cleanup at exit).
        normal, fast = [], []
        for _ in range(5):
            normal.append(run([PYTHON, "-c", "import runtime.engine"], env))
            fast.append(run([PYTHON, "-c", "import runtime.engine, os; os._exit(0)"], env))
        print(
            f"  {(statistics.median(normal) - statistics.median(fast)) * 1000:>8.1f} ms  "
            "interpreter teardown after `import runtime.engine` (normal exit minus os._exit; "
            f"{statistics.median(normal) * 1000:.0f} vs {statistics.median(fast) * 1000:.0f} ms)"
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
