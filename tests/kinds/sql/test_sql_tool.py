"""The SQL tool against a real PostgreSQL: evidence, diagnostics, and every read-only layer.

One throwaway server per module with pg_stat_statements loaded, a shop database with
generated orders and customers, a `reader` role (SELECT only) and a `writer` role.
"""

from __future__ import annotations

import hashlib
import json

import asyncpg
import pglast
import pytest
from pglast import ast

from runtime.errors import AcpError, NotAReplica, ReadOnlyViolation
from runtime.tools.sql import (
    DIAGNOSTICS,
    SqlLimits,
    check_statement,
    execute_read_only,
    match_diagnostic,
    run_query,
)
from tests.standins.pgserver import PostgresServer

ORDERS = 5000
SETUP = f"""
CREATE EXTENSION pg_stat_statements;
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL);
INSERT INTO customers (name, email)
    SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 500) g;
CREATE TABLE orders (
    id serial PRIMARY KEY, customer_id int REFERENCES customers, status text NOT NULL,
    amount numeric(10, 2) NOT NULL, email text NOT NULL, created_at timestamptz DEFAULT now());
INSERT INTO orders (customer_id, status, amount, email)
    SELECT 1 + g % 500, (ARRAY['new', 'paid', 'shipped', 'refunded'])[1 + g % 4],
           (g % 997) + 0.99, 'c' || (1 + g % 500) || '@example.com'
    FROM generate_series(1, {ORDERS}) g;
CREATE INDEX orders_status ON orders (status);
CREATE ROLE reader LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader;
GRANT pg_read_all_stats TO reader;
CREATE ROLE writer LOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO writer;
ANALYZE;
"""
FINGERPRINT = (
    "SELECT (SELECT count(*) || ':' || sum(hashtext(o::text)) FROM orders o) || '/' ||"
    " (SELECT count(*) || ':' || sum(hashtext(c::text)) FROM customers c) || '/' ||"
    " (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace) || '/' ||"
    " (SELECT last_value FROM orders_id_seq)"
)


@pytest.fixture(scope="module")
def pg():
    with PostgresServer(shared_preload_libraries=["pg_stat_statements"]) as server:
        server.psql("CREATE DATABASE shop")
        server.psql(SETUP, database="shop")
        yield server


@pytest.fixture(scope="module")
def dsns(pg: PostgresServer) -> dict[str, str]:
    base = f"127.0.0.1:{pg.port}/shop"
    return {
        "reader": f"postgresql://reader@{base}",
        "writer": f"postgresql://writer:writer-pass-123@{base}",
        "postgres": f"postgresql://postgres@{base}",
    }


def fingerprint(pg: PostgresServer) -> str:
    return pg.psql(FINGERPRINT, database="shop").strip()


# --- evidence --------------------------------------------------------------------------


async def test_plain_query_returns_rows_csv_table_and_json_plan(dsns):
    statement = "SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1"
    evidence = await run_query(dsns["reader"], statement, SqlLimits())

    assert evidence.columns == ["status", "count"]
    assert [row[0] for row in evidence.rows] == ["new", "paid", "refunded", "shipped"]
    assert sum(row[1] for row in evidence.rows) == ORDERS
    assert evidence.row_count == 4 and not evidence.truncated
    assert evidence.csv.splitlines()[0] == "status,count"
    assert evidence.csv.splitlines()[1] == "new,1250"
    assert evidence.table.splitlines()[0].split() == ["status", "|", "count"]
    assert "paid" in evidence.table and "(4 rows)" in evidence.table
    assert evidence.plan[0]["Plan"]["Node Type"] in ("Sort", "Aggregate", "HashAggregate")
    json.dumps(evidence.model_dump())  # the whole record is JSON-safe
    assert evidence.duration_ms > 0
    assert evidence.statement == statement
    assert evidence.statement_sha256 == hashlib.sha256(statement.encode()).hexdigest()
    assert evidence.server["in_recovery"] is False
    assert evidence.server["role"] == "reader" and evidence.server["can_write"] is False
    assert evidence.server["version"].startswith("15")


async def test_odd_types_become_json_safe_strings(dsns):
    statement = (
        "SELECT amount, created_at, interval '90 minutes' AS span, '\\xdead'::bytea AS raw, "
        "'{1,2}'::int[] AS list FROM orders ORDER BY id LIMIT 1"
    )
    evidence = await run_query(dsns["reader"], statement, SqlLimits())
    amount, created_at, span, raw, values = evidence.rows[0]
    assert amount == "1.99" and isinstance(created_at, str) and span == "1:30:00"
    assert raw == "\\xdead" and values == [1, 2]


async def test_explain_statement_returns_its_plan_as_rows_and_no_second_plan(dsns):
    evidence = await run_query(
        dsns["reader"], "EXPLAIN SELECT * FROM orders WHERE status = 'paid'", SqlLimits()
    )
    assert evidence.columns == ["QUERY PLAN"]
    assert "orders" in "\n".join(row[0] for row in evidence.rows)
    assert evidence.plan is None


async def test_show_sees_the_read_only_transaction_and_policy_timeouts(dsns):
    limits = SqlLimits(statement_timeout_ms=4000, lock_timeout_ms=700)
    shown = {}
    for name in ("transaction_read_only", "statement_timeout", "lock_timeout"):
        evidence = await run_query(dsns["reader"], f"SHOW {name}", limits)
        assert evidence.plan is None
        shown[name] = evidence.rows[0][0]
    assert shown == {
        "transaction_read_only": "on",
        "statement_timeout": "4s",
        "lock_timeout": "700ms",
    }


async def test_masked_columns_show_stars_in_rows_csv_and_table(dsns):
    limits = SqlLimits(mask_columns=["EMAIL"])
    statement = "SELECT o.id, o.email, c.email AS Email FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.id LIMIT 20"  # noqa: E501
    evidence = await run_query(dsns["reader"], statement, limits)
    assert evidence.columns == ["id", "email", "email"]
    assert all(row[1:] == ["***", "***"] for row in evidence.rows)
    assert "@example.com" not in evidence.csv and "@example.com" not in evidence.table
    assert evidence.csv.splitlines()[1] == "1,***,***"


async def test_row_cap_stops_at_exactly_the_cap_and_says_truncated(dsns):
    evidence = await run_query(dsns["reader"], "SELECT id FROM orders", SqlLimits(row_cap=100))
    assert evidence.row_count == 100 and len(evidence.rows) == 100 and evidence.truncated
    assert len(evidence.csv.splitlines()) == 101
    assert "first 50 shown" in evidence.table and "row cap" in evidence.table
    assert len(evidence.table.splitlines()) == 2 + 50 + 1

    exact = await run_query(
        dsns["reader"], "SELECT id FROM orders ORDER BY id LIMIT 100", SqlLimits(row_cap=100)
    )
    assert exact.row_count == 100 and not exact.truncated


async def test_long_cells_wrap_in_the_table_and_stay_whole_in_csv(dsns):
    evidence = await run_query(dsns["reader"], "SELECT repeat('x', 500) AS long", SqlLimits())
    assert "x" * 500 in evidence.csv
    lines = evidence.table.splitlines()
    assert max(len(line) for line in lines) <= 120 and "…" not in evidence.table
    assert "".join(lines[2:-1]) == "x" * 500


async def test_statement_over_the_timeout_fails_with_a_clear_message(dsns):
    statement = check_statement("SELECT pg_sleep(1)", max_sleep_s=5)
    with pytest.raises(AcpError) as caught:
        await run_query(dsns["reader"], statement, SqlLimits(statement_timeout_ms=200))
    assert not isinstance(caught.value, ReadOnlyViolation)
    assert caught.value.message == "the statement ran over the 200 ms statement_timeout"


async def test_lock_wait_over_the_lock_timeout_fails_with_a_clear_message(dsns):
    holder = await asyncpg.connect(dsns["postgres"])
    try:
        await holder.execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(AcpError, match="250 ms lock_timeout"):
            await run_query(
                dsns["reader"], "SELECT count(*) FROM customers", SqlLimits(lock_timeout_ms=250)
            )
    finally:
        await holder.close()


# --- standard diagnostics --------------------------------------------------------------


@pytest.fixture(scope="module")
def workload(pg: PostgresServer):
    for i in range(5):
        pg.psql(f"SELECT count(*) FROM orders WHERE amount > {i * 100}", database="shop")
        pg.psql("SELECT * FROM customers WHERE id = 7", database="shop")
    pg.psql("SELECT pg_sleep(0.05)", database="shop")


@pytest.mark.parametrize(
    ("instruction", "name"),
    [
        ("top 5 slowest queries", "top_total_time"),
        ("most frequent statements", "top_calls"),
        ("table bloat", "table_sizes"),
        ("seq scans", "seq_scans"),
        ("dead tuples", "vacuum"),
        ("index usage", "unused_indexes"),
        ("who holds locks", "locks"),
        ("long-running activity", "long_running"),
    ],
)
async def test_each_standard_diagnostic_returns_evidence(dsns, workload, instruction, name):
    matched = match_diagnostic(instruction)
    assert matched is not None and matched[0] == name
    # an open transaction somewhere else, so activity has something to show
    other = await asyncpg.connect(dsns["postgres"])
    try:
        await other.execute("BEGIN; SELECT count(*) FROM customers")
        evidence = await run_query(dsns["reader"], check_statement(matched[1]), SqlLimits())
    finally:
        await other.close()
    assert evidence.columns and evidence.row_count >= 1
    if name in ("top_total_time", "top_calls"):
        assert evidence.row_count <= (5 if name == "top_total_time" else 10)
        assert any("orders" in str(row[-1]) for row in evidence.rows)
    if name in ("table_sizes", "seq_scans", "vacuum"):
        assert {row[evidence.columns.index("relation")] for row in evidence.rows} >= {
            "orders",
            "customers",
        }
    if name == "long_running":
        assert any("customers" in str(row[-1]) for row in evidence.rows)


def test_every_diagnostic_passes_the_statement_check():
    for diagnostic in DIAGNOSTICS.values():
        check_statement(diagnostic.sql.format(limit=10))


def test_diagnostic_limit_defaults_to_10_and_stops_at_100():
    assert match_diagnostic("slowest queries")[1].endswith("LIMIT 10")
    assert match_diagnostic("top 3 slowest queries")[1].endswith("LIMIT 3")
    assert match_diagnostic("top 5000 slowest queries")[1].endswith("LIMIT 100")
    assert match_diagnostic("make me a sandwich") is None


# --- writes and escapes, refused by the parser and by the database ----------------------

# (statement, words the refusal must contain); pg_terminate/cancel run against a real
# superuser backend in the database layer, since pid 1 is not a backend at all.
ATTEMPTS = [
    ("INSERT INTO orders (customer_id, status, amount, email) VALUES (1, 'x', 1, 'e')", "INSERT"),
    ("UPDATE orders SET amount = 0", "UPDATE"),
    ("DELETE FROM orders", "DELETE"),
    ("TRUNCATE orders", "TRUNCATE"),
    ("DROP TABLE orders", "DROP"),
    ("CREATE TABLE evil (id int)", "CREATE"),
    ("ALTER TABLE orders ADD COLUMN evil int", "ALTER"),
    ("GRANT INSERT ON orders TO reader", "GRANT"),
    ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "data-modifying CTE (DELETE)"),
    ("SELECT 1; DELETE FROM orders", "one statement per request"),
    ("SET TRANSACTION READ WRITE", "SET changes the session or transaction"),
    ("SET default_transaction_read_only = off", "SET changes the session or transaction"),
    ("COPY orders TO STDOUT", "COPY"),
    ("COPY orders FROM STDIN", "COPY"),
    ("SELECT pg_terminate_backend(1)", "pg_terminate_backend() is on the deny list"),
    ("select PG_CANCEL_BACKEND(1)", "pg_cancel_backend() is on the deny list"),
    ("SELECT set_config('transaction_read_only','off',false)", "set_config() is on the deny list"),
    ("SELECT pg_read_file('/etc/passwd')", "pg_read_file() is on the deny list"),
    ("SELECT lo_import('/etc/passwd')", "lo_import() is on the deny list"),
    ("SELECT pg_sleep(600)", "pg_sleep of 600 s is over the 5 s limit"),
    ("SELECT * FROM orders FOR UPDATE", "FOR UPDATE"),
    ("SELECT * INTO copy_of_orders FROM orders", "SELECT INTO"),
    ("EXPLAIN ANALYZE DELETE FROM orders", "EXPLAIN of DELETE"),
    ("/* harmless */ DeLeTe FROM orders", "DELETE"),
    ("select nextval('orders_id_seq')", "nextval() is on the deny list"),
    ("DO $$ BEGIN DELETE FROM orders; END $$", "DO"),
    ("CALL some_proc()", "CALL"),
    ("VACUUM orders", "VACUUM"),
    ("LOCK TABLE orders", "LOCK"),
    ("LISTEN x", "LISTEN"),
    ("PREPARE p AS DELETE FROM orders", "PREPARE"),
    ("SELECT dblink_exec('host=evil', 'DELETE FROM orders')", "dblink_exec() is on the deny list"),
    ("SELECT * FROM pg_catalog.Pg_Terminate_Backend(1)", "pg_terminate_backend()"),
    ("SELECT (SELECT count(*) FROM orders FOR SHARE)", "FOR UPDATE / FOR SHARE"),
    ("SELECT pg_sleep(0.1 * 1e5)", "pg_sleep with a non-literal"),
    ("SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, true, '')", "query_to_xml()"),
    ("SELECT pg_reload_conf()", "pg_reload_conf() is on the deny list"),
    ("SELEC * FROM orders", "does not parse"),
]


def _select_like(statement: str) -> bool:
    try:
        parsed = pglast.parse_sql(statement)
    except pglast.parser.ParseError:
        return False
    kinds = (ast.SelectStmt, ast.ExplainStmt, ast.VariableShowStmt)
    return len(parsed) == 1 and isinstance(parsed[0].stmt, kinds)


@pytest.mark.parametrize(("statement", "reason"), ATTEMPTS, ids=[a[0][:40] for a in ATTEMPTS])
async def test_write_or_escape_attempt_is_refused_by_parser_and_database(
    pg, dsns, statement, reason
):
    before = fingerprint(pg)
    with pytest.raises(ReadOnlyViolation) as caught:
        check_statement(statement)
    assert caught.value.message.startswith("refused: ")
    assert reason in caught.value.message
    with pytest.raises(ReadOnlyViolation):
        await run_query(dsns["postgres"], statement, SqlLimits(primary_for_diagnostics=True))

    if _select_like(statement):
        limits = SqlLimits(statement_timeout_ms=300, allow_explain_analyze=True)
        victim = await asyncpg.connect(dsns["postgres"])
        try:
            pid = await victim.fetchval("SELECT pg_backend_pid()")
            at_db = statement.replace("(1)", f"({pid})")
            with pytest.raises(AcpError) as refused:
                await execute_read_only(dsns["reader"], at_db, limits)
            assert await victim.fetchval("SELECT 1") == 1  # still connected
        finally:
            await victim.close()
        assert "writer-pass" not in refused.value.render()
    assert fingerprint(pg) == before


def test_attempt_table_covers_at_least_25_refusals():
    assert len(ATTEMPTS) >= 25
    assert sum(_select_like(s) for s, _ in ATTEMPTS) >= 10


async def test_explain_analyze_needs_the_policy_to_allow_it(dsns):
    statement = "EXPLAIN ANALYZE SELECT count(*) FROM orders"
    with pytest.raises(ReadOnlyViolation, match="EXPLAIN ANALYZE runs the statement"):
        await run_query(dsns["reader"], statement, SqlLimits())
    evidence = await run_query(dsns["reader"], statement, SqlLimits(allow_explain_analyze=True))
    assert any("actual time" in row[0] for row in evidence.rows)


def test_allowed_statements_come_back_unchanged():
    for statement in (
        "SELECT 1",
        "  select status from orders -- trailing comment",
        "WITH paid AS (SELECT * FROM orders WHERE status = 'paid') SELECT count(*) FROM paid",
        "EXPLAIN (FORMAT JSON) SELECT * FROM orders",
        "SHOW work_mem",
        "SELECT pg_sleep(0.5)",
        "SELECT pg_sleep_for('2 seconds')",
        "VALUES (1), (2)",
    ):
        assert check_statement(statement) is statement
    assert check_statement("EXPLAIN ANALYZE SELECT 1", allow_explain_analyze=True)


# --- replica or read-only role ---------------------------------------------------------


async def test_writer_role_on_a_primary_is_refused_unless_marked_for_diagnostics(dsns):
    with pytest.raises(NotAReplica) as caught:
        await run_query(dsns["writer"], "SELECT 1", SqlLimits())
    rendered = caught.value.render()
    assert "primary" in rendered and "primary_for_diagnostics" in rendered
    assert "writer-pass-123" not in rendered and dsns["writer"] not in rendered

    evidence = await run_query(dsns["writer"], "SELECT 1", SqlLimits(primary_for_diagnostics=True))
    assert evidence.server == {**evidence.server, "role": "writer", "can_write": True}


async def test_superuser_on_a_primary_is_refused(dsns):
    with pytest.raises(NotAReplica):
        await run_query(dsns["postgres"], "SELECT 1", SqlLimits())


async def test_reader_role_without_write_privileges_is_accepted_on_a_primary(dsns):
    evidence = await run_query(dsns["reader"], "SELECT count(*) FROM orders", SqlLimits())
    assert evidence.rows == [[ORDERS]]
    assert evidence.server["in_recovery"] is False and evidence.server["can_write"] is False


async def test_unreachable_database_error_carries_no_password(pg):
    dsn = "postgresql://reader:hunter2-secret@127.0.0.1:1/shop"
    with pytest.raises(AcpError) as caught:
        await run_query(dsn, "SELECT 1", SqlLimits())
    assert "could not connect" in caught.value.message
    assert "hunter2-secret" not in caught.value.render()
