"""Other kinds in a job's thread: SQL results, a doc review and the published document, a
schedule made from Slack.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.doors.slack.rig import BOB, CAROL, CHANNEL, SlackRig, button, http_env
from tests.standins.slack_standin import SlackStandIn


@pytest.fixture
async def sql_rig(tmp_path: Path, pg_server):
    """The Slack rig with the sample payments-replica pointing at a real PostgreSQL."""
    import uuid

    name = f"pay_{uuid.uuid4().hex[:10]}"
    pg_server.create_database(name)
    pg_server.psql(
        "CREATE TABLE orders (id serial PRIMARY KEY, status text, email text);"
        "INSERT INTO orders (status, email) SELECT (ARRAY['paid','refunded'])[1 + i % 2], "
        "'u' || i || '@example.com' FROM generate_series(1, 40) i;"
        "CREATE ROLE slack_reader LOGIN; GRANT SELECT ON orders TO slack_reader;",
        database=name,
    )
    standin = await SlackStandIn().start()
    dsn = f"postgresql://slack_reader@127.0.0.1:{pg_server.port}/{name}"
    rig = SlackRig(http_env(tmp_path, standin, PAYMENTS_REPLICA_DSN=dsn), standin)
    await asyncio.to_thread(rig.start)
    try:
        yield rig
    finally:
        await asyncio.to_thread(rig.stop)
        await standin.stop()
        pg_server.drop_database(name)
        pg_server.psql("DROP ROLE IF EXISTS slack_reader")


async def test_sql_result_reaches_the_thread_as_a_table_and_files(sql_rig):
    status, _, _ = await sql_rig.command(
        "sql payments-replica: SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1",
        user=CAROL,
    )
    assert status == 200
    await sql_rig.wait_state({"succeeded"})
    table = await sql_rig.thread_with("refunded")
    assert "```" in table["text"]
    deadline = time.monotonic() + 15
    while len(sql_rig.standin.files) < 3:
        assert time.monotonic() < deadline, sql_rig.standin.files
        await asyncio.sleep(0.1)
    names = {f["filename"] for f in sql_rig.standin.files}
    assert {"J-1-result.csv", "J-1-plan.txt", "J-1-plan.json"} <= names
    csv = next(f for f in sql_rig.standin.files if f["filename"] == "J-1-result.csv")
    assert b"paid,20" in csv["content"]
    # The statement that ran, in the thread with its result; the plan tree as a file.
    assert (
        "statement: SELECT status, count(*) FROM orders"
        in (await sql_rig.thread_with("statement: "))["text"]
    )
    tree = next(f for f in sql_rig.standin.files if f["filename"] == "J-1-plan.txt")
    content = tree["content"] if isinstance(tree["content"], bytes) else tree["content"].encode()
    assert "◀ costliest: ".encode() in content


async def test_doc_job_review_in_the_thread_then_the_published_document_as_a_file(rig):
    status, _, _ = await rig.command(
        "doc reports: weekly incident summary "
        "`template templates/weekly.md.j2 out/weekly.xlsx incidents.csv`"
    )
    assert status == 200
    request = await rig.thread_with("acp_approve", timeout=60)
    shown = json.dumps(request)
    assert "out/weekly.xlsx" in shown and "new workbook" in shown
    assert "sheet 'By severity' added" in shown  # the cell review, not a binary patch
    ts, _ = rig.card()
    assert await rig.click("acp_approve", button(request, "acp_approve"), BOB, ts) == 200
    await rig.wait_state({"succeeded"}, timeout=60)
    deadline = time.monotonic() + 20
    while not any(f["filename"] == "weekly.xlsx" for f in rig.standin.files):
        assert time.monotonic() < deadline, rig.standin.files
        await asyncio.sleep(0.1)
    published = next(f for f in rig.standin.files if f["filename"] == "weekly.xlsx")
    assert published["content"].startswith(b"PK")


async def test_schedule_from_slack_is_approved_then_fires_cards_into_the_channel(rig):
    status, _, _ = await rig.command('schedule "every 2s" code demo: run `echo ok`')
    assert status == 200
    request = await rig.thread_with("acp_approve", timeout=30)
    ts, _ = rig.card()
    assert await rig.click("acp_approve", button(request, "acp_approve"), BOB, ts) == 200
    await rig.wait_state({"succeeded"}, timeout=30)
    await rig.thread_with("routine R-1 created")
    fired = await rig.wait_state({"succeeded", "queued", "running"}, job="J-2", timeout=30)
    assert fired["spec"]["origin"] == "schedule" and fired["spec"]["requester"] == "alice"
    deadline = time.monotonic() + 20
    while True:  # the firing's own card, in the routine's channel
        cards = [m for (c, _), m in rig.standin.messages.items()
                 if c == CHANNEL and not m.get("thread_ts") and "J-2" in json.dumps(m)]  # fmt: skip
        if cards:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    status, _, _ = await rig.command("routines")
    listed = await rig.response_with("R-1")
    assert "every 2s (UTC)" in json.dumps(listed) and "alice" in json.dumps(listed)
