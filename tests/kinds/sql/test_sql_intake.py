"""SQL intake and rendering: what a request is (a statement PostgreSQL's parser accepts, a
diagnostic named in words, with its time window honoured or refused), a clarification
answered with a statement or a diagnostic, and the result as a person reads it: cells
wrapped whole, the statement, the plan tree with its costliest node, in `acp show`."""

# ruff: noqa: F811 (the SQL job fixtures, imported from test_sql_jobs, are parameters here)
from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest

from runtime.errors import BadRequest, SqlWriteRefused
from runtime.jobs import JobState
from runtime.kinds.sql.statements import read_request, time_window
from tests.kinds.sql.test_sql_jobs import (  # noqa: F401 (fixtures)
    artifact,
    replica,
    settle,
    sql_engine,
)
from tests.support.acp_process import Service, acp

# --- the intake rules, as a table ------------------------------------------------------------

RULES = [
    # (request, form, diagnostic)
    ("SELECT status, count(*) FROM orders GROUP BY 1", "statement", None),
    ("select 1", "statement", None),
    ("SHOW work_mem", "statement", None),
    ("show work_mem", "statement", None),  # bare words, but no diagnostic: the statement
    ("TABLE orders", "statement", None),
    ("table orders", "statement", None),
    ("TABLE sizes", "statement", None),  # a keyword in capitals is SQL
    ("table sizes", "diagnostic", "table_sizes"),  # bare words naming a diagnostic
    ("Table sizes", "diagnostic", "table_sizes"),
    ("show locks", "diagnostic", "locks"),
    ("show me the locks", "diagnostic", "locks"),  # does not parse: words
    ("SELECT * FROM pg_locks", "statement", None),
    ("explain select 1", "statement", None),
    ("lock waits", "statement", None),  # a write that parses stays one, and is refused
    ("vacuum orders", "statement", None),
    ("select * form orders", "malformed", None),
    ("SELECT status FROM", "malformed", None),
    ("EXPLAIN SELEC 1", "malformed", None),
    ("with d as (select 1 selec * from d", "malformed", None),
    ("explain why checkout is slow", "diagnostic", "top_total_time"),  # words, not SQL
    ("show me what the orders look like", "words", None),
    ("top 10 slowest queries", "diagnostic", "top_total_time"),
    ("slowest in the last hour", "diagnostic", "top_total_time"),
    ("long-running queries since this morning", "diagnostic", "long_running"),
    ("how are the orders doing", "words", None),
]


@pytest.mark.parametrize(("text", "form", "diagnostic"), RULES)
def test_intake_reads_sql_as_sql_and_words_as_words(text, form, diagnostic):
    request = read_request(text)
    assert (request.form, request.diagnostic) == (form, diagnostic)


WINDOWS = [
    ("slowest in the last hour", "in the last hour", "now() - interval '1 hour'"),
    ("locks over the past 30 minutes", "over the past 30 minutes", "now() - interval '30 minute'"),
    ("sessions in the last 24h", "in the last 24h", "now() - interval '24 hour'"),
    ("locks since this morning", "since this morning", "date_trunc('day', now())"),
    ("locks since yesterday", "since yesterday", "date_trunc('day', now()) - interval '1 day'"),
    ("activity today", "today", "date_trunc('day', now())"),
    ("last vacuum of each table", None, None),
    ("top 10 slowest queries", None, None),
]


@pytest.mark.parametrize(("text", "phrase", "start"), WINDOWS)
def test_a_time_window_is_found_in_the_words(text, phrase, start):
    window, rest = time_window(text)
    found = (window.phrase, window.start_sql) if window else (None, None)
    assert found == (phrase, start)
    assert (phrase or "") not in rest or phrase is None


def test_the_window_number_is_not_the_row_limit():
    request = read_request("top 3 slowest queries in the last 2 hours")
    assert request.diagnostic == "top_total_time" and "LIMIT 3" in request.diagnostic_sql


# --- a clarification answered ------------------------------------------------------------------


async def _asked_for_steps(engine, carol):
    """A request of no clear type: the type, the target, then the statement are asked."""
    job = await engine.submit("how are things", carol)
    assert job.clarification.field == "job_type"
    job = await engine.answer(job.id, carol, "sql")
    assert job.clarification.field == "target"
    job = await engine.answer(job.id, carol, "payments-replica")
    assert job.state is JobState.needs_clarification and job.clarification.field == "commands"
    return job


async def test_a_clarification_answered_with_a_statement_runs_it(sql_engine):
    carol = sql_engine.actor("cli", "carol")
    job = await _asked_for_steps(sql_engine, carol)
    job = await sql_engine.answer(job.id, carol, "```sql\nSELECT count(*) AS n FROM orders;\n```")
    assert job.spec.instruction == "SELECT count(*) AS n FROM orders;" and job.spec.commands == []
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["statement"] == "SELECT count(*) AS n FROM orders"
    assert "300" in artifact(sql_engine, job, "result.txt")
    answered = [e.data for e in await sql_engine.events(job.id) if e.kind == "job.answered"]
    assert answered[-1]["field"] == "commands" and "SELECT count(*)" in answered[-1]["answer"]


async def test_a_clarification_answered_with_a_diagnostic_name_runs_it(sql_engine):
    carol = sql_engine.actor("cli", "carol")
    job = await _asked_for_steps(sql_engine, carol)
    job = await sql_engine.answer(job.id, carol, "table sizes")
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["diagnostic"] == "table_sizes"
    assert "orders" in artifact(sql_engine, job, "result.csv")


async def test_a_direct_clarification_answered_with_a_diagnostic_runs_it(sql_engine):
    carol = sql_engine.actor("cli", "carol")
    job = await sql_engine.submit("sql payments-replica: how are the orders doing", carol)
    job = await sql_engine.answer(job.id, carol, "locks")
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["diagnostic"] == "locks"


async def test_table_sizes_is_the_sizes_diagnostic_never_the_statement_table_sizes(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: table sizes", sql_engine.actor("cli", "carol")
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["diagnostic"] == "table_sizes"
    assert "TABLE sizes" not in job.result["statement"]
    assert "plan.txt" not in {a.name for a in job.artifacts}  # a catalog query's plan: none


async def test_malformed_sql_is_refused_at_intake_with_the_parsers_reason(sql_engine):
    with pytest.raises(BadRequest) as refused:
        await sql_engine.submit(
            "sql payments-replica: select * form orders", sql_engine.actor("cli", "carol")
        )
    assert 'syntax error at or near "form"' in refused.value.message
    assert await sql_engine.jobs() == []


async def test_lock_waits_is_refused_as_the_lock_statement_it_is(sql_engine):
    with pytest.raises(SqlWriteRefused) as refused:
        await sql_engine.submit(
            "sql payments-replica: lock waits", sql_engine.actor("cli", "carol")
        )
    assert "LOCK is not a read-only statement" in refused.value.message


# --- time windows ------------------------------------------------------------------------------


async def test_a_window_on_pg_stat_statements_is_refused_with_why(sql_engine):
    with pytest.raises(BadRequest) as refused:
        await sql_engine.submit(
            "sql payments-replica: slowest queries in the last hour",
            sql_engine.actor("cli", "carol"),
        )
    message = refused.value.message
    assert "pg_stat_statements counts since its last reset" in message
    assert "'in the last hour'" in message and "cannot be applied" in message
    assert await sql_engine.jobs() == []


async def test_a_window_on_a_counter_diagnostic_is_refused_as_well(sql_engine):
    with pytest.raises(BadRequest) as refused:
        await sql_engine.submit(
            "sql payments-replica: table sizes since yesterday", sql_engine.actor("cli", "carol")
        )
    assert "a time window ('since yesterday') cannot be applied" in refused.value.message


async def test_a_window_on_sessions_keeps_those_whose_transaction_started_in_it(
    sql_engine, replica
):
    _, _, dsn = replica
    open_session = await asyncpg.connect(dsn)
    try:
        await open_session.execute("BEGIN; SELECT count(*) FROM orders")  # idle in transaction
        pid = open_session.get_server_pid()
        await asyncio.sleep(0.05)
        carol = sql_engine.actor("cli", "carol")
        inside = await sql_engine.submit(
            "sql payments-replica: long-running queries in the last hour", carol
        )
        inside = await settle(sql_engine, inside.id)
        # The window starts at the reader's now(): the session opened before is outside it.
        outside = await sql_engine.submit(
            "sql payments-replica: long-running queries in the last 0 minutes", carol
        )
        outside = await settle(sql_engine, outside.id)
    finally:
        await open_session.close()
    assert inside.state is JobState.succeeded, inside.result
    assert "interval '1 hour'" in inside.result["statement"]
    assert "in the last hour" in inside.result["window"]
    assert str(pid) in artifact(sql_engine, inside, "result.csv")
    assert outside.state is JobState.succeeded, outside.result
    assert str(pid) not in artifact(sql_engine, outside, "result.csv")


# --- the result as read ----------------------------------------------------------------------


async def test_a_500_character_cell_wraps_and_every_character_is_in_result_txt(sql_engine):
    statement = (
        "SELECT 1 AS n, string_agg(md5(i::text), '' ORDER BY i) AS long "
        "FROM generate_series(1, 16) i"
    )
    job = await sql_engine.submit(
        f"sql payments-replica: {statement}", sql_engine.actor("cli", "carol")
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    value = artifact(sql_engine, job, "result.csv").splitlines()[1].split(",")[1]
    assert len(value) == 512
    text = artifact(sql_engine, job, "result.txt").splitlines()
    cells = [line.split(" | ")[1] for line in text[2:-1]]
    assert len(cells) > 1 and max(len(line) for line in text) <= 130
    assert "".join(cell.strip() for cell in cells) == value


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_acp_show_prints_the_statement_and_the_plan_tree_with_the_costliest_node(acp_env, replica):
    _, _, dsn = replica
    env = {**acp_env, "PAYMENTS_REPLICA_DSN": dsn}
    service = Service(env).start()
    try:
        statement = (
            "SELECT status, count(*) FROM orders WHERE amount > 10 GROUP BY status ORDER BY 2"
        )
        submitted = acp(env, "submit", "--as", "carol", f"sql payments-replica: {statement}")
        assert submitted.returncode == 0, submitted.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            record = json.loads(acp(env, "show", "J-1", "--json").stdout)
            if record["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.3)
        assert record["state"] == "succeeded", record["result"]
        shown = acp(env, "show", "J-1").stdout
    finally:
        service.stop()
    assert f"statement   : {statement}" in shown
    assert "Seq Scan on orders" in shown and "└─ " in shown
    [marked] = [line for line in shown.splitlines() if "◀ costliest" in line]
    assert "% of cost" in marked
    assert "paid" in shown  # the result table, with the plan under it
    assert "J-1-plan.txt" in shown  # and the tree as a file (Slack attaches it)


def test_the_text_table_stays_bounded_and_says_where_every_row_is():
    from runtime.tools.sql import TABLE_CHARS, _table

    many = _table(["n", "text"], [[i, "y" * 5000] for i in range(40)], False)
    assert len(many) <= TABLE_CHARS + 200
    assert "first 18 shown" in many and "every row kept is in the result.csv artifact" in many
    one = _table(["text"], [["x" * 300_000]], False)
    assert len(one) <= TABLE_CHARS + 200 and "the first in part" in one


async def test_a_write_in_words_is_refused_once_sql_is_answered_as_its_type(sql_engine):
    carol = sql_engine.actor("cli", "carol")
    job = await sql_engine.submit("delete the refunded orders", carol)
    assert job.clarification.field == "job_type"
    with pytest.raises(SqlWriteRefused) as refused:
        await sql_engine.answer(job.id, carol, "sql")
    assert "'delete …' asks for a change" in refused.value.message
    assert (await sql_engine.get(job.id)).state is JobState.needs_clarification


async def test_a_question_with_a_window_and_no_model_fails_saying_why(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: why are queries slow since this morning?",
        sql_engine.actor("cli", "carol"),
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.failed
    assert "a time window ('since this morning') cannot be applied" in job.result["reason"]
