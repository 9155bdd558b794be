"""A record no one can rewrite: signed checkpoints outside the database catch what the hash
chain alone cannot — the whole log rewritten with its hashes recomputed, a truncated tail, a
fork, a replaced checkpoint — on SQLite and PostgreSQL, online and from an auditor's copy."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from runtime import audit
from runtime.audit.checkpoints import Checkpointer, check_extends
from runtime.audit.note import load_signer
from runtime.audit.prove import prove_job
from runtime.errors import AuditChainBroken
from runtime.store import migrate
from tests.support.acp_process import ROOT, acp

FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'


def _baseline():
    path = migrate.MIGRATIONS_DIR / "versions" / "0001_baseline.py"
    spec = importlib.util.spec_from_file_location("acp_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _backup(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included), as `.backup` makes."""
    import sqlite3

    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


async def rewrite_history(db, actor: str = "mallory") -> None:
    """The attack: drop the append-only triggers, change event 1's actor, recompute every
    prev_hash and hash in order, recreate the triggers."""
    baseline = _baseline()
    async with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            await conn.execute(text("DROP TRIGGER audit_events_no_update"))
            await conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            await conn.execute(text("DROP TRIGGER audit_events_no_change ON audit_events"))
        rows = (await conn.execute(text(
            "SELECT seq, ts, job_id, kind, actor, artifacts, data FROM audit_events ORDER BY seq"
        ))).all()  # fmt: skip
        prev = audit.GENESIS
        for seq, ts, job_id, kind, who, arts, data in rows:
            who = actor if seq == 1 else who
            digest = audit.event_hash(prev, seq, ts, job_id, kind, who, arts, data)
            await conn.execute(
                text(
                    "UPDATE audit_events SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"
                ),
                {"a": who, "p": prev, "h": digest, "s": seq},
            )
            prev = digest
        for statement in (
            baseline._SQLITE_TRIGGERS if db.dialect == "sqlite" else baseline._POSTGRES_TRIGGERS
        ):
            await conn.execute(text(statement))


async def logged(engine, checkpointer) -> None:
    alice = engine.actor("cli", "alice")
    await engine.submit(FIX, alice)
    await checkpointer.checkpoint_now()
    await engine.submit("code demo: run `true`", alice)


@pytest.fixture
def checkpointer(engine):
    return Checkpointer(engine.settings, engine.db, engine.policy.audit.checkpoints)


async def test_a_rewritten_log_no_longer_extends_its_checkpoint(engine, checkpointer):
    await logged(engine, checkpointer)
    report = await engine.verify_audit()
    assert report.checkpoints_checked == 1 and report.latest_checkpoint == 2

    await rewrite_history(engine.db)
    events = await engine.events()
    assert events[0].actor == "mallory"
    with pytest.raises(AuditChainBroken, match="no longer extends checkpoint") as caught:
        await engine.verify_audit()
    assert "2.txt" in caught.value.message and "rewritten" in caught.value.message
    with pytest.raises(AuditChainBroken, match="no longer extends"):
        await check_extends(engine.settings, engine.db, engine.policy.audit.checkpoints)


async def test_a_truncated_tail_is_caught(engine, checkpointer):
    await logged(engine, checkpointer)
    await checkpointer.checkpoint_now()
    async with engine.db.engine.begin() as conn:
        if engine.db.dialect == "sqlite":
            await conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            await conn.execute(text("DROP TRIGGER audit_events_no_change ON audit_events"))
        await conn.execute(text("DELETE FROM audit_events WHERE seq > 2"))
    with pytest.raises(AuditChainBroken, match="removed from its end"):
        await engine.verify_audit()


async def test_a_fork_and_a_replaced_checkpoint_are_caught(engine, checkpointer):
    await logged(engine, checkpointer)
    directory = engine.settings.checkpoints_dir
    signer = load_signer(engine.settings)
    witness = directory.parent / "other-log"
    witness.mkdir()
    (witness / "2.txt").write_text(signer.checkpoint(2, b"\x07" * 32))  # signed, another tree
    report = audit.verify(engine.db, engine.artifacts, settings=engine.settings,
                          checkpoint_dirs=[witness])  # fmt: skip
    with pytest.raises(AuditChainBroken, match="forked"):
        await report

    original = (directory / "2.txt").read_text()
    lines = original.split("\n")
    lines[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # another root, the old signature
    (directory / "2.txt").write_text("\n".join(lines))
    with pytest.raises(AuditChainBroken, match="signature does not verify"):
        await engine.verify_audit()


async def test_an_auditor_verifies_a_copy_and_proves_a_job(engine, checkpointer, acp_env, tmp_path):
    await logged(engine, checkpointer)
    await checkpointer.checkpoint_now()
    key = load_signer(engine.settings).vkey
    bundle = await prove_job(engine.db, engine.settings, 1, checkpointer)
    assert {e["kind"] for e in bundle["events"]} == {"job.received", "job.queued"}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    script = [sys.executable, str(ROOT / "scripts" / "verify_audit_proof.py")]
    run = functools.partial(subprocess.run, capture_output=True, text=True)
    ok = await asyncio.to_thread(run, [*script, str(path), "--key", key])
    assert ok.returncode == 0, ok.stderr
    assert "all" in ok.stdout and "events are in the signed log" in ok.stdout
    changed = json.loads(path.read_text())
    changed["events"][0]["actor"] = "mallory"
    path.write_text(json.dumps(changed))
    bad = await asyncio.to_thread(run, [*script, str(path), "--key", key])
    assert bad.returncode != 0 and "does not hash to its hash" in bad.stderr

    if engine.db.sqlite_path is None:
        return
    # What an auditor holds: a copy of the database, the checkpoints, the public key.
    held = tmp_path / "auditor"
    shutil.copytree(engine.settings.checkpoints_dir, held / "checkpoints")
    await asyncio.to_thread(_backup, engine.db.sqlite_path, held / "copy.db")
    elsewhere = {**acp_env, "ACP_HOME": str(tmp_path / "nowhere")}
    args = ["audit", "verify", "--database", f"sqlite+aiosqlite:///{held / 'copy.db'}",
            "--checkpoints", str(held / "checkpoints"), "--key", key]  # fmt: skip
    verified = await asyncio.to_thread(acp, elsewhere, *args)
    assert verified.returncode == 0, verified.stderr
    assert "signed checkpoints extended" in verified.stdout
    copy = type(engine.db)(f"sqlite+aiosqlite:///{held / 'copy.db'}")
    try:
        await rewrite_history(copy)
    finally:
        await copy.close()
    refused = await asyncio.to_thread(acp, elsewhere, *args)
    assert refused.returncode == 12 and "no longer extends checkpoint" in refused.stderr
