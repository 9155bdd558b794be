"""How fast `acp policy simulate` re-decides recorded jobs: 100,000 jobs on SQLite, end to end.

The database is filled in bulk (one INSERT per 5,000 rows) with realistic jobs over 29 days:
requests of alice, bob and carol from the CLI and Slack (code on demo, SQL statements, questions
and diagnostics on payments-replica, doc on reports, vague requests, some denied), proposed
routines and routine firings (which repeat their request). Each kind of request is parsed and
decided by the bundled policy through the engine's own code (as engine.submit records it), then
varied (a number in its text) so that most jobs' text is their own; every 500th variant is
decided again from scratch and must decide as its prototype did.

The proposed policy tightens the bundled one: engineers lose the doc grant, SQL on the replica
stops at a `run` gate, carol becomes a demo approver (so the merge and routine gates' approver
sets change), and code jobs get a model route. Timed per round:

- service: POST /policy/simulate over the Unix socket (bot.api), as `acp policy simulate
  --json` sends it: files validated, rows read, decided, compared, the audit event, the JSON.
- in process: history_store.all_recorded_jobs + simulate() (what the endpoint runs).
- baseline, reading: history_store.all_recorded_jobs alone.
- baseline, deciding: the bare loop of facts_of_job + decide() over the same rows, no memo.

Budget: >= 20,000 jobs re-decided per second, end to end in the service.

    .venv/bin/python bench/policy_simulate.py [--jobs 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bot.api.server import start_api  # noqa: E402
from bot.cli.client import ServiceClient  # noqa: E402
from runtime.engine import Engine  # noqa: E402
from runtime.intake import parse_request  # noqa: E402
from runtime.jobs import JobRecord, JobState, ModelUse, Origin  # noqa: E402
from runtime.policy.decide import decide  # noqa: E402
from runtime.policy.history import facts_of_job  # noqa: E402
from runtime.policy.simulate import simulate, since_time  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.store import history_store, job_store  # noqa: E402
from runtime.store.job_store import utcnow  # noqa: E402

BUDGET = 20_000
BUNDLED = ROOT / "policies" / "default.yml"

# (weight, people, request template, origin): {n} makes the text the job's own; a routine's
# firings (origin schedule) repeat its request.
REQUESTS = [
    (28, "ab", 'code demo: run `sed -i "s/teh{n}/the/" README.md`', Origin.cli),
    (4, "c", 'code demo: run `sed -i "s/teh{n}/the/" README.md`', Origin.cli),
    (5, "ab", "code demo: make the build {n}% faster", Origin.slack),
    (1, "ab", "code reports: run `make test-{n}`", Origin.cli),
    (20, "abc", "sql payments-replica: select count(*) from payments where id > {n}", Origin.cli),
    (12, "abc", "sql payments-replica: top {k} slowest queries", Origin.slack),
    (5, "abc", "sql payments-replica: how many refunds failed on day {n}", Origin.slack),
    (10, "ab", "doc reports: run `template templates/weekly.md.j2 out/w{n}.xlsx incidents.csv`",
     Origin.cli),
    (3, "ab", "doc reports: write up incident {n}", Origin.slack),
    (2, "c", "doc reports: run `ls out/{n}`", Origin.cli),
    (1, "abc", "please fix ticket {n}", Origin.slack),
    (0.3, "ab", 'schedule "0 9 * * MON" sql payments-replica: select {n}', Origin.cli),
    (3, "c", "sql payments-replica: top 10 slowest queries", Origin.schedule),
    (2, "a", "code demo: run `make nightly-report`", Origin.schedule),
]  # fmt: skip
PEOPLE = {"a": "alice", "b": "bob", "c": "carol"}


def proposed_policy(folder: Path) -> Path:
    policy = yaml.safe_load(BUNDLED.read_text())
    engineer = policy["roles"]["engineer"]
    engineer["grants"] = [g for g in engineer["grants"] if g["id"] != "engineer.doc.reports"]
    policy["approvals"].append({
        "id": "replica.run.review", "job_types": ["sql"], "targets": ["payments-replica"],
        "actions": ["run"], "approvers": {"roles": ["demo-approver"]}, "four_eyes": True,
    })  # fmt: skip
    policy["people"]["carol"]["roles"].append("demo-approver")
    policy["models"]["routes"].insert(0, {
        "id": "models.code.assist", "job_types": ["code"], "model": "openai/gpt-4o-mini",
        "api_key_env": "OPENAI_API_KEY",
    })  # fmt: skip
    policy.pop("expect", None)  # the bundled examples describe the bundled policy
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(BUNDLED.parent.glob("*.yml")):  # the other files, but for examples
        if path != BUNDLED and set(yaml.safe_load(path.read_text())) != {"expect"}:
            shutil.copy(path, folder / path.name)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def _record(engine: Engine, person: str, text: str, origin: Origin, at) -> JobRecord:
    """A job as engine.submit records it (runtime.submission), without writing it."""
    parsed = parse_request(text, engine.policy)
    decision = engine._decide(person, parsed, origin)
    state = {"deny": JobState.denied, "needs_clarification": JobState.needs_clarification}.get(
        decision.effect, JobState.awaiting_approval if decision.approvals else JobState.succeeded
    )
    return JobRecord(
        id=0,
        state=state,
        spec=engine._spec(person, parsed, origin, decision),
        prompt=text,
        tools_granted=decision.tools_granted,
        decision=decision.model_dump(mode="json"),
        policy_hash=engine.loaded.sha256,
        classifier={"method": parsed.method, "confidence": parsed.confidence,
                    "cues": parsed.cues, "job_type_known": parsed.job_type is not None},
        model=ModelUse(model=decision.model or "direct", route_rule=decision.model_rule),
        created_at=at,
        updated_at=at,
    )  # fmt: skip


def _vary(values: dict, proto_n: str, n: str) -> dict:
    """A prototype's row with its number replaced: the same request, in its own words."""
    spec = dict(values["spec"])
    spec["instruction"] = spec["instruction"].replace(proto_n, n)
    spec["commands"] = [c.replace(proto_n, n) for c in spec["commands"]]
    return {**values, "spec": spec, "prompt": values["prompt"].replace(proto_n, n)}


async def fill(engine: Engine, jobs: int) -> dict[str, int]:
    """`jobs` recorded jobs over the last 29 days, in bulk; returns how many decided how."""
    rng = random.Random(7)
    weights = [w for w, _, _, _ in REQUESTS]
    protos: dict[tuple[int, str], tuple[dict, str]] = {}
    now = utcnow()
    effects: dict[str, int] = {}
    checked = 0
    async with engine.db.begin() as conn:
        batch = []
        for i in range(jobs):
            which = rng.choices(range(len(REQUESTS)), weights)[0]
            _, people, template, origin = REQUESTS[which]
            person = PEOPLE[rng.choice(people)]
            n, k = str(100_000 + i), str(rng.randint(1, 50))
            if (which, person) not in protos:
                proto = _record(engine, person, template.format(n="99999", k="10"), origin, now)
                protos[which, person] = (job_store.row_values(proto), "99999")
            values, proto_n = protos[which, person]
            row = _vary(values, proto_n, n)
            if "{k}" in template:
                row = _vary(values, "10", k)
            at = now - timedelta(days=29) * (1 - i / jobs)
            row.update(created_at=at, updated_at=at, request_key=None, team=None)
            if i % 500 == 0:  # a variant decides as its prototype did
                fresh = _record(engine, person, row["prompt"], origin, at)
                assert fresh.decision == row["decision"], (row["prompt"], fresh.decision)
                checked += 1
            effects[row["decision"]["effect"]] = effects.get(row["decision"]["effect"], 0) + 1
            batch.append(row)
            if len(batch) == 5000:
                await conn.execute(insert(job_store.jobs_table), batch)
                batch = []
        if batch:
            await conn.execute(insert(job_store.jobs_table), batch)
    effects["checked variants"] = checked
    return effects


async def read_only(engine: Engine, since_at) -> tuple[float, int]:
    started = time.perf_counter()
    async with engine.db.engine.connect() as conn:
        rows = await history_store.all_recorded_jobs(conn, since_at)
    return time.perf_counter() - started, len(rows)


async def in_process(engine: Engine, proposed, since_at):
    started = time.perf_counter()
    async with engine.db.engine.connect() as conn:
        rows = await history_store.all_recorded_jobs(conn, since_at)
    report = await asyncio.to_thread(
        simulate, rows, proposed.policy, proposed_hash=proposed.sha256, since_at=since_at
    )
    return time.perf_counter() - started, report


def bare_decide(rows, policy) -> float:
    """Every job decided again from its facts, one decide() each (no memo, no compare)."""
    started = time.perf_counter()
    for r in rows:
        facts = facts_of_job(requester=r.requester, job_type=r.job_type, target=r.target,
                             origin=r.origin, instruction=r.instruction, commands=r.commands,
                             classifier=r.classifier, decision=r.decision)  # fmt: skip
        if facts is not None:
            decide(policy, facts)
    return time.perf_counter() - started


async def service(client: ServiceClient, files: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    report = await client.call("POST", "/policy/simulate", {"files": files, "since": "30d"})
    return time.perf_counter() - started, report


def _line(name: str, seconds: list[float], jobs: int, base: float | None = None) -> float:
    med = statistics.median(seconds)
    rate = jobs / med
    ratio = f"  x{base / med:5.2f} vs bare decide()" if base else ""
    print(f"  {name:<34} median {med * 1000:8.1f} ms  (min {min(seconds) * 1000:7.1f})"
          f"  {rate:>9,.0f} jobs/s{ratio}")  # fmt: skip
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="acp-bench-sim-"))
    try:
        env = {"ACP_HOME": str(tmp / "home"), "ACP_POLICY_DIR": str(BUNDLED.parent),
               "ACP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/acp.db",
               "ACP_API_LISTEN": "",
               "ACP_CONSOLE_LISTEN": ""}  # fmt: skip
        engine = await Engine.open(Settings.from_env(env))
        started = time.perf_counter()
        effects = await fill(engine, args.jobs)
        print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{k} {v:,}" for k, v in effects.items()))  # fmt: skip
        folder = proposed_policy(tmp / "proposed")
        files = {p.name: p.read_text() for p in sorted(folder.glob("*.y*ml"))}
        from runtime.policy import load_policy

        proposed = load_policy(folder)
        since_at = since_time("30d")
        listeners = await start_api(engine)
        client = ServiceClient(env)
        try:
            _, report = await service(client, files)  # warm up, and show what it found
            print(f"proposed {report['proposed_hash'][:12]}: {report['jobs_considered']:,} "
                  f"considered, {report['jobs_changed']:,} changed, {report['jobs_skipped']:,} "
                  f"skipped, {report['distinct_decisions']} distinct decisions")  # fmt: skip
            for count in report["counts"]:
                print(f"    {count['kind']:<17} {count['rule']:<26} {count['jobs']:>7,} jobs")
            svc, proc, read, bare = [], [], [], []
            async with engine.db.engine.connect() as conn:
                rows = await history_store.all_recorded_jobs(conn, since_at)
            jobs = len(rows)
            for n in range(args.rounds):
                svc.append((await service(client, files))[0])
                proc.append((await in_process(engine, proposed, since_at))[0])
                read.append((await read_only(engine, since_at))[0])
                if n < 3:
                    bare.append(bare_decide(rows, proposed.policy))
                print(f"  round {n + 1}: service {svc[-1]:.2f} s, in process {proc[-1]:.2f} s, "
                      f"reading {read[-1]:.2f} s"
                      + (f", bare decide {bare[-1]:.2f} s" if n < 3 else ""))  # fmt: skip
        finally:
            await listeners.close()
            await engine.close()
        print(f"{jobs:,} recorded jobs, {args.rounds} rounds (bare decide: {len(bare)}):")
        base = statistics.median(bare)
        rate = _line("service (POST /policy/simulate)", svc, jobs, base)
        _line("in process (read + simulate)", proc, jobs, base)
        _line("baseline: reading the rows alone", read, jobs)
        _line("baseline: bare facts + decide()", bare, jobs)
        med_svc, med_proc, med_read = (statistics.median(x) for x in (svc, proc, read))
        print(f"  in process takes x{med_proc / med_read:.2f} the time of reading alone; the "
              f"service x{med_svc / med_proc:.2f} that of in process")  # fmt: skip
        verdict = "within" if rate >= BUDGET else "OVER"
        print(f"budget >= {BUDGET:,} jobs/s end to end in the service: {rate:,.0f} ({verdict})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
