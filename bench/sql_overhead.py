"""Overhead of the SQL tool against the same statement on a bare asyncpg connection, same run.

Both arms connect, run `SELECT status, count(*) FROM orders GROUP BY 1` on a few thousand
rows and close, against a throwaway PostgreSQL (tests/standins/pgserver.py) as a read-only role,
interleaved call by call. Ours is runtime.tools.sql.run_query: parse and check, the replica
and write-privilege check, BEGIN READ ONLY with timeouts, cursor fetch, EXPLAIN (FORMAT JSON),
ROLLBACK, and the evidence (json-safe rows, CSV, text table). The breakdown times each part
on its own.

Budget (issue 5): overhead (ours - bare) <= 10 ms at the median.

    .venv/bin/python bench/sql_overhead.py [--rounds 5] [--calls 50] [--orders 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.tools import sql  # noqa: E402
from tests.standins.pgserver import PostgresServer  # noqa: E402

STATEMENT = "SELECT status, count(*) FROM orders GROUP BY 1"
BUDGET_MS = 10.0


def _setup(orders: int) -> str:
    return f"""
CREATE TABLE orders (id serial PRIMARY KEY, status text NOT NULL, amount numeric(10, 2),
                     email text);
INSERT INTO orders (status, amount, email)
    SELECT (ARRAY['new', 'paid', 'shipped', 'refunded'])[1 + g % 4], g % 997,
           'c' || g || '@example.com'
    FROM generate_series(1, {orders}) g;
CREATE ROLE reader LOGIN;
GRANT SELECT ON orders TO reader;
ANALYZE;
"""


async def _bare(dsn: str) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.fetch(STATEMENT)
    finally:
        await conn.close()
    return (time.perf_counter() - started) * 1000


async def _ours(dsn: str, limits: sql.SqlLimits) -> float:
    started = time.perf_counter()
    await sql.run_query(dsn, STATEMENT, limits)
    return (time.perf_counter() - started) * 1000


async def _parts(dsn: str, limits: sql.SqlLimits) -> dict[str, float]:
    """One call's parts, timed separately on one connection."""
    times: dict[str, float] = {}

    def lap(name: str, started: float) -> float:
        now = time.perf_counter()
        times[name] = (now - started) * 1000
        return now

    t = time.perf_counter()
    sql.check_statement(STATEMENT)
    t = lap("parse + check", t)
    conn = await asyncpg.connect(dsn)
    t = lap("connect", t)
    try:
        server = dict(await conn.fetchrow(sql._SERVER_CHECK))
        t = lap("replica / privilege check", t)
        await conn.execute(
            "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = 5000;"
            "SET LOCAL lock_timeout = 1000; SET LOCAL idle_in_transaction_session_timeout = 1;"
            "SELECT 1"
        )
        t = lap("begin read only + timeouts", t)
        prepared = await conn.prepare(STATEMENT)
        records = await (await prepared.cursor()).fetch(limits.row_cap + 1)
        columns = [a.name for a in prepared.get_attributes()]
        t = lap("statement (prepare + cursor)", t)
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {STATEMENT}")
        t = lap("explain (format json)", t)
        await conn.execute("ROLLBACK")
        t = lap("rollback", t)
    finally:
        await conn.close()
    t = lap("close", t)
    sql._evidence(STATEMENT, columns, records, limits, 1.0, plan, server)
    lap("evidence (rows, csv, table)", t)
    return times


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--orders", type=int, default=5000)
    args = parser.parse_args()

    with PostgresServer() as pg:
        pg.psql("CREATE DATABASE shop")
        pg.psql(_setup(args.orders), database="shop")
        dsn = f"postgresql://reader@127.0.0.1:{pg.port}/shop"
        limits = sql.SqlLimits(mask_columns=["email"])
        for _ in range(10):  # warm both arms and the server's caches
            await _bare(dsn)
            await _ours(dsn, limits)

        print(f"SQL tool overhead: {STATEMENT!r} on {args.orders} rows, role reader")
        print(f"{args.rounds} rounds x {args.calls} calls, interleaved; medians in ms\n")
        print(f"{'round':>5}  {'bare':>7}  {'ours':>7}  {'overhead':>8}")
        bare_medians, ours_medians, overheads = [], [], []
        parts: dict[str, list[float]] = {}
        for round_no in range(1, args.rounds + 1):
            bare, ours = [], []
            for _ in range(args.calls):
                bare.append(await _bare(dsn))
                ours.append(await _ours(dsn, limits))
            for name, ms in (await _parts(dsn, limits)).items():
                parts.setdefault(name, []).append(ms)
            b, o = statistics.median(bare), statistics.median(ours)
            bare_medians.append(b)
            ours_medians.append(o)
            overheads.append(o - b)
            print(f"{round_no:>5}  {b:7.2f}  {o:7.2f}  {o - b:8.2f}")

        overhead = statistics.median(overheads)
        print(
            f"\nmedian  bare {statistics.median(bare_medians):.2f}  "
            f"ours {statistics.median(ours_medians):.2f}  overhead {overhead:.2f} ms "
            f"(budget <= {BUDGET_MS:.0f} ms): {'OK' if overhead <= BUDGET_MS else 'OVER'}"
        )
        print("\nbreakdown of one call (median over rounds, ms):")
        for name, values in parts.items():
            print(f"  {name:<30} {statistics.median(values):7.3f}")
    return 0 if overhead <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
