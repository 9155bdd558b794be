"""Simulating a proposed policy on recorded jobs: 500 jobs recorded by the real engine on a
SQLite file, re-decided under a tightened policy, and the changes the simulation reports
checked against the test's own decide() of each request under both policies."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from runtime.engine import Engine
from runtime.intake import parse_request
from runtime.jobs import Origin
from runtime.policy import Decision, load_policy
from runtime.policy.simulate import simulate, since_time
from runtime.settings import Settings
from runtime.store.history_store import RecordedJob, all_recorded_jobs
from runtime.store.models import JobRow
from runtime.submission import decide_parsed
from tests.conftest import BUNDLED_POLICY

JOBS = 500
PEOPLE = ("alice", "bob", "carol")
REQUESTS = (
    "code demo: run `echo {i}`",
    "code demo: make it faster",
    "sql payments-replica: select {i}",
    "sql payments-replica: top 10 slowest queries",
    "doc reports: run `ls out{i}`",
    "doc reports: write up this week's incidents",
    'schedule "0 9 * * MON" sql payments-replica: select {i}',
    "fix the thing",
)


def requests() -> list[tuple[str, str]]:
    """(person, request) for every job: each kind of request from each person, in turn."""
    return [
        (PEOPLE[(i // len(REQUESTS)) % len(PEOPLE)], REQUESTS[i % len(REQUESTS)].format(i=i))
        for i in range(JOBS)
    ]


def policy_folder(folder: Path, tighten: bool) -> Path:
    """The bundled policy, or a tightened copy: engineers lose the doc grant, SQL on the replica
    stops at a run gate, the demo merge gate is dropped, carol becomes a reports approver (so
    routine gates get another approver) and code jobs get a model route."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(BUNDLED_POLICY.glob("*.yml")):  # the same files: the same hash
        if not tighten or set(yaml.safe_load(path.read_text())) != {"expect"}:
            shutil.copy(path, folder / path.name)
    if not tighten:
        return folder
    # The bundled examples describe the bundled policy: a file of only examples is left out.
    policy = yaml.safe_load((BUNDLED_POLICY / "default.yml").read_text())
    engineer = policy["roles"]["engineer"]
    engineer["grants"] = [g for g in engineer["grants"] if g["id"] != "engineer.doc.reports"]
    policy["approvals"] = [a for a in policy["approvals"] if a["id"] != "demo.merge.review"]
    policy["approvals"].append({
        "id": "replica.run.review", "job_types": ["sql"], "targets": ["payments-replica"],
        "actions": ["run"], "approvers": {"roles": ["demo-approver"]},
    })  # fmt: skip
    policy["people"]["carol"]["roles"].append("reports-approver")
    policy["models"]["routes"].insert(0, {
        "id": "models.code.assist", "job_types": ["code"], "model": "openai/gpt-4o-mini",
        "api_key_env": "OPENAI_API_KEY",
    })  # fmt: skip
    policy.pop("expect", None)
    (folder / "default.yml").write_text(yaml.safe_dump(policy, sort_keys=False))
    return folder


def settings(home: Path) -> Settings:
    url = f"sqlite+aiosqlite:///{home}/acp.db"
    env = {"ACP_HOME": str(home), "ACP_POLICY_DIR": str(BUNDLED_POLICY), "ACP_DATABASE_URL": url}
    return Settings.from_env(env)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, tuple[str, str]]]:
    """A database holding the 500 jobs, recorded once per module: (its home, id -> request)."""
    home = tmp_path_factory.mktemp("recorded") / "home"

    async def record() -> dict[int, tuple[str, str]]:
        engine = await Engine.open(settings(home))
        try:
            jobs = {}
            for person, text in requests():
                job = await engine.submit(text, engine.actor("cli", person))
                jobs[job.id] = (person, text)
            return jobs
        finally:
            await engine.close()

    return home, asyncio.run(record())


@pytest.fixture
async def engine(recorded, tmp_path: Path):
    """An engine over a copy of the recorded database."""
    home = tmp_path / "home"
    shutil.copytree(recorded[0], home)
    eng = await Engine.open(settings(home))
    try:
        yield eng
    finally:
        await eng.close()


async def simulated(engine: Engine, folder: Path, since: str = "30d"):
    proposed = load_policy(folder)
    async with engine.db.engine.connect() as conn:
        rows = await all_recorded_jobs(conn, since_time(since))
    return simulate(rows, proposed.policy, proposed_hash=proposed.sha256,
                    in_force_hash=engine.loaded.sha256, since=since)  # fmt: skip


def decided(policy, person: str, text: str) -> Decision:
    return decide_parsed(policy, person, parse_request(text, policy), Origin.cli)


def expected_changes(job: str, before: Decision, after: Decision) -> set[tuple[str, str, str]]:
    """The test's own reading of what differs: (job, kind, rule responsible)."""
    if before.effect != after.effect:
        rule = after.rule_ids[0] if after.effect == "allow" else after.rule_ids[-1]
        if after.effect == "allow" and "clarification.direct_mode" in before.rule_ids:
            rule = after.model_rule  # a model now runs what was asked for steps
        return {(job, "effect", rule)}
    if after.effect != "allow":
        return set()
    old = {(g.action, g.rule_id): sorted(g.approvers) for g in before.approvals}
    new = {(g.action, g.rule_id): sorted(g.approvers) for g in after.approvals}
    found = {(job, "approval_added", rule) for _, rule in new.keys() - old.keys()}
    found |= {(job, "approval_removed", rule) for _, rule in old.keys() - new.keys()}
    found |= {(job, "approvers", gate[1]) for gate in new.keys() & old.keys()
              if new[gate] != old[gate]}  # fmt: skip
    if (before.model, before.model_rule) != (after.model, after.model_rule):
        found.add((job, "model", after.model_rule or "models.none"))
    if set(before.tools_granted) != set(after.tools_granted):
        found.add((job, "tools", after.rule_ids[0]))
    if set(before.network_granted) != set(after.network_granted):
        found.add((job, "network", after.rule_ids[0]))
    return found


def reported(report) -> set[tuple[str, str, str]]:
    return {(job, change.kind, change.rule) for change in report.changes for job in change.jobs}


async def test_a_tightened_policy_changes_exactly_the_jobs_it_decides_differently(
    engine, recorded, tmp_path
):
    folder = policy_folder(tmp_path / "proposed", tighten=True)
    in_force, proposed = engine.policy, load_policy(folder).policy
    expected: set[tuple[str, str, str]] = set()
    for job_id, (person, text) in recorded[1].items():
        before = decided(in_force, person, text)
        job = await engine.get(job_id)
        assert job.decision == before.model_dump(mode="json"), "recorded as decided then"
        expected |= expected_changes(f"J-{job_id}", before, decided(proposed, person, text))

    report = await simulated(engine, folder)

    assert reported(report) == expected
    assert report.jobs_considered == JOBS and report.jobs_skipped == 0
    assert report.jobs_changed == len({job for job, _, _ in expected})
    kinds = {kind for _, kind, _ in expected}
    assert kinds >= {"effect", "approval_added", "approval_removed", "approvers", "model"}
    counts = {(c.kind, c.rule): c.jobs for c in report.counts}
    assert counts == {
        (kind, rule): len({j for j, k, r in expected if (k, r) == (kind, rule)})
        for _, kind, rule in expected
    }
    # What a reviewer reads: alice's and bob's doc jobs would be refused, by the grant rule.
    doc_jobs = {
        f"J-{i}" for i, (p, t) in recorded[1].items() if t.startswith("doc") and p != "carol"
    }
    [denied] = [c for c in report.changes if c.kind == "effect" and c.detail == "allow -> deny"
                and c.rule == "grants.none"]  # fmt: skip
    assert doc_jobs & set(denied.jobs) and set(denied.jobs) <= doc_jobs
    [added] = [c for c in report.changes if c.kind == "approval_added"]
    assert added.rule == "replica.run.review" and added.after["approvers"] == ["bob"]
    [approvers] = [c for c in report.changes if c.kind == "approvers"]
    assert (approvers.rule, approvers.before, approvers.after) == (
        "routines.review",
        ["bob"],
        ["bob", "carol"],
    )
    assert report.proposed_hash == load_policy(folder).sha256 != report.in_force_hash


async def test_the_policy_in_force_changes_nothing(engine, tmp_path):
    report = await simulated(engine, policy_folder(tmp_path / "same", tighten=False))
    assert (report.jobs_considered, report.jobs_changed, report.changes) == (JOBS, 0, [])
    assert report.counts == [] and report.proposed_hash == report.in_force_hash


async def test_since_leaves_out_older_jobs(engine, tmp_path):
    async with engine.db.begin() as conn:
        await conn.execute(
            update(JobRow).where(JobRow.id <= 100)
            .values(created_at=since_time("40d"))
        )  # fmt: skip
    folder = policy_folder(tmp_path / "proposed", tighten=True)

    recent = await simulated(engine, folder, since="30d")
    assert recent.jobs_considered == JOBS - 100
    assert all(int(job[2:]) > 100 for change in recent.changes for job in change.jobs)
    everything = await simulated(engine, folder, since="60d")
    assert everything.jobs_considered == JOBS
    assert everything.jobs_changed > recent.jobs_changed


def test_a_job_the_policy_does_not_decide_again_is_skipped_not_changed():
    proposed = load_policy(BUNDLED_POLICY).policy
    allow = {"effect": "allow", "approvals": [], "model": "direct"}
    rows = [
        RecordedJob(1, "alice", "schedule", "payments-replica", "cli", "pause R-1", [], None,
                    {"method": "command"}, allow),
        RecordedJob(2, "alice", "policy", "service", "cli", "apply", [], None, {}, allow),
        RecordedJob(3, "alice", "nosuchkind", "x", "cli", "hello", [], None, {}, allow),
    ]  # fmt: skip
    report = simulate(rows, proposed)
    assert (report.jobs_considered, report.jobs_skipped, report.jobs_changed) == (3, 3, 0)
