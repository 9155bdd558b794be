"""A three-step browser job against the same steps in plain Playwright, same run, warm browser.

The worker's Chromium (runtime.tools.browser.shared_browser: in its own network namespace,
behind the egress proxy) serves the session and job arms; a second one, launched the plain
way (same binary and flags, no namespace, no proxy), serves the plain arms, since the
worker's browser lets nothing out of a context without a door at its proxy. Both are
launched once and warmed up. Each arm takes the same three steps on the local
admin app (tests/standins/admin_site.py) in a fresh browser context: `goto /users/42`,
`expect #status active` (Playwright's expect(locator).to_contain_text, as the session does),
`click #notes` (a plain link to the user's notes), then closes it.

- plain:        bare Playwright; no trace, no screenshots.
- plain+trace:  bare Playwright leaving the same evidence by hand: tracing.start(screenshots,
                snapshots), a PNG screenshot after each step, tracing.stop(path).
- session:      runtime.tools.browser.BrowserSession: the same trace and per-step screenshots,
                plus network governance (every request routed through the grant check) and
                the mutation inspection of each click; stop() writes trace.zip.
- job:          the whole path: engine.submit of "browse admin: <the steps>" on SQLite, then
                Worker.run_once (claim, session, steps, screenshots stored as artifacts, one
                audit event per step, trace artifact, job.succeeded). Timed from submit to the
                job succeeded.

The arms are interleaved iteration by iteration (the order rotates), medians and p90 per
round, then the median over rounds. A second part times the checkpoint path on its own:
`goto /users/43`, `click #go` ("Disable user", a POST form), which the session holds as a
HeldAction and then takes with perform_pending (the approval path without the person),
against the same goto + click in plain Playwright. Last, one more round of the session and
job arms with their calls timed in place shows where the time goes.

Budget (issue 6): job and session <= 1.3x plain Playwright doing the same steps with the same
evidence (plain+trace). The ratio to bare plain is printed for information.

    .venv/bin/python bench/browser_job.py [--rounds 5] [--iterations 10] [--no-checkpoint]
                                          [--profile-iterations N]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.async_api import Browser, Page, expect  # noqa: E402
from playwright.async_api._generated import (  # noqa: E402
    BrowserContext,
    Locator,
    LocatorAssertions,
    Tracing,
)

from runtime.engine import Engine  # noqa: E402
from runtime.jobs import JobState  # noqa: E402
from runtime.kinds.browser import endings, live  # noqa: E402
from runtime.kinds.browser.run import Run  # noqa: E402
from runtime.recorder import JobRecorder  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.tools import browser as browser_tool  # noqa: E402
from runtime.tools.browser import BrowserGrant, BrowserSession, MutationPending  # noqa: E402
from runtime.worker import Worker  # noqa: E402
from tests.kinds.browser.test_browser_jobs import write_policy  # noqa: E402
from tests.standins import admin_site  # noqa: E402

BUDGET = 1.3
STEPS = "`goto /users/42` `expect #status active` `click #notes`"
REQUEST = f"browse admin: check user 42 {STEPS}"
GRANT = BrowserGrant(domains=["127.0.0.1"])
WARMUP = 3

Arm = Callable[[], Awaitable[float]]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Bench:
    def __init__(
        self,
        browser: Browser,
        admin: admin_site.Site,
        engine: Engine,
        tmp: Path,
        plain_browser: Browser | None = None,
    ):
        self.browser = browser
        self.plain_browser = plain_browser or browser
        self.admin = admin
        self.base = admin.base
        self.engine = engine
        self.worker = Worker(engine)
        self.tmp = tmp
        self.n = 0
        self.last_job = 0

    def _dir(self) -> Path:
        self.n += 1
        path = self.tmp / "out" / str(self.n)
        path.mkdir(parents=True)
        return path

    # --- the three steps ---------------------------------------------------------------

    async def plain(self) -> float:
        started = time.perf_counter()
        context = await self.plain_browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(f"{self.base}/users/42")
            await expect(page.locator("#status")).to_contain_text("active")
            await page.click("#notes")
            await page.wait_for_url("**/users/42/notes")
        finally:
            await context.close()
        return ms_since(started)

    async def plain_trace(self, laps: dict[str, float] | None = None) -> float:
        out = self._dir()
        started = t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            if laps is not None:
                now = time.perf_counter()
                laps[name] = laps.get(name, 0.0) + (now - t) * 1000
                t = now

        context = await self.plain_browser.new_context()
        lap("new_context")
        try:
            await context.tracing.start(screenshots=True, snapshots=True, sources=False)
            lap("tracing.start")
            page = await context.new_page()
            lap("new_page")
            await page.goto(f"{self.base}/users/42")
            lap("step 1 goto")
            await page.screenshot(path=out / "step-01.png", type="png")
            lap("screenshots (3)")
            await expect(page.locator("#status")).to_contain_text("active")
            lap("step 2 expect")
            await page.screenshot(path=out / "step-02.png", type="png")
            lap("screenshots (3)")
            await page.click("#notes")
            await page.wait_for_url("**/users/42/notes")
            lap("step 3 click")
            await page.screenshot(path=out / "step-03.png", type="png")
            lap("screenshots (3)")
            await context.tracing.stop(path=out / "trace.zip")
            lap("tracing.stop (write zip)")
        finally:
            await context.close()
            lap("context.close")
        return ms_since(started)

    async def session(self) -> float:
        out = self._dir()
        started = time.perf_counter()
        session = await BrowserSession.start(GRANT, trace_dir=out, browser=self.browser)
        try:
            await session.goto(f"{self.base}/users/42")
            await session.expect("#status", "active")
            await session.click("#notes")
        finally:
            trace = await session.stop()
        elapsed = ms_since(started)
        assert trace.exists() and len(session.screenshots) == 3
        assert session.steps[-1].url.endswith("/users/42/notes"), session.steps[-1].url
        return elapsed

    async def job(self) -> float:
        actor = self.engine.actor("cli", "alice")
        started = time.perf_counter()
        job = await self.engine.submit(REQUEST, actor)
        assert job.state is JobState.queued, (job.state, job.decision)
        done = await self.worker.run_once()
        elapsed = ms_since(started)
        assert done is not None and done.id == job.id
        assert done.state is JobState.succeeded, done.result
        self.last_job = done.id
        return elapsed

    # --- the checkpoint path -----------------------------------------------------------

    async def plain_mutation(self, trace: bool) -> float:
        out = self._dir()
        started = time.perf_counter()
        context = await self.plain_browser.new_context()
        try:
            if trace:
                await context.tracing.start(screenshots=True, snapshots=True, sources=False)
            page = await context.new_page()
            await page.goto(f"{self.base}/users/43")
            if trace:
                await page.screenshot(path=out / "step-01.png", type="png")
            async with page.expect_navigation():
                await page.click("#go")
            if trace:
                await page.screenshot(path=out / "step-02.png", type="png")
                await context.tracing.stop(path=out / "trace.zip")
        finally:
            await context.close()
        elapsed = ms_since(started)
        self._reset_site()
        return elapsed

    async def session_mutation(self) -> float:
        out = self._dir()
        started = time.perf_counter()
        session = await BrowserSession.start(GRANT, trace_dir=out, browser=self.browser)
        try:
            await session.goto(f"{self.base}/users/43")
            try:
                await session.click("#go")
                raise AssertionError("the disable button was clicked without a checkpoint")
            except MutationPending as paused:
                await session.perform_pending(paused.pending)
        finally:
            await session.stop()
        elapsed = ms_since(started)
        assert len(session.mutations_sent) == 1, session.mutations_sent
        self._reset_site()
        return elapsed

    def _reset_site(self) -> None:
        assert self.admin.mutations.pop("POST /users/43/disable", 0) == 1
        assert self.admin.disabled == {43}
        self.admin.disabled.clear()


async def measure(arms: dict[str, Arm], rounds: int, iterations: int) -> list[dict[str, Any]]:
    """Each round: `iterations` passes, every arm once per pass, the order rotating."""
    names = list(arms)
    header = "  ".join(f"{name:>12}" for name in names)
    print(f"{'round':>5}  {header}   (median ms; p90 in brackets)")
    rows = []
    for r in range(1, rounds + 1):
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(iterations):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(await arms[name]())
        row = {name: (statistics.median(v), pct(v, 0.9)) for name, v in times.items()}
        rows.append(row)
        cells = "  ".join(f"{row[n][0]:6.1f} [{row[n][1]:5.0f}]".rjust(12) for n in names)
        print(f"{r:>5}  {cells}")
    return rows


def summarize(rows: list[dict[str, Any]], ratios: list[tuple[str, str, bool]]) -> bool:
    names = list(rows[0])
    print(f"\n{'arm':<14}{'median':>9}{'p90':>9}   (median over rounds, ms)")
    for name in names:
        med = statistics.median(row[name][0] for row in rows)
        p90 = statistics.median(row[name][1] for row in rows)
        print(f"{name:<14}{med:9.1f}{p90:9.1f}")
    print(f"\n{'ratio':<26}{'median':>8}{'min':>7}{'max':>7}   (per-round ratios of medians)")
    ok = True
    for top, bottom, budgeted in ratios:
        values = [row[top][0] / row[bottom][0] for row in rows]
        ratio = statistics.median(values)
        verdict = ""
        if budgeted:
            passed = ratio <= BUDGET
            ok = ok and passed
            verdict = f"  budget <= {BUDGET}x  {'PASS' if passed else 'MISS'}"
        else:
            verdict = "  (information)"
        label = f"{top}/{bottom}"
        print(f"{label:<26}{ratio:8.2f}{min(values):7.2f}{max(values):7.2f}{verdict}")
    return ok


# --- where the time goes ------------------------------------------------------------------


class Probe:
    """Wraps calls in place and adds up their wall time (nested calls are counted in both),
    for the arm named in `target` (None: not counted)."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.ms: dict[str, dict[str, float]] = {}
        self.calls: dict[str, dict[str, int]] = {}
        self._saved: list[tuple[Any, str, Any]] = []

    def _add(self, target: str | None, label: str, started: float) -> None:
        if target is None:
            return
        ms, calls = self.ms.setdefault(target, {}), self.calls.setdefault(target, {})
        ms[label] = ms.get(label, 0.0) + ms_since(started)
        calls[label] = calls.get(label, 0) + 1

    def wrap(self, owner: Any, attr: str, label: str, *, is_async: bool = True) -> None:
        raw = owner.__dict__.get(attr) if isinstance(owner, type) else None
        original = getattr(owner, attr)
        if is_async:

            @functools.wraps(original)
            async def wrapper(*a: Any, **kw: Any) -> Any:
                target, started = self.target, time.perf_counter()
                try:
                    return await original(*a, **kw)
                finally:
                    self._add(target, label, started)

        else:

            @functools.wraps(original)
            def wrapper(*a: Any, **kw: Any) -> Any:
                target, started = self.target, time.perf_counter()
                try:
                    return original(*a, **kw)
                finally:
                    self._add(target, label, started)

        self._saved.append((owner, attr, raw if raw is not None else original))
        # A classmethod comes back bound to its class: keep it callable on the class as is.
        setattr(owner, attr, staticmethod(wrapper) if isinstance(raw, classmethod) else wrapper)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._saved):
            setattr(owner, attr, original)
        self._saved = []


# (label, indent, owner, attribute); owner None: a heading; "engine", "worker", "artifacts"
# and "route" are resolved at run time.
PARTS: list[tuple[str, int, Any, str]] = [
    ("engine.submit (parse, decide, insert + 2 events)", 0, "engine", "submit"),
    ("worker.claim (job -> running + event)", 0, "worker", "claim"),
    ("Run.start (the job's browser session)", 0, Run, "start"),
    ("BrowserSession.start", 1, BrowserSession, "start"),
    ("browser.new_context", 2, Browser, "new_context"),
    ("tracing.start", 2, Tracing, "start"),
    ("context.route (install)", 2, BrowserContext, "route"),
    ("context.route_web_socket (install)", 2, BrowserContext, "route_web_socket"),
    ("context.new_page", 2, BrowserContext, "new_page"),
    ("session.goto", 0, BrowserSession, "goto"),
    ("session.expect", 0, BrowserSession, "expect"),
    ("session.click", 0, BrowserSession, "click"),
    ("session.perform_pending", 0, BrowserSession, "perform_pending"),
    ("inside the steps:", 0, None, ""),
    ("page.goto", 1, Page, "goto"),
    ("expect(locator).to_contain_text", 1, LocatorAssertions, "to_contain_text"),
    ("locator.click", 1, Locator, "click"),
    ("click inspection: locator.evaluate", 1, Locator, "evaluate"),
    ("click inspection: locator.aria_snapshot", 1, Locator, "aria_snapshot"),
    ("_fingerprint (page.content + aria)", 1, BrowserSession, "_fingerprint"),
    ("_let_page_act (rAF + 3 x 5 ms poll)", 1, BrowserSession, "_let_page_act"),
    ("page.evaluate (the rAF wait)", 2, Page, "evaluate"),
    ("_settle (load state)", 1, BrowserSession, "_settle"),
    ("_check_landing", 1, BrowserSession, "_check_landing"),
    ("session.check_held", 1, BrowserSession, "check_held"),
    ("_finish (screenshot + hash)", 1, BrowserSession, "_finish"),
    ("page.screenshot (all)", 1, Page, "screenshot"),
    ("route handler (per request; overlaps steps)", 1, BrowserSession, "_route"),
    ("route.fetch", 2, "route", "fetch"),
    ("route.fulfill", 2, "route", "fulfill"),
    ("Run.record (steps -> artifacts + events)", 0, Run, "record"),
    ("endings.complete", 0, endings, "complete"),
    ("Run.save_trace", 1, Run, "save_trace"),
    ("session.stop", 2, BrowserSession, "stop"),
    ("tracing.stop_chunk (write zip)", 3, Tracing, "stop_chunk"),
    ("tracing.stop", 3, Tracing, "stop"),
    ("context.close", 3, BrowserContext, "close"),
    ("engine.apply (outcome -> succeeded + event)", 0, "engine", "apply"),
    ("job path, anywhere:", 0, None, ""),
    ("recorder.log (audit events, 1 transaction each)", 1, JobRecorder, "log"),
    ("artifacts.put (PNGs, trace)", 1, "artifacts", "put"),
]


async def breakdown(bench: Bench, iterations: int, checkpoint: bool) -> None:
    """plain+trace lapped; session, job (and checkpoint) with their calls wrapped; interleaved."""
    from playwright.async_api import Route

    probe = Probe()
    owners = {
        "engine": bench.engine,
        "worker": bench.worker,
        "artifacts": bench.engine.artifacts,
        "route": Route,
    }
    for label, _, owner, attr in PARTS:
        if owner is not None:
            owner = owners.get(owner, owner) if isinstance(owner, str) else owner
            probe.wrap(owner, attr, label, is_async=attr != "put")
    laps: dict[str, float] = {}
    arms: dict[str, Arm] = {
        "plain+trace": lambda: bench.plain_trace(laps),
        "session": bench.session,
        "job": bench.job,
    }
    if checkpoint:
        arms["checkpoint plain+trace"] = lambda: bench.plain_mutation(True)
        arms["checkpoint"] = bench.session_mutation
    totals = dict.fromkeys(arms, 0.0)
    names = list(arms)
    try:
        for i in range(iterations):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                probe.target = None if "plain" in name else name
                try:
                    totals[name] += await arms[name]()
                finally:
                    probe.target = None
    finally:
        probe.restore()

    print(
        f"\nwhere the time goes: {iterations} more runs per arm, interleaved, calls timed in "
        "place;\nms per run (calls per run); nested calls are included in their parents"
    )
    print(f"\nplain+trace, lapped:\n  {'whole run':<50}{totals['plain+trace'] / iterations:9.1f}")
    for name, ms in laps.items():
        print(f"  {name:<50}{ms / iterations:9.1f}")
    if checkpoint:
        whole = totals["checkpoint plain+trace"] / iterations
        print(f"checkpoint plain+trace:\n  {'whole run':<50}{whole:9.1f}")
    wrapped = [a for a in names if "plain" not in a]
    print(f"\n{'wrapped:':<52}" + "".join(f"{a:>16}" for a in wrapped))
    print(f"{'  whole run':<52}" + "".join(f"{totals[a] / iterations:16.1f}" for a in wrapped))
    for label, indent, owner, _ in PARTS:
        name = "  " * (indent + 1) + label
        if owner is None:
            print(name)
            continue
        cells = []
        for a in wrapped:
            ms, calls = probe.ms.get(a, {}), probe.calls.get(a, {})
            if label in ms:
                cell = f"{ms[label] / iterations:9.1f} ({calls[label] / iterations:g})"
                cells.append(cell.rjust(16))
            else:
                cells.append(f"{'-':>16}")
        if any(c.strip() != "-" for c in cells):
            print(f"{name:<52}" + "".join(cells))


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="acp-bench-browser-") as tmp_name:
        tmp = Path(tmp_name)
        admin, offlist = await admin_site.start()
        settings = Settings.from_env(
            {
                "ACP_HOME": str(tmp / "home"),
                "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/acp.db",
                "ACP_POLICY_DIR": str(write_policy(tmp / "policy", admin.base)),
            }
        )
        engine = await Engine.open(settings)
        bench: Bench | None = None
        try:
            started = time.perf_counter()
            browser = await browser_tool.shared_browser()
            launch_ms = ms_since(started)
            started = time.perf_counter()
            plain_browser = await browser.browser_type.launch(
                executable_path=browser_tool.chromium_path(),
                headless=True,
                args=browser_tool.CHROMIUM_ARGS,
            )
            plain_launch_ms = ms_since(started)
            bench = Bench(browser, admin, engine, tmp, plain_browser)
            arms: dict[str, Arm] = {
                "plain": bench.plain,
                "plain+trace": bench.plain_trace,
                "session": bench.session,
                "job": bench.job,
            }
            for _ in range(WARMUP):
                for arm in arms.values():
                    await arm()
            version = browser.version
            print(f"browser job: {REQUEST!r}")
            print(
                f"Chromium {version} ({browser_tool.chromium_path()}, launched once in "
                f"{launch_ms:.0f} ms in its network namespace behind the egress proxy, "
                f"{plain_launch_ms:.0f} ms plain; {WARMUP} warm-up passes); {args.rounds} rounds x "
                f"{args.iterations} iterations per arm, interleaved\n"
            )
            rows = await measure(arms, args.rounds, args.iterations)
            ok = summarize(
                rows,
                [
                    ("session", "plain+trace", True),
                    ("job", "plain+trace", True),
                    ("session", "plain", False),
                    ("job", "plain", False),
                ],
            )

            if args.checkpoint:
                print(
                    "\ncheckpoint: `goto /users/43` `click #go` (a POST form); the session holds "
                    "it (MutationPending) and takes it with perform_pending"
                )
                cp_arms: dict[str, Arm] = {
                    "plain": lambda: bench.plain_mutation(False),
                    "plain+trace": lambda: bench.plain_mutation(True),
                    "session": bench.session_mutation,
                }
                for _ in range(WARMUP):
                    for arm in cp_arms.values():
                        await arm()
                cp_rows = await measure(cp_arms, args.rounds, args.iterations)
                summarize(
                    cp_rows,
                    [("session", "plain+trace", False), ("session", "plain", False)],
                )

            await breakdown(bench, args.profile_iterations or args.iterations, args.checkpoint)

            last = await engine.get(bench.last_job)
            kinds = [e.kind for e in await engine.events(last.id)]
            names = [a.name for a in last.artifacts]
            report = await engine.verify_audit()
            print(
                f"\nlast job {last.job_id}: {len(kinds)} audit events "
                f"({kinds.count('browser.step')} browser.step), artifacts {names}; "
                f"audit chain verified: {report.events} events"
            )
        finally:
            await live.close_all()
            if bench is not None and bench.plain_browser is not bench.browser:
                await bench.plain_browser.close()
            await browser_tool.close_shared_browser()
            await engine.close()
            await admin.stop()
            await offlist.stop()
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10, help="runs per arm per round")
    parser.add_argument(
        "--profile-iterations",
        type=int,
        default=0,
        help="runs per arm in the breakdown (default: --iterations)",
    )
    parser.add_argument(
        "--no-checkpoint",
        dest="checkpoint",
        action="store_false",
        help="skip the checkpoint part (held click + perform_pending)",
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
