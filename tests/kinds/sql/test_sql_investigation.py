"""An investigation: a SQL job asked in free words, with a model route, runs the agent loop
over the read-only SQL tool. A scripted model (the OpenAI-compatible stand-in, reached through
litellm) issues five queries: one writes, one calls a denied function, one returns more rows
than the cap; the refusals reach the model and the record, masking holds in what it reads,
and the findings cite the evidence that ran."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from bot.console.evidence import render_evidence
from runtime import audit
from runtime.engine import Engine
from runtime.jobs import JobState
from runtime.kinds import registry
from runtime.settings import Settings
from tests.kinds.sql.test_sql_jobs import artifact, policy_dir, replica, settle  # noqa: F401
from tests.standins.model_standin import ModelStandIn, call, say

MODEL = "gpt-4o-mini"
REPORT = (
    "## Findings\n\nOrders are evenly split by status [E1]; the order rows carry masked "
    "emails [E2]; no session holds a lock that blocks others [E3].\n"
)


def _with_model(folder: Path, base_url: str) -> None:
    path = folder / "default.yml"
    policy = yaml.safe_load(path.read_text())
    policy["models"]["routes"].insert(0, {
        "id": "models.sql.standin", "job_types": ["sql"], "model": f"openai/{MODEL}",
        "api_base": base_url, "api_key_env": "ACP_SQL_TEST_KEY",
    })  # fmt: skip
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


@contextlib.asynccontextmanager
async def investigating(
    tmp_path: Path, served: tuple, monkeypatch: Any, replies: tuple, database: str = ""
) -> AsyncIterator[tuple[Engine, ModelStandIn]]:
    """A service whose `sql` route is the stand-in model, scripted with `replies`, reading the
    replica fixture's database (`served`), with `database`'s extra target settings."""
    monkeypatch.setenv("PAYMENTS_REPLICA_DSN", served[2])
    monkeypatch.setenv("ACP_SQL_TEST_KEY", "sk-sql-test")
    folder = policy_dir(tmp_path, database=database)
    async with ModelStandIn(api_key="sk-sql-test") as standin:
        _with_model(folder, standin.base_url)
        standin.script(MODEL, *replies)
        settings = Settings.from_env(
            {"ACP_HOME": str(tmp_path / "home"), "ACP_POLICY_DIR": str(folder)}
        )
        engine = await Engine.open(settings)
        try:
            yield engine, standin
        finally:
            await engine.close()


async def test_a_scripted_investigation_is_refused_masked_capped_and_cited(
    tmp_path,
    replica,  # noqa: F811 (the fixture, imported above)
    monkeypatch,
):
    replies = (
        call("query", statement="SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1"),
        call("query", statement="DELETE FROM orders"),
        call("query", statement="SELECT pg_read_file('/etc/passwd')"),
        call("query", statement="SELECT id, email FROM orders ORDER BY id"),
        call("diagnostic", name="locks"),
        say(REPORT),
    )
    capped = "      mask_columns: [email]\n      row_cap: 50\n"
    async with investigating(tmp_path, replica, monkeypatch, replies, capped) as (engine, standin):
        job = await engine.submit(
            "sql payments-replica: why is checkout slow since this morning?",
            engine.actor("cli", "carol"),
        )
        job = await settle(engine, job.id)
        events = await engine.events(job.id)
        sent = standin.requests_for(MODEL)
        dumped = "\n".join(e.model_dump_json() for e in await audit.events_for(engine.db))
        page = str(render_evidence(job, events, engine.artifacts))
        # Replayed from the record: no model is called, every query runs again.
        same = await engine.replay(job.id)
        server, database, _ = replica
        server.psql("UPDATE orders SET status = 'paid' WHERE id = 1", database=database)
        changed = await engine.replay(job.id)
    assert len(standin.requests_for(MODEL)) == len(sent) == 6
    assert same.identical and same.model_responses == 6 and same.queries == 3, same
    assert not changed.identical  # a refund became paid: E1's counts differ, and it says so
    moved = [line for line in changed.difference.splitlines() if line[:1] in "+-"]
    assert any(line.startswith("+") and "paid" in line and "101" in line for line in moved)

    assert job.state is JobState.succeeded, job.result
    assert job.result["reason"] == "findings from 3 queries"
    # The model heard each refusal as its tool's result, and went on.
    results = [m["content"] for m in sent[-1].messages if m["role"] == "tool"]
    assert len(results) == 5
    assert results[0].startswith("E1: `SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1`")
    assert results[1].startswith("refused") and "DELETE" in results[1]
    assert results[2].startswith("refused") and "pg_read_file" in results[2]
    assert results[3].startswith("E2: ") and "50 row(s) (cut at the row cap)" in results[3]
    assert results[4].startswith("E3: diagnostic locks")
    # Masking holds in what the model reads, and in everything kept.
    everything = json.dumps([r.messages for r in sent])
    assert "@example.com" not in everything and "***" in results[3]
    assert "@example.com" not in dumped
    # The record: three queries ran through the SQL tool, two were refused.
    ran = [e for e in events if e.kind == "tool.sql.query"]
    refused = [e for e in events if e.kind == "tool.refused"]
    assert len(ran) == 3 and [e.data["diagnostic"] for e in ran] == [None, None, "locks"]
    assert len(refused) == 2
    # The findings: the model's report, then the evidence it cites, each an artifact.
    findings = artifact(engine, job, "findings.md")
    assert findings.startswith(REPORT.rstrip())
    evidence = {a.name: a.sha256 for a in job.artifacts if a.name.startswith("evidence/")}
    assert sorted(evidence) == ["evidence/E1.txt", "evidence/E2.txt", "evidence/E3.txt"]
    for n in (1, 2, 3):
        sha = evidence[f"evidence/E{n}.txt"]
        assert f"- [E{n}] `evidence/E{n}.txt` (sha256 {sha[:12]})" in findings
    assert "paid" in artifact(engine, job, "evidence/E1.txt")
    # The console's job page: the findings first, then the three queries as E1-E3.
    assert 'id="ev-findings"' in page and "Orders are evenly split by status [E1]" in page
    assert page.index('id="ev-findings"') < page.index('id="ev-sql"')
    assert [f"E{n}" in page for n in (1, 2, 3)] == [True] * 3 and "@example.com" not in page
    # What every door shows of it: the findings to read, the evidence as files.
    shown = registry.kind_for(job.spec.job_type).results(job)
    assert shown.read == [next(a.sha256 for a in job.artifacts if a.name == "findings.md")]
    assert [a.filename for a in shown.attach] == [f"{job.job_id}-E{n}.txt" for n in (1, 2, 3)]


async def test_a_question_without_a_diagnostics_words_is_investigated_too(
    tmp_path,
    replica,  # noqa: F811 (the fixture, imported above)
    monkeypatch,
):
    replies = (
        call("query", statement="SELECT count(*) FROM orders WHERE status = 'refunded'"),
        say("100 orders were refunded [E1], a third of all; [E7] is not evidence."),
    )
    async with investigating(tmp_path, replica, monkeypatch, replies) as (engine, _):
        job = await engine.submit(
            "sql payments-replica: did refunds go up?", engine.actor("cli", "carol")
        )
        job = await settle(engine, job.id)
        findings = artifact(engine, job, "findings.md")
    assert job.state is JobState.succeeded, job.result
    assert "- [E1] `evidence/E1.txt`" in findings
    assert "- [E7] no query E7 ran" in findings  # a citation of nothing is said, not dropped
