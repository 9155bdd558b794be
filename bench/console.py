"""Benchmark: the web console's pages against the service API serving the same data, on one
running `acp serve` (SQLite, the bundled policy).

- Time to first byte of the job list with 10,000 jobs (plain, filtered by state, searched by
  words), against the API's JSON list of the same 50 jobs (budget: console p50 <= 100 ms).
- Time to first byte of a job page whose diff is 5,000 lines, against the API's job record
  plus the diff artifact (budget: p50 <= 100 ms).
- An approval clicked in one browser until the state change shows on another open page
  (server-sent events), against the moment the API itself answers with the new state
  (budget: <= 500 ms).

The 10,000 jobs are copies of real jobs' rows (made by the service from real requests) with
their ids, states and texts varied: the list reads only the jobs table.

Run:  .venv/bin/python bench/console.py [--runs 5] [--requests 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BIG = "code demo: run `seq 1 5000 > numbers.txt`"
SMALL = 'code demo: run `sed -i "s/teh/the/" README.md`'


def ttfb(client, path: str) -> float:
    started = time.perf_counter()
    took = None
    with client.stream("GET", path) as response:
        for _ in response.iter_raw():
            took = took or time.perf_counter() - started
        assert response.status_code == 200, (path, response.status_code)
    return took if took is not None else time.perf_counter() - started


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, tmp: str) -> None:
        self.tmp = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
        env.update(ACP_HOME=f"{tmp}/home", ACP_API_LISTEN="", ACP_CONSOLE_LISTEN="127.0.0.1:0",
                   LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")  # fmt: skip
        self.env = env
        self.log = self.tmp / "serve.log"

    def acp(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bot.cli", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"acp {args[:2]} failed: {done.stderr[-400:]}")
        return done.stdout

    def start(self) -> None:
        self.out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"],
            env=self.env,
            cwd=ROOT,
            stdout=self.out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if any(line.startswith("ready") for line in text.splitlines()):
                self.url = re.search(r"^  console  : (http://\S+)", text, re.M).group(1)
                self.socket = Path(self.env["ACP_HOME"]) / "acp.sock"
                return
            if self.proc.poll() is not None:
                raise SystemExit(text)
            time.sleep(0.1)
        raise SystemExit("the service did not start:\n" + self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.out.close()

    def wait(self, job: str, states: set[str]) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if json.loads(self.acp("show", job, "--json"))["state"] in states:
                return
            time.sleep(0.2)
        raise SystemExit(f"{job} never reached {states}")

    def submit(self, text: str) -> str:
        return re.search(r"J-\d+", self.acp("submit", "--as", "alice", "--no-wait", text))[0]

    def multiply(self, count: int) -> None:
        """`count` more job rows, copies of the real ones with varied ids, states, texts."""
        db = sqlite3.connect(Path(self.env["ACP_HOME"]) / "acp.db", timeout=30)
        columns = [r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[1] != "id"]
        listed = ", ".join(columns)
        picked = ", ".join(
            {"state": "CASE n % 4 WHEN 0 THEN 'succeeded' WHEN 1 THEN 'failed' "
                      "WHEN 2 THEN 'denied' ELSE 'cancelled' END",
             "prompt": "prompt || ' copy ' || n", "request_key": "NULL"}.get(c, c)
            for c in columns
        )  # fmt: skip
        db.execute(
            f"INSERT INTO jobs ({listed}) WITH RECURSIVE seq(n) AS "
            f"(SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {count}) "
            f"SELECT {picked} FROM seq, (SELECT * FROM jobs WHERE id = 2)"
        )
        db.commit()
        db.close()


def console_client(bench: Bench):
    import httpx

    client = httpx.Client(base_url=bench.url, headers={"Origin": bench.url}, timeout=30)
    form = client.get("/signin").text
    token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    client.post("/signin/local", data={"csrf": token, "person": "bob", "next": "/"})
    assert client.get("/jobs").status_code == 200
    return client


def api_client(bench: Bench):
    import httpx

    transport = httpx.HTTPTransport(uds=str(bench.socket))
    return httpx.Client(base_url="http://acp", transport=transport, timeout=30)


async def approvals(bench: Bench, jobs: list[str]) -> tuple[list[float], list[float]]:
    """Click Approve as bob; time until alice's open page shows it, and until the API does."""
    import httpx
    from playwright.async_api import async_playwright

    from runtime.tools.browser.chromium import CHROMIUM_ARGS, browser_executable

    seen, api = [], []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=browser_executable(pw),
                                           args=CHROMIUM_ARGS)  # fmt: skip
        pages = {}
        for person in ("alice", "bob"):
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"{bench.url}/signin")
            await page.select_option("select[name=person]", person)
            await page.click("form.demo button[type=submit]")
            await page.wait_for_url(f"{bench.url}/")
            pages[person] = page
        transport = httpx.AsyncHTTPTransport(uds=str(bench.socket))
        async with httpx.AsyncClient(base_url="http://acp", transport=transport) as client:
            for job in jobs:
                await pages["alice"].goto(f"{bench.url}/jobs/{job}")
                await pages["bob"].goto(f"{bench.url}/jobs/{job}")
                await asyncio.sleep(0.3)  # the live stream is open
                watcher = pages["alice"].wait_for_selector(
                    "#panel:not([data-state=awaiting_approval])", timeout=10_000
                )

                async def api_sees(clicked: float, job: str = job) -> float:
                    while True:
                        body = (await client.get(f"/api/v1/jobs/{job}")).json()
                        if body["state"] != "awaiting_approval":
                            return time.perf_counter() - clicked
                        await asyncio.sleep(0.005)

                clicked = time.perf_counter()
                watching = asyncio.create_task(watcher)
                await pages["bob"].click("button[name=approve]")
                api.append(await api_sees(clicked))
                await watching
                seen.append(time.perf_counter() - clicked)
        await browser.close()
    return seen, api


def cold_render(patch: str, runs: int) -> None:
    """The page's diff rendered with nothing cached (the first view of a job, or a new
    view): parsing, highlighting within its budget, the template; against reading the patch."""
    from bot.console.evidence import diff

    cold, split, baseline = [], [], []
    for n in range(runs):
        for view, into in (("unified", cold), ("split", split)):
            diff._CACHE.clear()
            start = time.perf_counter()
            diff.render_patch(patch, sha256=f"{n:064x}", name="diff.patch", view=view)
            into.append(time.perf_counter() - start)
        start = time.perf_counter()
        diff.parse_patch(patch)
        baseline.append(time.perf_counter() - start)
    print(f"diff of {len(patch.splitlines())} lines rendered cold: unified p50 "
          f"{p50(cold) * 1000:.1f} ms, side by side {p50(split) * 1000:.1f} ms; parsing alone "
          f"{p50(baseline) * 1000:.1f} ms (ratio {p50(cold) / p50(baseline):.1f}); "
          "budget for the page 100 ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(tmp)
        bench.start()
        try:
            big = bench.submit(BIG)
            small = [bench.submit(SMALL) for _ in range(args.runs)]
            bench.wait(big, {"awaiting_approval"})
            for job in small:
                bench.wait(job, {"awaiting_approval"})
            bench.multiply(args.jobs - 1 - len(small))
            shown = json.loads(bench.acp("show", big, "--json"))
            diff = next(a for a in shown["artifacts"] if a["name"] == "diff.patch")
            console, api = console_client(bench), api_client(bench)
            lines = len(api.get(f"/api/v1/artifacts/{diff['sha256']}").content.splitlines())
            total = api.get("/api/v1/jobs", params={"limit": 1}).json()[0]["id"]
            print(f"{total} jobs; {big}'s diff is {lines} lines; {args.runs} rounds of "
                  f"{args.requests} requests each")  # fmt: skip
            cases = {
                "job list": ("/jobs", "/api/v1/jobs?limit=50"),
                "job list, state=failed": (
                    "/jobs?state=failed",
                    "/api/v1/jobs?limit=50&state=failed",
                ),
                "job list, search words": ("/jobs?q=copy+4999", "/api/v1/jobs?limit=50"),
                f"job page, {lines}-line diff": (f"/jobs/{big}", f"/api/v1/jobs/{big}"),
            }
            results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cases}
            for _ in range(args.runs):
                for name, (page, base) in cases.items():
                    for _ in range(args.requests):
                        results[name][0].append(ttfb(console, page))
                        took = ttfb(api, base)
                        if name.startswith("job page"):
                            took += ttfb(api, f"/api/v1/artifacts/{diff['sha256']}")
                        results[name][1].append(took)
            print(f"{'page':34} {'console p50':>12} {'p90':>8} {'API p50':>9} {'ratio':>6}")
            for name, (ours, theirs) in results.items():
                print(f"{name:34} {p50(ours) * 1000:10.1f}ms {p(ours, 0.9) * 1000:6.1f}ms "
                      f"{p50(theirs) * 1000:7.1f}ms {p50(ours) / p50(theirs):6.2f}")  # fmt: skip
            cold_render(api.get(f"/api/v1/artifacts/{diff['sha256']}").text, args.runs)
            seen, api_seen = asyncio.run(approvals(bench, small))
            print(f"approval click -> another open page shows it: p50 {p50(seen) * 1000:.0f} ms "
                  f"(max {max(seen) * 1000:.0f} ms) over {len(seen)} approvals; the API answers "
                  f"with the new state at p50 {p50(api_seen) * 1000:.0f} ms "
                  f"(ratio {p50(seen) / p50(api_seen):.2f}); budget 500 ms")  # fmt: skip
        finally:
            bench.stop()


if __name__ == "__main__":
    main()
