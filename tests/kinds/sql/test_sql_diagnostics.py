"""The standard diagnostics as a DBA reads them, on a real pgbench workload.

One throwaway server per module with pg_stat_statements loaded: `pgbench -i -s 1` then
`pgbench -T 3 -c 2` in database `bench`, while database `other` on the same server runs a
slow statement of its own. The diagnostics run as `dba`, a role with pg_monitor and SELECT,
through the SQL tool (run_query), as a person's request would.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from decimal import Decimal

import asyncpg
import pytest

from runtime.jobs import JobState
from runtime.tools.sql import SqlLimits, check_statement, run_query
from runtime.tools.sql_diagnostics import DIAGNOSTICS, match_diagnostic
from tests.kinds.sql.test_sql_jobs import (  # noqa: F401 (replica is a fixture)
    artifact,
    policy_dir,
    replica,
    settle,
    sql_engine,
)
from tests.standins.pgserver import PostgresServer

OTHER_MARKER = "other_database_marker"
SETUP = """
CREATE EXTENSION pg_stat_statements;
CREATE ROLE dba LOGIN;
GRANT pg_monitor TO dba;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO dba;
CREATE TABLE bloated (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = false);
INSERT INTO bloated SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g;
DELETE FROM bloated WHERE id % 10 <> 0;
CREATE TABLE fresh (id int PRIMARY KEY, payload text);
INSERT INTO fresh SELECT g, repeat('y', 100) FROM generate_series(1, 20000) g;
GRANT SELECT ON bloated, fresh TO dba;
ANALYZE bloated;
ANALYZE fresh;
CREATE INDEX accounts_aid_copy ON pgbench_accounts (aid);
"""


def _pgbench(pg: PostgresServer, *args: str) -> subprocess.Popen[bytes]:
    command = [str(pg.bin_dir / "pgbench"), "-h", "127.0.0.1", "-p", str(pg.port)]
    return subprocess.Popen(
        [*command, "-U", "postgres", *args, "bench"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(scope="module")
def pg():
    with PostgresServer(shared_preload_libraries=["pg_stat_statements"]) as server:
        server.psql("CREATE DATABASE bench")
        server.psql("CREATE DATABASE other")
        init = _pgbench(server, "-i", "-s", "1", "-q")
        assert init.wait(timeout=60) == 0, init.stderr.read()
        run = _pgbench(server, "-T", "3", "-c", "2")
        # meanwhile, in another database on the same server, statements slower than any here
        server.psql(
            f"SELECT pg_sleep(0.3) AS {OTHER_MARKER}; SELECT pg_sleep(0.3) AS {OTHER_MARKER}",
            database="other",
        )
        assert run.wait(timeout=60) == 0, run.stderr.read()
        # the extension after the workload, so the DDL of -i counts (as on the server)
        server.psql(SETUP, database="bench")
        yield server


def _as_postgres(pg: PostgresServer, *command: str) -> None:
    """A server tool run as the postgres user (PostgreSQL refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tool = [str(pg.bin_dir / command[0]), *command[1:]]
    subprocess.run([*prefix, *tool], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def standby(pg: PostgresServer):
    """A streaming replica of the module's server (pg_basebackup -R): the DSN of its bench."""
    data = pg.data_dir.parent / "standby"
    _as_postgres(pg, "pg_basebackup", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                 "-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync")  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"\nport = {port}\n")
    _as_postgres(pg, "pg_ctl", "start", "-D", str(data), "-l", str(data / "log"), "-w", "-t", "30")
    try:
        yield f"postgresql://dba@127.0.0.1:{port}/bench"
    finally:
        _as_postgres(pg, "pg_ctl", "stop", "-D", str(data), "-m", "immediate")


@pytest.fixture(scope="module")
def dba(pg: PostgresServer) -> str:
    return f"postgresql://dba@127.0.0.1:{pg.port}/bench"


@pytest.fixture(scope="module")
def superuser(pg: PostgresServer) -> str:
    return f"postgresql://postgres@127.0.0.1:{pg.port}/bench"


async def diagnose(dsn: str, words: str, expect: str) -> list[dict]:
    matched = match_diagnostic(words)
    assert matched is not None and matched[0] == expect, matched
    evidence = await run_query(dsn, matched[1], SqlLimits(), plan=False)
    assert evidence.plan is None
    return [dict(zip(evidence.columns, row, strict=True)) for row in evidence.rows]


# --- words -> diagnostic -------------------------------------------------------------------

PHRASES = [
    ("top 10 slowest queries", "top_total_time"),
    ("slow queries", "top_total_time"),
    ("top queries", "top_total_time"),
    ("statements by total time", "top_total_time"),
    ("slowest queries by mean time", "top_mean_time"),
    ("highest average execution time", "top_mean_time"),
    ("most called statements", "top_calls"),
    ("top queries by calls", "top_calls"),
    ("most frequent statements", "top_calls"),
    ("queries doing the most I/O", "top_io"),
    ("top statements by reads", "top_io"),
    ("cache hit ratio", "cache_hit"),
    ("table sizes", "table_sizes"),
    ("largest tables", "table_sizes"),
    ("table bloat", "table_sizes"),
    ("unused indexes", "unused_indexes"),
    ("indexes", "unused_indexes"),
    ("index sizes", "table_sizes"),
    ("table sizes and indexes", "table_sizes"),
    ("index usage", "unused_indexes"),
    ("duplicate indexes", "duplicate_indexes"),
    ("seq scans", "seq_scans"),
    ("tables with the most sequential scans", "seq_scans"),
    ("vacuum", "vacuum"),
    ("autovacuum status", "vacuum"),
    ("wraparound", "vacuum"),
    ("last analyze per table", "vacuum"),
    ("dead tuples", "vacuum"),
    ("replication lag", "replication_lag"),
    ("replica lag", "replication_lag"),
    ("locks", "locks"),
    ("blocking sessions", "locks"),
    ("who holds locks", "locks"),
    ("long running queries", "long_running"),
    ("idle in transaction", "long_running"),
    ("idle in transaction sessions", "long_running"),
]


@pytest.mark.parametrize(("words", "name"), PHRASES)
def test_natural_phrases_pick_the_diagnostic_a_dba_means(words, name):
    matched = match_diagnostic(words)
    assert matched is not None and matched[0] == name


def test_every_diagnostic_is_picked_by_its_own_name_and_passes_the_check():
    for name, diagnostic in DIAGNOSTICS.items():
        matched = match_diagnostic(name.replace("_", " "))
        assert matched is not None and matched[0] == name
        check_statement(diagnostic.sql.format(limit=10))


def test_acp_sql_diagnostics_lists_each_name_what_it_shows_and_its_phrases(capsys):
    from bot.cli import main

    assert main(["sql", "diagnostics"]) == 0
    out = capsys.readouterr().out
    for name, diagnostic in DIAGNOSTICS.items():
        assert f"\n{name}\n" in out
        assert diagnostic.description.split()[0] in out
    assert "'largest tables'" in out and "'idle in transaction'" in out and "'slowest'" in out
    assert main(["sql", "diagnostics", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listed] == list(DIAGNOSTICS)
    assert "wraparound" in listed[[d["name"] for d in listed].index("vacuum")]["phrases"]


# --- statement lists ---------------------------------------------------------------------


async def test_the_hot_update_comes_first_by_total_time_and_the_numbers_are_pg_stat_statements(
    dba,
):
    rows = await diagnose(dba, "top 10 slowest queries", "top_total_time")
    assert rows[0]["query"].startswith("UPDATE pgbench_branches")
    conn = await asyncpg.connect(dba)
    try:
        direct = await conn.fetch(
            "SELECT queryid, calls, total_exec_time, mean_exec_time, stddev_exec_time, rows, "
            "shared_blks_hit, shared_blks_read FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') "
            "AND userid <> 'dba'::regrole"
        )
    finally:
        await conn.close()
    everything = sum(r["total_exec_time"] for r in direct)
    by_id = {r["queryid"]: r for r in direct}
    top = sorted(direct, key=lambda r: r["total_exec_time"], reverse=True)[:10]
    assert [row["queryid"] for row in rows] == [r["queryid"] for r in top]
    for row in rows:
        want = by_id[row["queryid"]]
        blocks = want["shared_blks_hit"] + want["shared_blks_read"]
        assert row["calls"] == want["calls"] and row["rows"] == want["rows"]
        assert Decimal(row["total_ms"]) == round(Decimal(want["total_exec_time"]), 2)
        assert Decimal(row["mean_ms"]) == round(Decimal(want["mean_exec_time"]), 3)
        assert Decimal(row["stddev_ms"]) == round(Decimal(want["stddev_exec_time"]), 3)
        share = round(Decimal(100 * want["total_exec_time"] / everything), 1)
        assert abs(Decimal(row["share_pct"]) - share) <= Decimal("0.1")
        if blocks:
            hit = round(Decimal(100 * want["shared_blks_hit"] / blocks), 1)
            assert abs(Decimal(row["hit_pct"]) - hit) <= Decimal("0.1")
    assert Decimal(rows[0]["share_pct"]) > 20


async def test_statement_lists_leave_out_other_databases_and_the_tools_own_probe(dba, superuser):
    await diagnose(dba, "slowest", "top_total_time")  # the tool's probe has run as dba
    conn = await asyncpg.connect(superuser)
    try:  # both are in pg_stat_statements, server-wide: the diagnostics leave them out
        everywhere = await conn.fetch("SELECT query FROM pg_stat_statements")
    finally:
        await conn.close()
    assert any(OTHER_MARKER in r["query"] for r in everywhere)
    assert any("pg_is_in_recovery()" in r["query"] for r in everywhere)
    for words, name in [
        ("slowest", "top_total_time"),
        ("mean time", "top_mean_time"),
        ("most called", "top_calls"),
        ("i/o", "top_io"),
    ]:
        rows = await diagnose(dba, f"top 100 queries by {words}", name)
        assert rows, name
        queries = " ".join(row["query"] for row in rows)
        assert OTHER_MARKER not in queries and "pg_is_in_recovery" not in queries
        assert "scope_total_ms" not in queries  # nor the dba's own diagnostics
    by_mean = await diagnose(dba, "top 3 by mean time", "top_mean_time")
    assert len(by_mean) == 3
    assert float(by_mean[0]["mean_ms"]) >= float(by_mean[1]["mean_ms"])


# --- tables and indexes ------------------------------------------------------------------


async def test_table_sizes_estimate_the_bloat_of_a_table_with_nine_rows_in_ten_deleted(dba):
    rows = await diagnose(dba, "largest tables", "table_sizes")
    by_name = {row["relation"]: row for row in rows}
    assert rows[0]["relation"] == "pgbench_accounts" and rows[0]["kind"] == "table"
    assert float(by_name["bloated"]["est_bloat_pct"]) > 70
    assert float(by_name["fresh"]["est_bloat_pct"]) < 20
    assert by_name["pgbench_accounts_pkey"]["kind"] == "index"
    assert by_name["pgbench_accounts_pkey"]["on_table"] == "pgbench_accounts"


async def test_cache_hit_ratio_for_the_database_then_each_table_and_index(dba):
    rows = await diagnose(dba, "cache hit ratio", "cache_hit")
    assert rows[0]["kind"] == "database" and rows[0]["relation"] == "bench"
    assert 0 < float(rows[0]["hit_pct"]) <= 100
    kinds = {(row["kind"], row["relation"]) for row in rows}
    assert ("table", "pgbench_accounts") in kinds and ("index", "pgbench_accounts_pkey") in kinds


async def test_unused_indexes_put_droppable_ones_first_and_mark_primary_keys_keep(dba):
    rows = await diagnose(dba, "unused indexes", "unused_indexes")
    names = [row["index"] for row in rows]
    assert names[0] == "accounts_aid_copy" and rows[0]["verdict"] == "candidate to drop"
    branches = rows[names.index("pgbench_branches_pkey")]  # one branch: always a seq scan
    assert branches["enforces"] == "primary key" and branches["verdict"].startswith("keep")
    assert "pgbench_accounts_pkey" not in names  # scanned by every transaction


async def test_duplicate_index_found_with_the_primary_key_it_repeats(dba):
    rows = await diagnose(dba, "duplicate indexes", "duplicate_indexes")
    [dup] = [row for row in rows if row["index"] == "accounts_aid_copy"]
    assert dup["how"] == "duplicate" and dup["covered_by"] == "pgbench_accounts_pkey"
    assert dup["covered_by_enforces"] == "primary key" and dup["index_enforces"] is None


async def test_seq_scan_hot_spots_with_rows_read(dba):
    rows = await diagnose(dba, "sequential scans", "seq_scans")
    by_name = {row["relation"]: row for row in rows}
    tellers = by_name["pgbench_tellers"]  # ten tellers, read by a seq scan per transaction
    assert tellers["seq_scan"] > 100 and tellers["rows_per_scan"] == 10
    assert tellers["seq_tup_read"] >= tellers["seq_scan"] * 10


async def test_vacuum_shows_dead_rows_and_the_distance_to_wraparound(dba):
    rows = await diagnose(dba, "wraparound", "vacuum")
    database = rows[0]
    assert database["kind"] == "database" and database["relation"] == "bench"
    assert 0 < database["xid_age"] < 1_000_000
    assert database["xids_to_wraparound_stop"] == 2**31 - 3_000_000 - database["xid_age"]
    bloated = next(row for row in rows if row["relation"] == "bloated")
    assert bloated["dead_rows"] >= 17000 and bloated["vacuum_due"] is True


async def test_replication_lag_on_a_primary_says_it_is_not_a_replica(dba):
    [row] = await diagnose(dba, "replication lag", "replication_lag")
    assert row["status"] == "not a replica"
    assert "pg_is_in_recovery() is false" in row["detail"]
    assert row["replay_lag_bytes"] is None


async def test_replication_lag_on_a_streaming_replica_shows_wal_and_replay_delay(
    standby, superuser
):
    primary = await asyncpg.connect(superuser)
    try:  # a commit on the primary, so the replica has one to replay
        await primary.execute("UPDATE pgbench_branches SET bbalance = bbalance")
        written = await primary.fetchval("SELECT pg_current_wal_insert_lsn()::text")
    finally:
        await primary.close()
    deadline = time.monotonic() + 20
    while True:  # until the replica has replayed the primary's commit
        [row] = await diagnose(standby, "replica lag", "replication_lag")
        if _lsn(row["replayed_lsn"]) >= _lsn(written) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert row["status"] == "replica" and row["detail"] == "streaming"
    assert _lsn(row["received_lsn"]) >= _lsn(written)
    assert _lsn(row["received_lsn"]) - _lsn(row["replayed_lsn"]) == int(row["replay_lag_bytes"])
    assert row["last_replayed_commit"] is not None and row["since_last_replayed_commit"]


def _lsn(text: str | None) -> int:
    high, low = (text or "0/0").split("/")
    return (int(high, 16) << 32) + int(low, 16)


# --- sessions ----------------------------------------------------------------------------


async def test_locks_show_the_blocking_chain_of_one_session_waiting_on_another(dba, superuser):
    holder = await asyncpg.connect(superuser)
    waiter = await asyncpg.connect(superuser)
    try:
        await holder.execute("BEGIN; UPDATE pgbench_branches SET bbalance = bbalance")
        holder_pid = await holder.fetchval("SELECT pg_backend_pid()")
        waiter_pid = await waiter.fetchval("SELECT pg_backend_pid()")
        waiting = asyncio.create_task(waiter.execute("UPDATE pgbench_branches SET bbalance = 0"))
        rows: list[dict] = []
        for _ in range(100):  # until the server sees it waiting
            rows = await diagnose(dba, "blocking", "locks")
            if any(row["pid"] == waiter_pid for row in rows):
                break
            await asyncio.sleep(0.05)
        root = next(row for row in rows if row["pid"] == holder_pid)
        blocked = next(row for row in rows if row["pid"] == waiter_pid)
        assert root["chain"] == str(holder_pid) and root["root_blocker"] == holder_pid
        assert blocked["chain"] == f"{holder_pid} -> {waiter_pid}"
        assert blocked["blocked_by"] == [holder_pid]
        assert blocked["waiting_for"].startswith("ShareLock on a row locked by transaction")
        assert "RowExclusiveLock on pgbench_branches" in root["holds"]
        assert "RowExclusiveLock on pgbench_branches" in blocked["holds"]
        assert blocked["query"] == "UPDATE pgbench_branches SET bbalance = 0"
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(waiting, 10)
    finally:
        await holder.close()
        if not waiting.done():
            waiting.cancel()
        await waiter.close()


async def test_an_idle_in_transaction_session_is_listed(dba, superuser):
    idle = await asyncpg.connect(superuser)
    try:
        await idle.execute("BEGIN; SELECT count(*) FROM pgbench_tellers")
        pid = await idle.fetchval("SELECT pg_backend_pid()")
        rows = await diagnose(dba, "idle in transaction", "long_running")
    finally:
        await idle.close()
    [row] = [row for row in rows if row["pid"] == pid]
    assert row["state"] == "idle in transaction" and row["in_transaction_for"]


# --- a job ------------------------------------------------------------------------------


async def test_a_sizes_job_runs_the_diagnostic_and_keeps_no_plan_of_the_catalog_query(
    sql_engine,  # noqa: F811 (the fixture, imported above)
):
    job = await sql_engine.submit(
        "sql payments-replica: largest tables", sql_engine.actor("cli", "carol")
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["diagnostic"] == "table_sizes"
    assert "orders" in artifact(sql_engine, job, "result.csv")
    assert "plan.json" not in {ref.name for ref in job.artifacts}


async def test_a_table_sizes_job_runs_the_sizes_diagnostic_not_the_statement_table_sizes(
    sql_engine,  # noqa: F811 (the fixture, imported above)
):
    job = await sql_engine.submit(
        "sql payments-replica: table sizes", sql_engine.actor("cli", "carol")
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["diagnostic"] == "table_sizes"
