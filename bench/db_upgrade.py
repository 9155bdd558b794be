"""Benchmark: upgrading a 0.1.0 database (100,000 jobs, 1,000,000 audit events) to this code.

Budget (issue 13): the upgrade takes <= 60 s on SQLite.

The database is made as 0.1.0 made it (the baseline schema, no version table), filled with
realistic rows (jobs with their JSON, a valid hash chain of events, a delivered outbox), then
copied once per round (SQLite: the file; PostgreSQL: CREATE DATABASE ... TEMPLATE) and
upgraded with `migrate.upgrade`, exactly what `acp db upgrade` and `acp serve` run.

Baseline, same run, same copy: the upgrade's own DDL (the two CREATE INDEX statements of
0002, the baseline's triggers) run as plain SQL on the same driver, so `cost vs base` is what
Alembic, the lock, the adoption checks and the audit event add. Also reported: the
open-time check once the database is current (`migrate.prepare`, what every command pays)
against 0.1.0's `create_all` at every start, and `audit verify` after the upgrade (the
chain must verify: the upgrade never rewrote an event).

Run:  .venv/bin/python bench/db_upgrade.py [--rounds 3] [--jobs 100000] [--events 1000000]
      [--no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from runtime import audit  # noqa: E402
from runtime.audit import ArtifactStore  # noqa: E402
from runtime.store import migrate  # noqa: E402
from runtime.store.database import Database  # noqa: E402

BUDGET_S = 60.0
TS = "2026-11-30T09:00:00.000000+00:00"
DDL_0002 = (
    "CREATE INDEX ix_outbox_pending ON outbox (door, id) WHERE delivered_at IS NULL",
    "DROP INDEX ix_outbox_door",
    "CREATE INDEX ix_jobs_team_created ON jobs (team, created_at)",
    "DROP INDEX ix_jobs_team",
)


def job_row(n: int) -> tuple:
    spec = {"type": "code", "target": "demo", "instruction": f"run `make test` #{n}"}
    decision = {"allowed": True, "rule_ids": ["roles.engineer"], "needs_approval": ["merge"]}
    result = {"reason": "merged", "merge_commit": f"{n:040x}"}
    model = {"model": "direct", "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    return (
        n, "succeeded", "code", "demo", f"user{n % 50}", "cli", spec["instruction"],
        json.dumps(spec), json.dumps(decision), "{}", "ab" * 32, '["fs.read", "shell"]',
        None, None, "[]", "[]", json.dumps(model), json.dumps(result), None, None, None,
        f"team{n % 7}", 0.0, TS, TS,
    )  # fmt: skip


def event_rows(count: int, jobs: int):
    prev = audit.GENESIS
    for seq in range(1, count + 1):
        job = (seq % jobs) + 1
        data = json.dumps({"job": f"J-{job}", "command": "make test", "exit": 0, "n": seq})
        digest = audit.event_hash(prev, seq, TS, job, "tool.shell", "worker:w1", "", data)
        yield (seq, TS, job, "tool.shell", "worker:w1", data, "", prev, digest)
        prev = digest


async def make_legacy(url: str) -> None:
    """The 0.1.0 schema: the baseline, without the version table 0.1.0 never had."""
    db = Database(url)
    try:
        await migrate.upgrade(db, migrate.BASELINE)
        async with db.begin() as conn:
            await conn.execute(text(f"DROP TABLE {migrate.VERSION_TABLE}"))
    finally:
        await db.close()


def fill_sqlite(path: Path, jobs: int, events: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO jobs VALUES ({','.join('?' * 25)})", map(job_row, range(1, jobs + 1))
        )
        conn.executemany(
            "INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?)", event_rows(events, jobs)
        )
        conn.executemany(
            "INSERT INTO outbox (door, job_id, kind, data, created_at, delivered_at, attempts) "
            "VALUES ('slack', ?, 'job.card', '{}', ?, ?, 1)",
            ((n, TS, TS) for n in range(1, jobs + 1)),
        )
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def fill_postgres(dsn: str, jobs: int, events: int) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY jobs FROM STDIN") as copy:
            for row in map(job_row, range(1, jobs + 1)):
                copy.write_row(row)
        with cur.copy("COPY audit_events FROM STDIN") as copy:
            for row in event_rows(events, jobs):
                copy.write_row(row)
        cur.execute(
            "INSERT INTO outbox (door, job_id, kind, data, created_at, delivered_at, attempts) "
            "SELECT 'slack', n, 'job.card', '{}', now(), now(), 1 FROM generate_series(1, %s) n",
            (jobs,),
        )
        cur.execute("ANALYZE")


async def timed_upgrade(url: str) -> float:
    db = Database(url)
    try:
        started = time.perf_counter()
        found, applied = await migrate.upgrade(db, actor="bench")
        took = time.perf_counter() - started
        assert found.state == "legacy" and applied[-1] == migrate.HEAD, (found, applied)
        return took
    finally:
        await db.close()


async def timed_plain_ddl(url: str, dialect: str) -> float:
    """What the upgrade has to do at the database, as bare statements on the same driver."""
    db = Database(url)
    try:
        triggers = _baseline_triggers(dialect)
        started = time.perf_counter()
        async with db.begin() as conn:
            for statement in (*triggers, *DDL_0002):
                await conn.execute(text(statement))
        return time.perf_counter() - started
    finally:
        await db.close()


def _baseline_triggers(dialect: str) -> tuple[str, ...]:
    import importlib.util

    path = migrate.MIGRATIONS_DIR / "versions" / "0001_baseline.py"
    spec = importlib.util.spec_from_file_location("baseline", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._SQLITE_TRIGGERS if dialect == "sqlite" else module._POSTGRES_TRIGGERS


async def timed_open(url: str, rounds: int) -> tuple[float, float]:
    """(median migrate.prepare at head, median 0.1.0-style create_all) in ms."""
    from runtime.store.models import Base

    checks, creates = [], []
    for _ in range(rounds):
        db = Database(url)
        try:
            async with db.engine.connect() as conn:  # both timings start with a pooled connection
                await conn.execute(text("SELECT 1"))
            started = time.perf_counter()
            await migrate.prepare(db, may_upgrade=False)
            checks.append(time.perf_counter() - started)
            started = time.perf_counter()
            async with db.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            creates.append(time.perf_counter() - started)
        finally:
            await db.close()
    return statistics.median(checks) * 1000, statistics.median(creates) * 1000


async def verify_seconds(url: str, tmp: Path) -> tuple[int, float]:
    db = Database(url)
    try:
        started = time.perf_counter()
        report = await audit.verify(db, ArtifactStore(tmp / "artifacts"))
        return report.events, time.perf_counter() - started
    finally:
        await db.close()


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))


async def run_sqlite(args, tmp: Path, table: list[list[str]]) -> None:
    legacy = tmp / "legacy.db"
    await make_legacy(f"sqlite+aiosqlite:///{legacy}")
    started = time.perf_counter()
    fill_sqlite(legacy, args.jobs, args.events)
    took = time.perf_counter() - started
    size = legacy.stat().st_size / 1e6
    print(
        f"sqlite: filled {args.jobs:,} jobs, {args.events:,} events ({size:.0f} MB) in {took:.1f}s"
    )
    ups, bases = [], []
    for n in range(args.rounds):
        for kind, out in (("upgrade", ups), ("plain", bases)):
            copy = tmp / f"{kind}-{n}.db"
            shutil.copyfile(legacy, copy)
            url = f"sqlite+aiosqlite:///{copy}"
            out.append(
                await (timed_upgrade(url) if kind == "upgrade" else timed_plain_ddl(url, "sqlite"))
            )
            if kind == "upgrade" and n == args.rounds - 1:
                events, seconds = await verify_seconds(url, tmp)
                assert events == args.events + 1, events  # + the schema.upgraded event
                check, create = await timed_open(url, 10)
            else:
                copy.unlink()
        print(f"  round {n + 1}: upgrade {ups[-1]:.2f}s, plain DDL {bases[-1]:.2f}s", flush=True)
    add(table, "sqlite", ups, bases, seconds, check, create)


async def run_postgres(args, tmp: Path, table: list[list[str]]) -> None:
    from tests.standins.pgserver import PostgresServer

    with PostgresServer() as pg:
        url = pg.create_database("legacy")
        await make_legacy(url)
        started = time.perf_counter()
        fill_postgres(pg.dsn.rsplit("/", 1)[0] + "/legacy", args.jobs, args.events)
        print(f"postgresql: filled in {time.perf_counter() - started:.1f}s")
        ups, bases = [], []
        for n in range(args.rounds):
            for kind, out in (("upgrade", ups), ("plain", bases)):
                name = f"{kind}_{n}"
                pg.psql(f"CREATE DATABASE {name} TEMPLATE legacy")
                copy = pg.url_for(name)
                timed = (
                    timed_upgrade(copy)
                    if kind == "upgrade"
                    else timed_plain_ddl(copy, "postgresql")
                )
                out.append(await timed)
                if kind == "upgrade" and n == args.rounds - 1:
                    events, seconds = await verify_seconds(copy, tmp)
                    assert events == args.events + 1, events
                    check, create = await timed_open(copy, 10)
                pg.drop_database(name)
            print(
                f"  round {n + 1}: upgrade {ups[-1]:.2f}s, plain DDL {bases[-1]:.2f}s", flush=True
            )
        add(table, "postgresql", ups, bases, seconds, check, create)


def add(table, backend, ups, bases, verify_s, check_ms, create_ms) -> None:
    up, base = statistics.median(ups), statistics.median(bases)
    verdict = ("PASS" if up <= BUDGET_S else "FAIL") if backend == "sqlite" else "info"
    table.append([
        backend, f"{up:.2f}", f"{max(ups):.2f}", f"{base:.2f}", f"{up / base:.2f}x",
        f"{verify_s:.2f}", f"{check_ms:.2f} / {create_ms:.2f}", f"<= {BUDGET_S:.0f} s", verdict,
    ])  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    table: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="acp-bench-upgrade-") as tmp:
        await run_sqlite(args, Path(tmp), table)
        if not args.no_pg:
            await run_postgres(args, Path(tmp), table)
    head = ["backend", "upgrade s med", "max", "plain DDL s", "cost vs base", "verify after s",
            "open ms: check / 0.1.0 create_all", "budget", "verdict"]  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    print()
    print(row(head, widths))
    print("-" * len(row(head, widths)))
    for cells in table:
        print(row(cells, widths))
    return 0 if all(cells[-1] != "FAIL" for cells in table) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
