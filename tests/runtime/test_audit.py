"""The audit chain: append-only in the database, tamper-evident, never forked by concurrency."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text

from runtime import audit
from runtime.audit import ArtifactStore, NewEvent
from runtime.errors import AuditChainBroken
from runtime.store import migrate
from runtime.store.database import Database
from tests.support.acp_process import acp

ROOT = Path(__file__).resolve().parents[2]


async def fill(db: Database, store: ArtifactStore, count: int) -> str:
    ref = store.put("evidence.txt", b"the diff we reviewed")
    async with db.begin() as conn:
        for i in range(count):
            arts = (ref.sha256,) if i == 3 else ()
            await audit.append(
                conn,
                db,
                NewEvent("tool.shell", "alice (cli:alice)", 1, {"i": i, "cmd": "make test"}, arts),
            )
    return ref.sha256


async def raw(db: Database, *statements: str) -> None:
    """Tamper as an attacker with database access would: drop the guard, then edit."""
    async with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            await conn.execute(text("DROP TRIGGER audit_events_no_update"))
            await conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            await conn.execute(text("DROP TRIGGER audit_events_no_change ON audit_events"))
        for statement in statements:
            await conn.execute(text(statement))


@pytest.fixture
async def db(db_url: str):
    database = Database(db_url)
    await migrate.upgrade(database)
    yield database
    await database.close()


async def test_database_refuses_update_and_delete_of_events(db, tmp_path):
    await fill(db, ArtifactStore(tmp_path / "a"), 3)
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"):
            async with db.begin() as conn:
                await conn.execute(text(statement))
    report = await audit.verify(db, ArtifactStore(tmp_path / "a"))
    assert report.events == 3


@pytest.mark.parametrize(
    ("tamper", "seq", "words"),
    [
        (
            "UPDATE audit_events SET data = replace(data, 'make test', 'rm -rf /') WHERE seq = 5",
            5,
            "was altered",
        ),
        ("UPDATE audit_events SET actor = 'bob (cli:bob)' WHERE seq = 2", 2, "was altered"),
        ("DELETE FROM audit_events WHERE seq = 4", 4, "is missing"),
        ("DELETE FROM audit_events WHERE seq = 8", None, None),  # the head: see below
        (
            "UPDATE audit_events SET seq = -seq WHERE seq IN (6, 7); "
            "UPDATE audit_events SET seq = 13 + seq WHERE seq IN (-6, -7)",
            6,
            "does not follow",
        ),
    ],
    ids=["edit-data", "edit-actor", "delete-middle", "delete-head", "reorder"],
)
async def test_verify_names_the_first_tampered_event(db, tmp_path, tamper, seq, words):
    store = ArtifactStore(tmp_path / "a")
    await fill(db, store, 8)
    before = await audit.verify(db, store)
    await raw(db, *tamper.split("; "))
    if seq is None:
        # Removing the newest event leaves a valid shorter chain; the head hash shows it.
        after = await audit.verify(db, store)
        assert after.events == 7 and after.head != before.head
        return
    with pytest.raises(AuditChainBroken, match=words) as caught:
        await audit.verify(db, store)
    assert caught.value.seq == seq
    assert f"#{seq}" in caught.value.message


async def test_verify_catches_a_changed_artifact_file(db, tmp_path):
    store = ArtifactStore(tmp_path / "a")
    digest = await fill(db, store, 6)
    path = store.path_for(digest)
    path.chmod(0o644)
    path.write_bytes(b"a different diff")
    with pytest.raises(AuditChainBroken, match="changed after it was recorded") as caught:
        await audit.verify(db, store)
    assert caught.value.seq == 4
    path.unlink()
    with pytest.raises(AuditChainBroken, match="missing"):
        await audit.verify(db, store)


APPENDER = textwrap.dedent(
    """
    import asyncio, sys
    from runtime import audit
    from runtime.audit import NewEvent
    from runtime.store.database import Database

    async def main(url, who, count):
        db = Database(url)
        for i in range(count):
            async with db.begin() as conn:
                await audit.append(conn, db, NewEvent("race", who, None, {"i": i}))
        await db.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_concurrent_appenders_never_fork_the_chain(db, tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, db.url, f"p{n}", "60"], cwd=ROOT)  # noqa: ASYNC220
        for n in range(4)
    ]
    tasks = [asyncio.create_task(_append_many_tasks(db, f"t{n}", 30)) for n in range(3)]
    await asyncio.gather(*tasks)
    for proc in procs:
        assert await asyncio.to_thread(proc.wait, 120) == 0
    report = await audit.verify(db, ArtifactStore(tmp_path / "a"))
    assert report.events == 4 * 60 + 3 * 30
    events = await audit.events_for(db)
    assert [e.seq for e in events] == list(range(1, report.events + 1))
    assert len({e.prev_hash for e in events}) == report.events, "two events share a parent"


async def _append_many_tasks(db: Database, who: str, count: int) -> None:
    for i in range(count):
        async with db.begin() as conn:
            await audit.append(conn, db, NewEvent("race", who, None, {"i": i}))


async def test_acp_audit_verify_exits_nonzero_and_names_the_event(acp_env, engine):
    # With the service stopped, `acp audit verify` reads the database itself (read only).
    await engine.submit("code demo: run `true`", engine.actor("cli", "alice"))
    assert acp(acp_env, "audit", "verify").returncode == 0
    db = Database(acp_env["ACP_DATABASE_URL"])
    try:
        async with db.engine.connect() as conn:
            stored = (
                await conn.execute(text("SELECT data FROM audit_events WHERE seq = 1"))
            ).scalar()
        forged = json.dumps({**json.loads(stored), "prompt": "code demo: run `curl x | sh`"})
        await raw(db, f"UPDATE audit_events SET data = '{forged}' WHERE seq = 1")
    finally:
        await db.close()
    result = acp(acp_env, "audit", "verify")
    assert result.returncode == 12
    assert "event #1 (job.received) was altered" in result.stderr


async def test_audit_records_lone_surrogates_in_any_field_and_the_chain_verifies(db, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    data = {"path": "x-\ud800", "bad-\udcff": ["\udfff", {"deep": "\ud83d\ude00"}], "ok": "é"}
    async with db.begin() as conn:
        [event] = await audit.append_many(
            conn, db, [NewEvent("tool.\ud800", "model \udcff", 1, data)]
        )

    assert event.data == {
        "path": "x-\\ud800",
        "bad-\\udcff": ["\\udfff", {"deep": "\\ud83d\\ude00"}],
        "ok": "é",
    }
    assert event.kind == "tool.\\ud800" and event.actor == "model \\udcff"
    assert (await audit.verify(db, store)).events == 1
    [stored] = await audit.events_for(db)
    assert stored.data == event.data
