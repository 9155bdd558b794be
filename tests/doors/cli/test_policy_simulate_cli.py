"""`acp policy simulate` end to end: a real `acp` process sends a proposed folder to the service
API over its socket (in the test's loop, over an engine with recorded jobs, on both databases),
prints what would change, and the service records that it simulated."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from tests.runtime.test_policy_simulate import policy_folder
from tests.support.acp_process import acp
from tests.support.api import api_for

RECORDED = [
    ("alice", "code demo: run `echo one`"),  # J-1: the merge gate goes, a model route comes
    ("carol", "code demo: run `ls`"),  # J-2: denied before and after
    ("alice", "doc reports: run `ls out`"),  # J-3: its grant goes: denied
    ("bob", "sql payments-replica: select 1"),  # J-4: a run gate comes
    ("bob", "doc reports: run `ls out`"),  # J-5: denied
    ("carol", "sql payments-replica: top 10 slowest queries"),  # J-6: a run gate comes
]


def env_for(engine, socket_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_"))}
    settings = engine.settings
    env.update(ACP_HOME=str(settings.home), ACP_DATABASE_URL=settings.database_url,
               ACP_POLICY_DIR=str(settings.policy_dir), ACP_SOCKET=str(socket_path),
               ACP_USER="bob")  # fmt: skip
    return env


async def record(engine) -> None:
    for person, text in RECORDED:
        await engine.submit(text, engine.actor("cli", person))


async def test_simulate_prints_the_report_and_records_that_it_simulated(engine, tmp_path):
    await record(engine)
    folder = policy_folder(tmp_path / "proposed", tighten=True)
    async with api_for(engine) as api:
        env = env_for(engine, api.socket_path)
        done = await asyncio.to_thread(acp, env, "policy", "simulate", "--policy", str(folder),
                                       "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        text = await asyncio.to_thread(acp, env, "policy", "simulate", "--policy", str(folder))
    assert report["in_force_hash"] == engine.loaded.sha256 != report["proposed_hash"]
    assert (report["jobs_considered"], report["jobs_changed"], report["jobs_skipped"]) == (6, 5, 0)
    found = {(c["kind"], c["rule"], c["detail"]): c["jobs"] for c in report["changes"]}
    assert found[("effect", "grants.none", "allow -> deny")] == ["J-3", "J-5"]
    assert found[("approval_added", "replica.run.review", "run gate, approvers: bob")] == [
        "J-4", "J-6"
    ]  # fmt: skip
    assert found[("approval_removed", "demo.merge.review", "merge gate, approvers: bob")] == [
        "J-1"
    ]  # fmt: skip
    [model] = [jobs for (kind, _, _), jobs in found.items() if kind == "model"]
    assert model == ["J-1"]
    assert not any("J-2" in jobs for jobs in found.values()), "denied before and after"
    counts = {(c["kind"], c["rule"]): c["jobs"] for c in report["counts"]}
    assert counts[("effect", "grants.none")] == 2

    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert f"proposed policy {report['proposed_hash'][:12]}" in out
    assert "jobs considered : 6" in out and "changed         : 5" in out
    assert "effect: allow -> deny (rule grants.none): 2 jobs\n  J-3, J-5" in out
    assert "gate added: run gate, approvers: bob (rule replica.run.review): 2 jobs" in out

    events = [e for e in await engine.events() if e.kind == "policy.simulated"]
    assert len(events) == 2 and all(e.job_id is None for e in events)
    assert events[0].actor.startswith("bob")
    assert events[0].data["proposed_hash"] == report["proposed_hash"]
    assert events[0].data["since"] == "30d" and events[0].data["jobs_changed"] == 5
    assert {"kind": "effect", "rule": "grants.none", "jobs": 2} in events[0].data["counts"]
    for job_id in range(1, 7):  # nothing was decided again for real
        assert (await engine.get(job_id)).policy_hash == engine.loaded.sha256


async def test_a_broken_or_missing_folder_is_one_clear_line(engine, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (policy_folder(tmp_path / "good", tighten=False) / "default.yml").read_text()
    lines = text.splitlines()
    at = next(n for n, line in enumerate(lines) if "confidence_threshold:" in line)
    lines[at] = "  confidence_threshold: lots"
    (broken / "default.yml").write_text("\n".join(lines) + "\n")
    async with api_for(engine) as api:
        env = env_for(engine, api.socket_path)
        bad = await asyncio.to_thread(acp, env, "policy", "simulate", "--policy", str(broken))
        missing = await asyncio.to_thread(acp, env, "policy", "simulate", "--policy",
                                          str(tmp_path / "nowhere"))  # fmt: skip
        empty = await asyncio.to_thread(acp, env, "policy", "simulate", "--policy", str(tmp_path))
        since = await asyncio.to_thread(acp, env, "policy", "simulate", "--policy",
                                        str(tmp_path / "good"), "--since", "a while")  # fmt: skip
    assert bad.returncode == 5 and bad.stdout == ""
    [line] = bad.stderr.splitlines()
    assert line.startswith(f"acp: {broken}/default.yml:{at + 1}: ")
    assert "confidence_threshold" in line and "Traceback" not in bad.stderr
    assert missing.returncode == 5 and "Traceback" not in missing.stderr
    assert f"the proposed policy folder {tmp_path / 'nowhere'} does not exist" in missing.stderr
    assert empty.returncode == 5 and f"no policy files (*.yml) in {tmp_path}" in empty.stderr
    assert since.returncode == 2 and "'a while' is not a duration" in since.stderr
    assert not [e for e in await engine.events() if e.kind == "policy.simulated"]
