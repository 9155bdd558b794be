"""Latency of each standard SQL diagnostic on a pgbench database, and the tool's overhead.

The issue's setting: a throwaway PostgreSQL 15 with pg_stat_statements, `pgbench -i -s 5` then
`pgbench -T 20 -c 4`, read by a role with pg_monitor and SELECT. For each diagnostic, calls
interleaved: bare asyncpg (connect, fetch the diagnostic's SQL, close) and ours,
runtime.tools.sql.run_query(plan=False) as a diagnostic job runs it (parse and check, the
replica and write-privilege probe, BEGIN READ ONLY with timeouts, cursor fetch, ROLLBACK,
evidence). Also the query alone on an open connection (asyncpg's statement cache: no
planning), which shows how much of both arms is a new backend's first catalog reads.

Budgets (issue 21): each diagnostic p50 <= 100 ms; overhead (ours - bare, p50) <= 10 ms.

    .venv/bin/python bench/sql_diagnostics.py [--calls 30] [--scale 5] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.tools import sql  # noqa: E402
from runtime.tools.sql_diagnostics import DIAGNOSTICS  # noqa: E402
from tests.standins.pgserver import PostgresServer  # noqa: E402

LATENCY_BUDGET_MS = 100.0
OVERHEAD_BUDGET_MS = 10.0


def _pgbench(pg: PostgresServer, *args: str, timeout: float) -> None:
    command = [str(pg.bin_dir / "pgbench"), "-h", "127.0.0.1", "-p", str(pg.port)]
    subprocess.run(
        [*command, "-U", "postgres", *args, "bench"],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


async def _bare(dsn: str, statement: str) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.fetch(statement)
    finally:
        await conn.close()
    return (time.perf_counter() - started) * 1000


async def _ours(dsn: str, statement: str, limits: sql.SqlLimits) -> float:
    started = time.perf_counter()
    await sql.run_query(dsn, statement, limits, plan=False)
    return (time.perf_counter() - started) * 1000


async def _query_alone(conn: asyncpg.Connection, statement: str) -> float:
    started = time.perf_counter()
    await conn.fetch(statement)
    return (time.perf_counter() - started) * 1000


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    with PostgresServer(shared_preload_libraries=["pg_stat_statements"]) as pg:
        pg.psql("CREATE DATABASE bench")
        started = time.perf_counter()
        _pgbench(pg, "-i", "-s", str(args.scale), "-q", timeout=600)
        _pgbench(pg, "-T", str(args.seconds), "-c", str(args.clients), timeout=args.seconds + 120)
        pg.psql(
            "CREATE EXTENSION pg_stat_statements; CREATE ROLE reader LOGIN; "
            "GRANT pg_monitor TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader",
            database="bench",
        )
        took = time.perf_counter() - started
        dsn = f"postgresql://reader@127.0.0.1:{pg.port}/bench"
        limits = sql.SqlLimits()
        statements = {name: d.sql.format(limit=10) for name, d in DIAGNOSTICS.items()}
        print(
            f"pgbench -i -s {args.scale}, -T {args.seconds} -c {args.clients} ({took:.1f} s); "
            f"{args.calls} calls per arm, interleaved; p50 in ms, role reader\n"
        )
        print(f"{'diagnostic':<18} {'query':>7} {'bare':>7} {'ours':>7} {'overhead':>8}")
        worst_ours, overheads = 0.0, []
        conn = await asyncpg.connect(dsn)
        try:
            for name, statement in statements.items():
                for _ in range(3):  # warm the server's caches and both arms
                    await _bare(dsn, statement)
                    await _ours(dsn, statement, limits)
                alone, bare, ours = [], [], []
                for _ in range(args.calls):
                    alone.append(await _query_alone(conn, statement))
                    bare.append(await _bare(dsn, statement))
                    ours.append(await _ours(dsn, statement, limits))
                a, b, o = (statistics.median(x) for x in (alone, bare, ours))
                worst_ours = max(worst_ours, o)
                overheads.append(o - b)
                print(f"{name:<18} {a:7.2f} {b:7.2f} {o:7.2f} {o - b:8.2f}")
        finally:
            await conn.close()
        overhead = statistics.median(overheads)
        latency_ok = worst_ours <= LATENCY_BUDGET_MS
        overhead_ok = overhead <= OVERHEAD_BUDGET_MS
        print(
            f"\nslowest diagnostic through the tool: {worst_ours:.2f} ms "
            f"(budget <= {LATENCY_BUDGET_MS:.0f} ms): {'OK' if latency_ok else 'OVER'}"
        )
        print(
            f"overhead vs bare asyncpg, median over diagnostics: {overhead:.2f} ms, worst "
            f"{max(overheads):.2f} ms (budget <= {OVERHEAD_BUDGET_MS:.0f} ms): "
            f"{'OK' if overhead_ok else 'OVER'}"
        )
    return 0 if latency_ok and overhead_ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
