"""Benchmark: audit log append rate and verify rate, SQLite and PostgreSQL.

Budgets (shared/DESIGN.md, "Performance budgets"):
  - >= 5,000 appended events/s on SQLite
  - verify 1,000,000 events in <= 3 s (i.e. >= 333,333 events/s)

Every number is compared with a baseline measured in the same run on the same engine:
  append  -> a plain INSERT of the same rows into a scratch table with no hash chain,
             with the same transaction pattern (1 per txn, or --batch per txn)
  verify  -> a bare read of every row (SELECT * FROM audit_events, streamed) with the same
             driver, so the ratio is the cost of hashing and checking

Run:  .venv/bin/python bench/audit_rate.py [--rounds 5] [--events 1000000] [--pg-events 200000]
      [--no-pg] [--profile]     (see --help)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, insert, text  # noqa: E402

from runtime import audit  # noqa: E402
from runtime.audit import ArtifactStore, NewEvent  # noqa: E402
from runtime.store import migrate  # noqa: E402
from runtime.store.database import Database  # noqa: E402

APPEND_BUDGET = 5_000.0  # events/s, SQLite
VERIFY_BUDGET_EVENTS, VERIFY_BUDGET_S = 1_000_000, 3.0
VERIFY_BUDGET = VERIFY_BUDGET_EVENTS / VERIFY_BUDGET_S  # events/s

KINDS = ("tool.shell", "tool.fs.write", "tool.fs.read", "job.state", "model.call", "git.diff")
ACTORS = ("worker:w-1", "cli:alice", "slack:U024BE7LH", "worker:w-2")

# A scratch table shaped like audit_events, with no chain and no triggers: the baseline.
_plain_md = MetaData()
plain = Table(
    "bench_plain_events",
    _plain_md,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(40)),
    Column("job_id", Integer, nullable=True),
    Column("kind", String(64)),
    Column("actor", String(200)),
    Column("data", Text),
    Column("artifacts", Text, default=""),
    Column("prev_hash", String(64)),
    Column("hash", String(64)),
    Index("ix_bench_plain_job_id", "job_id"),
)


# --- workload ------------------------------------------------------------------------


def make_events(n: int, seed: int = 7) -> list[NewEvent]:
    """Realistic events: a job id, a kind like tool.shell, ~300 bytes of data."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        tail = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz .:/_-0123456789") for _ in range(150))
        data = {
            "command": f"pytest -q tests/test_module_{i % 37}.py -k 'not slow'",
            "cwd": f"/var/lib/acp/worktrees/J-{1 + i // 20}/demo",
            "exit_code": 0 if i % 3 else 1,
            "duration_ms": rnd.randint(3, 90_000),
            "stdout_tail": tail,
            "step": i % 20,
        }
        out.append(
            NewEvent(kind=kind, actor=ACTORS[i % len(ACTORS)], job_id=1 + i // 20, data=data)
        )
    return out


def plain_rows(events: list[NewEvent]) -> list[dict]:
    """What an unchained log would write for the same events: serialise, insert. No hash."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    return [
        {
            "ts": ts,
            "job_id": e.job_id,
            "kind": e.kind,
            "actor": e.actor,
            "data": json.dumps(e.data or {}, separators=(",", ":")),
            "artifacts": "",
            "prev_hash": "",
            "hash": "",
        }
        for e in events
    ]


def payload_bytes(events: list[NewEvent]) -> float:
    return statistics.mean(len(audit.canonical_json(e.data)) for e in events[:200])


# --- stats ---------------------------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs)


class ResultTable:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(self, backend, mode, rates, base_rates, budget, verdict_budget) -> None:
        med, base = median(rates), median(base_rates) if base_rates else None
        ratio = f"{base / med:.2f}x" if base else "-"  # how many times slower than baseline
        verdict = "info" if verdict_budget is None else "PASS" if med >= verdict_budget else "FAIL"
        self.rows.append(
            (
                backend,
                mode,
                f"{med:,.0f}",
                f"{p90_low(rates):,.0f}",
                f"{base:,.0f}" if base else "-",
                ratio,
                budget,
                verdict,
            )
        )

    def print(self) -> None:
        head = (
            "backend",
            "mode",
            "events/s med",
            "p90 (slow)",
            "baseline/s",
            "cost vs base",
            "budget",
            "verdict",
        )
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(len(head))]
        line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
        print(line)
        print("-" * len(line))
        for r in self.rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def p90_low(rates: list[float]) -> float:
    """The rate 90% of rounds beat: the 10th percentile of rates (= p90 of durations)."""
    if len(rates) < 2:
        return rates[0]
    s = sorted(rates)
    k = (len(s) - 1) * 0.1
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- append --------------------------------------------------------------------------


async def create_plain(db: Database) -> None:
    async with db.begin() as conn:
        await conn.run_sync(_plain_md.create_all)


async def append_chain(db: Database, events: list[NewEvent], batch: int) -> float:
    started = time.perf_counter()
    if batch == 1:
        for event in events:
            async with db.begin() as conn:
                await audit.append(conn, db, event)
    else:
        for i in range(0, len(events), batch):
            async with db.begin() as conn:
                await audit.append_many(conn, db, events[i : i + batch])
    return len(events) / (time.perf_counter() - started)


async def append_plain(db: Database, events: list[NewEvent], batch: int) -> float:
    started = time.perf_counter()
    stmt = insert(plain)
    if batch == 1:
        for event in events:
            async with db.begin() as conn:
                await conn.execute(stmt, plain_rows([event]))
    else:
        for i in range(0, len(events), batch):
            async with db.begin() as conn:
                await conn.execute(stmt, plain_rows(events[i : i + batch]))
    return len(events) / (time.perf_counter() - started)


async def bench_append(db: Database, backend: str, args, table: ResultTable) -> None:
    await create_plain(db)
    budget = f">={APPEND_BUDGET:,.0f}/s" if backend == "sqlite" else "(sqlite only)"
    verdict_budget = APPEND_BUDGET if backend == "sqlite" else None
    for label, batch, n in (
        ("append 1/txn", 1, args.single_n),
        (f"append {args.batch}/txn", args.batch, args.batch_n),
    ):
        events = make_events(n, seed=11)
        # Warm-up: connections in the pool, statement caches, table pages.
        await append_chain(db, events[: min(50, n)], min(batch, 50))
        await append_plain(db, events[: min(50, n)], min(batch, 50))
        chain, base = [], []
        for r in range(args.rounds):
            # Alternate the order so drift on a noisy machine hits both sides equally.
            if r % 2 == 0:
                chain.append(await append_chain(db, events, batch))
                base.append(await append_plain(db, events, batch))
            else:
                base.append(await append_plain(db, events, batch))
                chain.append(await append_chain(db, events, batch))
            print(
                f"  {backend:<10} {label:<16} round {r + 1}/{args.rounds}: "
                f"chain {chain[-1]:>9,.0f}/s  plain {base[-1]:>9,.0f}/s",
                flush=True,
            )
        table.add(backend, f"{label} ({n:,} ev)", chain, base, budget, verdict_budget)


# --- verify --------------------------------------------------------------------------


async def count_events(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM audit_events"))).scalar_one()


async def fill(db: Database, target: int, chunk: int) -> None:
    have = await count_events(db)
    if have >= target:
        return
    template = make_events(chunk, seed=3)
    started = time.perf_counter()
    last_print = started
    done = have
    while done < target:
        n = min(chunk, target - done)
        async with db.begin() as conn:
            await audit.append_many(conn, db, template[:n])
        done += n
        now = time.perf_counter()
        if now - last_print >= 5 or done >= target:
            rate = (done - have) / (now - started)
            eta = (target - done) / rate if rate else 0
            print(
                f"    filled {done:>9,}/{target:,} events ({rate:,.0f}/s, eta {eta:.0f}s)",
                flush=True,
            )
            last_print = now


async def bare_read(db: Database) -> float:
    """SELECT * FROM audit_events, every row touched, same engine and driver, no hashing."""
    started = time.perf_counter()
    n = 0
    async with db.engine.connect() as conn:
        result = await conn.stream(text("SELECT * FROM audit_events"))
        async for part in result.partitions(20_000):
            for _row in part:
                n += 1
    return n / (time.perf_counter() - started)


async def paged_read(db: Database) -> float:
    """The exact reader verify uses (audit._rows: keyset pages of 20,000), no hashing."""
    started = time.perf_counter()
    n = 0
    async for rows in audit._rows(db):
        for _row in rows:
            n += 1
    return n / (time.perf_counter() - started)


async def run_verify(db: Database, store: ArtifactStore, expect: int) -> float:
    started = time.perf_counter()
    report = await audit.verify(db, store)
    took = time.perf_counter() - started
    if report.events != expect:
        raise SystemExit(f"verify saw {report.events} events, expected {expect}")
    return report.events / took


async def hash_only(db: Database, sample: int = 200_000) -> float:
    """CPU cost of verify's per-row work alone (f-string + encode + sha256 + compare)."""
    rows = []
    async for page in audit._rows(db):
        rows.extend(page)
        if len(rows) >= sample:
            break
    rows = rows[:sample]
    sha256 = hashlib.sha256
    started = time.perf_counter()
    prev = audit.GENESIS
    for seq, ts, job_id, kind, actor, arts, data, prev_hash, digest in rows:
        job = "" if job_id is None else job_id
        line = f"{prev}\n{seq}\n{ts}\n{job}\n{kind}\n{actor}\n{arts}\n"
        if sha256(line.encode() + data.encode()).hexdigest() != digest or prev_hash != prev:
            raise SystemExit(f"hash mismatch at {seq}")
        prev = digest
    return len(rows) / (time.perf_counter() - started)


async def bench_verify(
    db: Database, backend: str, n: int, args, table: ResultTable, store: ArtifactStore
) -> None:
    # audit_events already holds the append rounds' events; top up to exactly n.
    have = await count_events(db)
    if have > n:
        print(f"  note: {backend} already holds {have:,} events (> {n:,}); verifying all of them")
        n = have
    print(f"  filling {backend} to {n:,} events with append_many({args.fill_chunk:,}/txn)...")
    t0 = time.perf_counter()
    await fill(db, n, args.fill_chunk)
    print(f"  filled in {time.perf_counter() - t0:.1f}s", flush=True)
    if backend == "postgresql":
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE audit_events"))
    await bare_read(db)  # warm the cache once (page cache / shared buffers)
    ver, base, paged = [], [], []
    for r in range(args.verify_rounds):
        base.append(await bare_read(db))
        paged.append(await paged_read(db))
        ver.append(await run_verify(db, store, n))
        print(
            f"  {backend:<10} verify round {r + 1}/{args.verify_rounds}: "
            f"verify {ver[-1]:>10,.0f}/s ({n / ver[-1]:.2f}s)  "
            f"bare read {base[-1]:>10,.0f}/s ({n / base[-1]:.2f}s)  "
            f"paged read {paged[-1]:>10,.0f}/s ({n / paged[-1]:.2f}s)",
            flush=True,
        )
    hashing = await hash_only(db)
    print(f"  {backend:<10} hash-only loop (CPU, in memory): {hashing:,.0f}/s")
    if backend == "sqlite":
        budget = f"1M in <={VERIFY_BUDGET_S:.0f}s (>={VERIFY_BUDGET:,.0f}/s)"
        verdict_budget = VERIFY_BUDGET
    else:
        budget = "(sqlite only)"
        verdict_budget = None
    t_1m = VERIFY_BUDGET_EVENTS / median(ver)
    table.add(backend, f"verify ({n:,} ev; 1M ~{t_1m:.2f}s)", ver, base, budget, verdict_budget)
    table.add(backend, "  diag: paged read (verify's reader)", paged, base, "-", None)
    if args.profile:
        await profile_verify(db, store, backend)


async def profile_verify(db: Database, store: ArtifactStore, backend: str) -> None:
    prof = cProfile.Profile()
    prof.enable()
    await audit.verify(db, store)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    print(f"\n  cProfile of audit.verify on {backend} (by own time; cProfile adds overhead):")
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    for line in lines[max(0, start - 3) :]:
        if line.strip():
            print("   ", line[:150])


# --- main ----------------------------------------------------------------------------


async def run_backend(backend: str, url: str, n_verify: int, args, table: ResultTable, tmp: Path):
    print(f"\n== {backend} ({url.split('@')[-1] if '@' in url else url})", flush=True)
    db = Database(url)
    try:
        await migrate.upgrade(db)
        await bench_append(db, backend, args, table)
        if n_verify > 0:
            store = ArtifactStore(tmp / f"artifacts-{backend}")
            await bench_verify(db, backend, n_verify, args, table, store)
    finally:
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="append rounds per mode (5)")
    parser.add_argument("--verify-rounds", type=int, default=3, help="verify rounds (3)")
    parser.add_argument("--single-n", type=int, default=1_000, help="events per round, 1/txn")
    parser.add_argument("--batch", type=int, default=500, help="events per txn, batched mode")
    parser.add_argument("--batch-n", type=int, default=20_000, help="events per round, batched")
    parser.add_argument("--events", type=int, default=1_000_000, help="SQLite verify size")
    parser.add_argument("--pg-events", type=int, default=200_000, help="PostgreSQL verify size")
    parser.add_argument("--fill-chunk", type=int, default=10_000, help="events per fill txn")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="cProfile one verify per backend")
    args = parser.parse_args()

    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="acp-bench-audit-"))
    table = ResultTable()
    events = make_events(200)
    print(
        f"audit_rate: rounds={args.rounds}, payload ~{payload_bytes(events):.0f} bytes of JSON "
        f"data per event, python {sys.version.split()[0]}, {os.cpu_count()} cpus"
    )
    print("cost vs base = baseline rate / measured rate (1.00x = free, 3.00x = 3 times slower)")
    try:
        sqlite_url = f"sqlite+aiosqlite:///{tmp / 'audit.db'}"
        asyncio.run(run_backend("sqlite", sqlite_url, args.events, args, table, tmp))
        if not args.no_pg:
            from tests.standins.pgserver import PostgresServer

            t0 = time.perf_counter()
            with PostgresServer() as pg:
                took = time.perf_counter() - t0
                print(f"\n(started PostgreSQL on 127.0.0.1:{pg.port} in {took:.1f}s)")
                url = pg.create_database("acp_bench")
                asyncio.run(run_backend("postgresql", url, args.pg_events, args, table, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n== results: medians of {args.rounds} append / {args.verify_rounds} verify rounds")
    table.print()
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
