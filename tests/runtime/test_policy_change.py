"""Changing the policy through review: a proposal is a `policy` job whose evidence is the YAML
diff and a simulation of the change on recorded jobs; its proposer may not approve it
(four-eyes), nor may someone without the security-approver role; approved, the files are
written into the policy folder and put in force, recorded with the job that did it.

The real engine and worker on SQLite, the bundled policy copied to tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.engine import Engine
from runtime.errors import BadRequest, PolicyDenied, PolicyFileError
from runtime.jobs import JobState
from runtime.policy import load_policy
from runtime.policy_change import propose
from runtime.settings import Settings
from runtime.store import policy_store
from runtime.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "policies" / "default.yml"


async def open_service(tmp_path: Path) -> tuple[Engine, Path]:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "default.yml").write_text(BUNDLED.read_text())
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'acp.db'}",
        policy_dir=folder,
    )
    return await Engine.open(settings, upgrade=True, actor="serve:test"), folder


def tightened(folder: Path) -> dict[str, str]:
    """Carol loses her read-only grant on the replica (and its example says so)."""
    text = (folder / "default.yml").read_text()
    grant = "      - id: analyst.sql.replica\n        job_types: [sql]\n        targets: "
    text = text.replace(grant + "[payments-replica]", grant + "[nothing]", 1)
    return {"default.yml": text.split("\nexpect:")[0] + "\n"}


async def test_a_policy_change_is_proposed_reviewed_applied_and_recorded(tmp_path: Path):
    engine, folder = await open_service(tmp_path)
    try:
        alice, bob, carol = (engine.actor("cli", n) for n in ("alice", "bob", "carol"))
        before = engine.loaded.sha256
        # Some history for the simulation: carol's replica query would now be denied.
        recorded = await engine.submit("sql payments-replica: select 1", carol)
        assert recorded.state is JobState.queued
        files = tightened(folder)
        job = await propose(engine, files, alice)
        assert job.spec.job_type == "policy" and job.state is JobState.queued
        assert job.decision["approvals"][0]["rule_id"] == "policy.change.review"
        worker = Worker(engine)
        ran = await worker.run_once()
        while ran is not None and ran.id != job.id:  # carol's query runs first (and fails: no DSN)
            ran = await worker.run_once()
        job = await engine.get(job.id)
        assert job.state is JobState.awaiting_approval, job.result
        names = {a.name: a for a in job.artifacts}
        diff = engine.artifacts.read(names["policy.diff"].sha256).decode()
        assert (
            "-        targets: [payments-replica]" in diff and "+        targets: [nothing]" in diff
        )
        simulation = engine.artifacts.read(names["simulation.txt"].sha256).decode()
        assert recorded.job_id in simulation and "deny" in simulation
        # The files on disk are untouched until the change is approved.
        assert load_policy(folder).sha256 == before

        with pytest.raises(PolicyDenied, match="four-eyes"):
            await engine.approve(job.id, alice)
        with pytest.raises(PolicyDenied, match="not an approver"):
            await engine.approve(job.id, carol)
        approved = await engine.approve(job.id, bob)
        assert approved.state is JobState.approved
        done = await worker.run_once()
        assert done is not None and done.id == job.id
        assert done.state is JobState.succeeded, done.result
        proposed = done.result["policy_hash"]
        # Written, in force for every process (the database's record), and recorded.
        assert load_policy(folder, examples=False).sha256 == proposed
        async with engine.db.engine.connect() as conn:
            row = await policy_store.in_force(conn)
        assert row is not None and row["policy_hash"] == proposed and row["job_id"] == job.id
        assert row["source"] == f"job {job.job_id}" and row["actor"].startswith("bob (approved")
        await engine.policies.follow()
        assert engine.loaded.sha256 == proposed
        loaded = [e for e in await engine.events(job.id) if e.kind == "policy.loaded"]
        assert loaded and loaded[0].data["previous"] == before
        assert loaded[0].artifacts == [proposed]
        # Under the new policy carol's replica query is denied.
        again = await engine.submit("sql payments-replica: select 2", carol)
        assert again.state is JobState.denied
        # The service's watcher then sees files equal to the policy in force: no second load.
        result = await engine.policies.reload("filesystem", "filesystem")
        assert not result.changed and result.error is None
    finally:
        await engine.close()


async def test_a_proposal_is_refused_at_once_when_invalid_or_unchanged_or_not_granted(
    tmp_path: Path,
):
    engine, folder = await open_service(tmp_path)
    try:
        alice, carol = engine.actor("cli", "alice"), engine.actor("cli", "carol")
        with pytest.raises(PolicyFileError, match=r"default\.yml:2"):
            await propose(engine, {"default.yml": "people:\n  x: {roles: [ghost]}\n"}, alice)
        with pytest.raises(BadRequest, match="the one in force"):
            await propose(engine, {"default.yml": (folder / "default.yml").read_text()}, alice)
        denied = await propose(engine, tightened(folder), carol)
        assert denied.state is JobState.denied
        assert "carol has no grant for policy jobs" in denied.result["reason"]
    finally:
        await engine.close()


async def test_an_approved_change_is_not_applied_over_a_policy_changed_since_review(
    tmp_path: Path,
):
    engine, folder = await open_service(tmp_path)
    try:
        alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
        job = await propose(engine, tightened(folder), alice)
        worker = Worker(engine)
        await worker.run_once()
        await engine.approve(job.id, bob)
        # Someone edits the folder by hand meanwhile.
        text = (folder / "default.yml").read_text()
        (folder / "default.yml").write_text(text.replace("threshold: 0.75", "threshold: 0.8"))
        assert (await engine.policies.reload("filesystem", "filesystem")).changed
        hand_edited = engine.loaded.sha256
        done = await worker.run_once()
        assert done is not None and done.state is JobState.failed
        assert "changed since this change was reviewed" in done.result["reason"]
        assert load_policy(folder).sha256 == hand_edited  # nothing was written
    finally:
        await engine.close()
