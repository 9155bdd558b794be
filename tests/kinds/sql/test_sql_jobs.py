"""SQL jobs end to end: request -> policy -> read-only query on real PostgreSQL -> evidence."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from runtime import audit
from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.settings import Settings
from runtime.worker import Worker
from tests.conftest import BUNDLED_POLICY

PASSWORD = "rdr-pw-never-shown-9f2"

SCHEMA = """
CREATE TABLE orders (id serial PRIMARY KEY, status text NOT NULL, amount numeric NOT NULL,
                     email text NOT NULL);
INSERT INTO orders (status, amount, email)
  SELECT (ARRAY['paid','refunded','pending'])[1 + i % 3], i, 'user' || i || '@example.com'
  FROM generate_series(1, 300) AS i;
CREATE ROLE {role} LOGIN PASSWORD '{password}';
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
"""


@pytest.fixture
def replica(pg_server):
    """A database with orders and a read-only role; the DSN the policy's env var holds."""
    name = f"pay_{uuid.uuid4().hex[:10]}"
    role = f"reader_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    for statement in SCHEMA.format(role=role, password=PASSWORD).split(";"):
        if statement.strip():
            pg_server.psql(statement, database=name)
    yield pg_server, name, f"postgresql://{role}:{PASSWORD}@127.0.0.1:{pg_server.port}/{name}"
    pg_server.drop_database(name)


def policy_dir(tmp_path: Path, extra: str = "", database: str = "") -> Path:
    text = (BUNDLED_POLICY / "default.yml").read_text()
    text = text.replace(
        "      dsn_env: PAYMENTS_REPLICA_DSN\n",
        f"      dsn_env: PAYMENTS_REPLICA_DSN\n{database}",
    )
    text = text.replace("approvals:\n", f"approvals:\n{extra}")
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "default.yml").write_text(text)
    return folder


@pytest.fixture
async def sql_engine(tmp_path, replica, monkeypatch, request):
    _, _, dsn = replica
    monkeypatch.setenv("PAYMENTS_REPLICA_DSN", dsn)
    extra, database = getattr(request, "param", ("", ""))
    settings = Settings.from_env(
        {
            "ACP_HOME": str(tmp_path / "home"),
            "ACP_POLICY_DIR": str(policy_dir(tmp_path, extra, database)),
        }
    )
    engine = await Engine.open(settings)
    yield engine
    await engine.close()


async def settle(engine: Engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


def artifact(engine: Engine, job, name: str) -> str:
    ref = next(a for a in job.artifacts if a.name == name)
    return engine.artifacts.read(ref.sha256).decode()


async def test_select_returns_rows_csv_and_plan_as_evidence(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1",
        sql_engine.actor("cli", "carol"),
    )
    assert job.state is JobState.queued, job.decision
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert "3 row(s)" in job.result["reason"]
    csv = artifact(sql_engine, job, "result.csv")
    assert csv.splitlines()[0] == "status,count" and "paid,100" in csv
    assert "refunded" in artifact(sql_engine, job, "result.txt")
    assert '"Plan"' in artifact(sql_engine, job, "plan.json")
    [query] = [e for e in await sql_engine.events(job.id) if e.kind == "tool.sql.query"]
    assert query.data["row_count"] == 3 and len(query.artifacts) == 3


async def test_standard_diagnostic_runs_without_a_model(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: tables with the most sequential scans",
        sql_engine.actor("cli", "carol"),
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert job.result["diagnostic"]
    assert "orders" in artifact(sql_engine, job, "result.csv")


@pytest.mark.parametrize(
    ("request_text", "why"),
    [
        ("DELETE FROM orders", "DELETE is not a read-only statement"),
        ("SELECT 1; DELETE FROM orders", "one statement per request"),
        ("UPDATE orders SET amount = 0", "UPDATE is not a read-only statement"),
        ("VACUUM orders", "VACUUM is not a read-only statement"),
        ("ANALYZE orders", "ANALYZE is not a read-only statement"),
        ("LOCK TABLE orders", "LOCK is not a read-only statement"),
        ("TRUNCATE orders", "TRUNCATE is not a read-only statement"),
        ("WITH d AS (DELETE FROM orders RETURNING 1) SELECT * FROM d", "data-modifying CTE"),
        ("EXPLAIN ANALYZE DELETE FROM orders", "EXPLAIN of DELETE"),
        ("SELECT pg_terminate_backend(1)", "deny list"),
        ("delete the refunded orders", "'delete …' asks for a change"),
    ],
)
async def test_write_request_is_refused_at_once_for_what_it_is(
    sql_engine, replica, request_text, why
):
    """Not a clarifying question, not a diagnostic run in its place: refused on submit, the
    refusal recorded, no job made, nothing changed."""
    from runtime.errors import SqlWriteRefused

    server, name, _ = replica
    with pytest.raises(SqlWriteRefused) as refused:
        await sql_engine.submit(
            f"sql payments-replica: {request_text}", sql_engine.actor("cli", "carol")
        )
    assert refused.value.message.startswith("SQL jobs are read-only: ")
    assert why in refused.value.message and "refused: refused" not in refused.value.message
    assert "nothing was run" in refused.value.message
    assert await sql_engine.jobs() == []
    [event] = [e for e in await sql_engine.events() if e.kind == "request.refused"]
    assert event.data["error"] == "SqlWriteRefused" and why in event.data["message"]
    assert server.psql("SELECT count(*) FROM orders", database=name).strip() == "300"


async def test_a_vague_sql_request_asks_and_a_write_answer_is_refused(sql_engine, replica):
    from runtime.errors import SqlWriteRefused

    server, name, _ = replica
    carol = sql_engine.actor("cli", "carol")
    job = await sql_engine.submit("sql payments-replica: how are the orders doing", carol)
    assert job.state is JobState.needs_clarification
    assert "read-only statement" in job.clarification.question
    with pytest.raises(SqlWriteRefused):
        await sql_engine.answer(job.id, carol, "DELETE FROM orders")
    assert (await sql_engine.get(job.id)).state is JobState.needs_clarification
    [refusal] = [e for e in await sql_engine.events() if e.kind == "answer.refused"]
    assert refusal.data["error"] == "SqlWriteRefused" and refusal.data["job"] == job.job_id
    job = await sql_engine.answer(job.id, carol, "SELECT count(*) AS n FROM orders")
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert "300" in artifact(sql_engine, job, "result.txt")
    assert server.psql("SELECT count(*) FROM orders", database=name).strip() == "300"


@pytest.mark.parametrize(
    "sql_engine",
    [("", "      mask_columns: [email]\n      row_cap: 5\n")],
    indirect=True,
)
async def test_policy_masks_columns_and_caps_rows(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: SELECT id, email FROM orders ORDER BY id",
        sql_engine.actor("cli", "carol"),
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    csv = artifact(sql_engine, job, "result.csv")
    assert "@example.com" not in csv and "***" in csv
    assert len(csv.strip().splitlines()) == 1 + 5
    assert "truncated" in job.result["reason"]


@pytest.mark.parametrize(
    "sql_engine",
    [
        (
            "  - id: replica.run.review\n    job_types: [sql]\n    targets: [payments-replica]\n"
            "    actions: [run]\n    approvers:\n      people: [bob]\n    four_eyes: true\n",
            "",
        )
    ],
    indirect=True,
)
async def test_policy_can_require_approval_before_a_query_runs(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: SELECT count(*) FROM orders", sql_engine.actor("cli", "alice")
    )
    assert job.state is JobState.awaiting_approval
    assert job.pending_action.action == "run"
    assert await Worker(sql_engine).run_once() is None, "nothing runs before approval"
    await sql_engine.approve(job.id, sql_engine.actor("cli", "bob"))
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    assert "300" in artifact(sql_engine, job, "result.csv")


async def test_dsn_and_password_never_reach_records_or_artifacts(sql_engine):
    job = await sql_engine.submit(
        "sql payments-replica: SELECT current_user", sql_engine.actor("cli", "carol")
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.succeeded, job.result
    dumped = "\n".join(e.model_dump_json() for e in await audit.events_for(sql_engine.db))
    dumped += job.model_dump_json()
    for path in sql_engine.settings.artifacts_dir.rglob("*"):
        if path.is_file():
            dumped += path.read_text(errors="replace")
    assert PASSWORD not in dumped
    assert "PAYMENTS_REPLICA_DSN" in job.spec.model_dump_json(), "referenced by name only"


async def test_a_primary_whose_role_can_write_is_refused_and_recorded(
    sql_engine, replica, monkeypatch
):
    server, name, _ = replica
    monkeypatch.setenv(
        "PAYMENTS_REPLICA_DSN", f"postgresql://postgres@127.0.0.1:{server.port}/{name}"
    )
    job = await sql_engine.submit(
        "sql payments-replica: SELECT count(*) FROM orders", sql_engine.actor("cli", "carol")
    )
    job = await settle(sql_engine, job.id)
    assert job.state is JobState.failed
    assert "primary" in job.result["reason"]
    [refusal] = [e for e in await sql_engine.events(job.id) if e.kind == "tool.refused"]
    assert refusal.data["tool"] == "sql.query"
