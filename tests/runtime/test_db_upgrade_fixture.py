"""Databases written by release 0.1.0 upgrade to this code and keep every record.

The fixtures (tests/fixtures/db-0.1.0, made by scripts/make_upgrade_fixture.py running the
release's own code) hold jobs in every state and of every kind, on SQLite and on PostgreSQL
(a pg_dump restored into a throwaway server). Each is upgraded with `acp db upgrade`, then
read back with the same function that recorded what 0.1.0 read, the audit chain verified,
and new work run on it.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from runtime.engine import Engine
from runtime.errors import SchemaOutOfDate
from runtime.jobs import JobState
from runtime.settings import Settings
from runtime.store import migrate
from runtime.worker import Worker
from tests.runtime.test_db_migrations import schema_diff, snapshot
from tests.support.acp_process import ROOT, acp

FIXTURES = ROOT / "tests" / "fixtures" / "db-0.1.0"
NEW_JOB = "code demo: run `echo upgraded > UPGRADED.md`"


def generator():
    """The generator's read-back (`snapshot`): the same comparison, run by the new code."""
    spec = importlib.util.spec_from_file_location(
        "make_upgrade_fixture", ROOT / "scripts" / "make_upgrade_fixture.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", "postgresql"])
def release_home(request, tmp_path: Path):
    """(environment, expected) of a 0.1.0 deployment unpacked into tmp_path."""
    backend = request.param
    prefixes = ("ACP_", "SLACK_", "OPENAI_", "PAYMENTS_", "ADMIN_")
    with tarfile.open(FIXTURES / f"{backend}-home.tar.gz") as archive:
        archive.extractall(tmp_path / "release", filter="data")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(prefixes)},
        "PYTHONUNBUFFERED": "1",
        "ACP_HOME": str(tmp_path / "release" / "home"),
        "ACP_POLICY_DIR": str(FIXTURES / "policy"),
    }
    if backend == "sqlite":
        env["ACP_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'release/home/acp.db'}"
    else:
        pg = request.getfixturevalue("pg_server")
        env["ACP_DATABASE_URL"] = request.getfixturevalue("pg_url")
        dump = tmp_path / "dump.sql"
        dump.write_bytes(gzip.decompress((FIXTURES / "postgresql.sql.gz").read_bytes()))
        name = env["ACP_DATABASE_URL"].rsplit("/", 1)[1]
        subprocess.run(
            [pg._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(pg.port), "-U", "postgres", "-d", name, "-f", str(dump)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    expected = json.loads((FIXTURES / f"{backend}-expected.json").read_text())
    return env, expected


async def test_a_release_database_upgrades_and_keeps_every_record(release_home):
    env, expected = release_home
    settings = Settings.from_env(env)
    assert set(expected["states"]) == {s.value for s in JobState} - {"received"}
    assert set(expected["kinds"]) == {"code", "sql", "browser", "doc", "schedule"}
    before = snapshot(env["ACP_DATABASE_URL"])

    # Before the upgrade: every command but the upgrade refuses, and changes nothing.
    with pytest.raises(SchemaOutOfDate, match="pre-migration"):
        await Engine.open(settings)
    refused = acp(env, "worker")  # the service (and its worker) alone open the database
    assert refused.returncode == SchemaOutOfDate.exit_code and "acp db upgrade" in refused.stderr
    status = acp(env, "db", "status")
    assert "made before versioned migrations" in status.stdout, status.stdout
    assert snapshot(env["ACP_DATABASE_URL"]) == before

    upgraded = acp(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from the pre-migration (0.1.0) schema to {migrate.HEAD}" in upgraded.stdout
    assert schema_diff(env["ACP_DATABASE_URL"]) == []

    engine = await Engine.open(settings)
    try:
        now = await generator().snapshot(engine)
        assert now["jobs"] == expected["jobs"], "every job reads back as 0.1.0 read it"
        for key in ("routines", "firings", "outbox_pending", "door_threads", "refusals"):
            assert now[key] == expected[key], key
        # The chain is the same chain, extended by one event that says what happened.
        recorded = expected["events"]
        assert now["events"][: len(recorded)] == recorded
        [upgrade] = now["events"][len(recorded) :]
        assert upgrade["kind"] == "schema.upgraded" and upgrade["job_id"] is None
        assert (
            now["audit"]["verify"]["artifacts_checked"]
            == (expected["audit"]["verify"]["artifacts_checked"])
        )
        rows = {t: n for t, n in now["table_rows"].items() if t != migrate.VERSION_TABLE}
        # Tables later releases added start empty (api_tokens: 0003, policy_loads: 0004).
        assert rows == {**expected["table_rows"], "audit_events": len(recorded) + 1,
                        "api_tokens": 0, "policy_loads": 0}  # fmt: skip
    finally:
        await engine.close()
    verified = acp(env, "audit", "verify")
    assert verified.returncode == 0 and f"{len(recorded) + 1} events" in verified.stdout

    # New work runs, and work left in flight by 0.1.0 goes on where it stopped.
    engine = await Engine.open(settings)
    try:
        alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
        job = await engine.submit(NEW_JOB, alice)
        worker = Worker(engine)
        while await worker.run_once():
            pass
        job = await engine.get(job.id)
        assert job.state is JobState.awaiting_approval, job.result
        await engine.approve(job.id, bob)
        while await worker.run_once():
            pass
        job = await engine.get(job.id)
        assert job.state is JobState.succeeded, job.result
        repo = Path(env["ACP_HOME"]) / "repos" / "demo"
        shown = await asyncio.to_thread(
            subprocess.run,
            ["git", "-C", str(repo), "show", "main:UPGRADED.md"],
            capture_output=True,
            text=True,
        )
        assert shown.stdout == "upgraded\n", shown.stderr
        [approved] = expected["jobs_by_state"]["approved"]
        assert (await engine.get(approved)).state is JobState.succeeded, "its merge published"
        [queued] = expected["jobs_by_state"]["queued"]
        assert (await engine.get(queued)).state is JobState.awaiting_approval
        assert await engine.verify_audit()
    finally:
        await engine.close()
