"""Versioned schema migrations: models and migrations agree, upgrades keep every record, a
database from the future is left alone, two instances never migrate at once.

Real SQLite files and a real PostgreSQL server (both backends); `acp` as a subprocess.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import sqlite3
import subprocess
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from runtime.engine import Engine
from runtime.errors import SchemaFromTheFuture, SchemaOutOfDate, SchemaUpgradeFailed
from runtime.settings import Settings
from runtime.store import migrate
from runtime.store.database import Database
from runtime.store.models import Base
from runtime.worker import Worker
from tests.support.acp_process import ACP, ROOT, acp

FIX = 'code demo: run `sed -i "s/teh/the/" README.md`'
# Every revision after the baseline, oldest first.
AFTER_BASELINE = ("0002_pending_outbox_team_spend", "0003_api_tokens", "0004_policy_loads")
FUTURE = "9999_from_a_later_release"


def sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def schema_diff(url: str) -> list:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_object": migrate.include_object,
                    "compare_type": True,
                    "version_table": migrate.VERSION_TABLE,
                },
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def sync_engine(url: str):
    return create_engine(sync_url(url))


def start_serve(env: dict[str, str], log) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [*ACP, "serve"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )


def snapshot(url: str) -> dict[str, list]:
    """Every table's rows, the indexes and the recorded revision: what 'unchanged' means."""
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            out: dict[str, list] = {}
            for table in sorted(inspector.get_table_names()):
                rows = conn.execute(text(f"SELECT * FROM {table}")).all()
                out[table] = sorted(map(repr, rows))
                out[f"{table} indexes"] = sorted(i["name"] for i in inspector.get_indexes(table))
                out[f"{table} columns"] = [c["name"] for c in inspector.get_columns(table)]
            return out
    finally:
        engine.dispose()


def settings_for(acp_env: dict[str, str]) -> Settings:
    return Settings.from_env(acp_env)


async def at_revision(url: str, revision: str) -> None:
    db = Database(url)
    try:
        await migrate.upgrade(db, revision)
    finally:
        await db.close()


async def settle(engine: Engine, job_id: int):
    worker = Worker(engine)
    while await worker.run_once():
        pass
    return await engine.get(job_id)


# --- the models and the migrations are one schema ------------------------------------------


def test_head_constant_is_the_newest_migration():
    script = ScriptDirectory(str(migrate.MIGRATIONS_DIR))
    assert script.get_current_head() == migrate.HEAD
    assert script.get_base() == migrate.BASELINE
    assert len(script.get_heads()) == 1, "one line of history: add a merge revision"


async def test_models_and_migrations_agree(db_url):
    db = Database(db_url)
    try:
        found, applied = await migrate.upgrade(db)
    finally:
        await db.close()
    assert found.state == "empty" and applied == (migrate.BASELINE, *AFTER_BASELINE)
    assert AFTER_BASELINE[-1] == migrate.HEAD
    assert schema_diff(db_url) == [], "a model changed without a migration (or the reverse)"


async def test_downgrade_then_upgrade_keeps_every_record(engine, db_url):
    alice, bob = engine.actor("cli", "alice"), engine.actor("cli", "bob")
    job = await settle(engine, (await engine.submit(FIX, alice)).id)
    await engine.approve(job.id, bob)
    job = await settle(engine, job.id)
    assert job.state.value == "succeeded", job.result
    before = (await engine.get(job.id)).model_dump(), len(await engine.events())
    await engine.close()

    db = Database(db_url)
    try:
        found, undone = await migrate.downgrade(db, migrate.BASELINE, actor="cli:ops")
        assert found.current == migrate.HEAD and undone == AFTER_BASELINE[::-1]
        assert (await migrate.status(db)).current == migrate.BASELINE
        indexes = {
            i["name"] for i in inspect(create_engine(sync_url(db_url))).get_indexes("outbox")
        }
        assert "ix_outbox_door" in indexes and "ix_outbox_pending" not in indexes
        with pytest.raises(SchemaUpgradeFailed, match="cannot downgrade to 'base'"):
            await migrate.downgrade(db, "base")
        _, redone = await migrate.upgrade(db, actor="cli:ops")
        assert redone == AFTER_BASELINE
    finally:
        await db.close()

    assert schema_diff(db_url) == []
    reopened = await Engine.open(engine.settings)
    try:
        again = await reopened.get(job.id)
        assert again.model_dump() == before[0]
        events = await reopened.events()
        assert [e.kind for e in events[before[1] :]] == ["schema.downgraded", "schema.upgraded"]
        assert events[-1].actor == "cli:ops"
        assert events[-1].data["revisions"] == list(AFTER_BASELINE)
        assert await reopened.verify_audit()
    finally:
        await reopened.close()


async def test_failed_migration_leaves_the_database_as_it_was(db_url, tmp_path, monkeypatch):
    """Every revision of one upgrade commits together or not at all."""
    await at_revision(db_url, migrate.BASELINE)
    before = snapshot(db_url)
    versions = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, versions, ignore=shutil.ignore_patterns("__pycache__"))
    (versions / "versions" / "0099_broken.py").write_text(
        "from alembic import op\n"
        f"revision = '0099_broken'\ndown_revision = '{migrate.HEAD}'\n"
        "branch_labels = depends_on = None\n"
        "def upgrade():\n"
        "    op.execute('ALTER TABLE jobs ADD COLUMN half_done TEXT')\n"
        "    op.execute('SELECT * FROM no_such_table')\n"
        "def downgrade():\n    pass\n"
    )
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", versions)
    db = Database(db_url)
    try:
        with pytest.raises(SchemaUpgradeFailed, match="rolled back") as caught:
            await migrate.upgrade(db)
        assert "no_such_table" in caught.value.message
        assert (await migrate.status(db)).current == migrate.BASELINE
    finally:
        await db.close()
    assert snapshot(db_url) == before, "the good revisions and half the broken one must not stay"


# --- who may upgrade, and what is refused -----------------------------------------------


async def test_commands_refuse_a_database_behind_and_acp_db_upgrade_brings_it_up(acp_env, db_url):
    await at_revision(db_url, migrate.BASELINE)

    refused = acp(acp_env, "worker")  # only the service opens the database, upgrading it
    assert refused.returncode == SchemaOutOfDate.exit_code, refused.stderr
    assert "0001_baseline" in refused.stderr and "acp db upgrade" in refused.stderr
    status = acp(acp_env, "db", "status")
    assert status.returncode == SchemaOutOfDate.exit_code
    assert f"{len(AFTER_BASELINE)} revision(s) behind" in status.stdout
    assert migrate.HEAD in status.stdout

    upgraded = acp(acp_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from 0001_baseline to {migrate.HEAD}" in upgraded.stdout
    assert acp(acp_env, "db", "status").returncode == 0
    again = acp(acp_env, "db", "upgrade")
    assert "nothing to do" in again.stdout


async def test_a_database_from_the_future_is_refused_and_left_unchanged(acp_env, db_url):
    await at_revision(db_url, "head")
    sync = create_engine(sync_url(db_url))
    with sync.begin() as conn:  # what a later release would have done
        conn.execute(text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '{FUTURE}'"))
        conn.execute(text("CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, root TEXT)"))
    sync.dispose()
    before = snapshot(db_url)

    for command in (["serve"], ["db", "upgrade"], ["db", "downgrade", migrate.BASELINE]):
        done = acp(acp_env, *command)
        assert done.returncode == SchemaFromTheFuture.exit_code, (command, done.stderr)
        assert FUTURE in done.stderr and "newer release" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    status = acp(acp_env, "db", "status")
    assert status.returncode == SchemaFromTheFuture.exit_code and FUTURE in status.stdout
    with pytest.raises(SchemaFromTheFuture):
        await Engine.open(settings_for(acp_env), upgrade=True)
    assert snapshot(db_url) == before


# --- two instances at once -------------------------------------------------------------------


class HeldUpgradeLock:
    """The upgrade lock, held by this test as another instance would hold it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> HeldUpgradeLock:
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[1]
            self.fd = os.open(f"{path}.upgrade-lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        else:
            self.engine = create_engine(sync_url(self.url))
            self.conn = self.engine.connect()
            self.conn.execute(text(f"SELECT pg_advisory_lock({migrate.SCHEMA_LOCK})"))
        return self

    def release(self) -> None:
        if self.url.startswith("sqlite"):
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        elif not self.conn.closed:
            self.conn.close()
            self.engine.dispose()

    def __exit__(self, *exc: object) -> None:
        self.release()


async def test_two_services_starting_at_once_migrate_once(acp_env, db_url, tmp_path):
    await at_revision(db_url, migrate.BASELINE)
    env = {**acp_env, "ACP_DB_LOCK_TIMEOUT_S": "120"}
    logs = [tmp_path / f"serve-{n}.log" for n in (1, 2)]
    with HeldUpgradeLock(db_url) as lock:
        # Two services on one database (what this is about), each with its own API socket:
        # a second service on one socket is refused by design, whoever binds first.
        procs = [start_serve({**env, "ACP_SOCKET": str(tmp_path / f"serve-{n}.sock")}, log)
                 for n, log in enumerate(logs, start=1)]  # fmt: skip
        try:
            # Both come up and wait on the lock; neither starts while it is held.
            waiting = "waiting up to 120 s for another instance"
            deadline = time.monotonic() + 90
            while not all(waiting in log.read_text() for log in logs):
                assert time.monotonic() < deadline, [log.read_text() for log in logs]
                assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            assert not any("ready" in log.read_text() for log in logs)
            db = Database(db_url)
            try:
                assert (await migrate.status(db)).current == migrate.BASELINE
            finally:
                await db.close()
            lock.release()
            deadline = time.monotonic() + 90
            while not all("ready" in log.read_text() for log in logs):
                assert time.monotonic() < deadline, [log.read_text() for log in logs]
                assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
                await asyncio.sleep(0.2)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)

    engine = await Engine.open(settings_for(acp_env))
    try:
        upgrades = [e for e in await engine.events() if e.kind == "schema.upgraded"]
        assert len(upgrades) == 1, "one migrated, the other waited and found nothing to do"
        assert upgrades[0].actor.startswith("serve:")
        assert upgrades[0].data["from"] == migrate.BASELINE
        assert upgrades[0].data["to"] == migrate.HEAD
        said = [log.read_text() for log in logs]
        assert sum(f"schema   : {migrate.HEAD} (was 0001_baseline)" in text for text in said) == 1
    finally:
        await engine.close()
    assert schema_diff(db_url) == []


async def test_an_upgrade_waits_for_the_lock_only_until_its_deadline(acp_env, db_url):
    await at_revision(db_url, migrate.BASELINE)
    with HeldUpgradeLock(db_url):
        started = time.monotonic()
        done = acp({**acp_env, "ACP_DB_LOCK_TIMEOUT_S": "1.5"}, "db", "upgrade")
        took = time.monotonic() - started
    assert done.returncode == SchemaUpgradeFailed.exit_code, done.stderr
    assert "another instance held the upgrade lock for 1.5 s" in done.stderr
    assert took < 30
    db = Database(db_url)
    try:
        assert (await migrate.status(db)).current == migrate.BASELINE
    finally:
        await db.close()


# --- databases made before migrations ----------------------------------------------------------


async def test_a_pre_migration_database_missing_later_columns_is_adopted(tmp_path):
    """Releases before 0.1.0 made tables with fewer columns; the baseline adds what they lack."""
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    await at_revision(url, migrate.BASELINE)
    # The jobs table as the first release made it: no request key, door, team or cost.
    with sqlite3.connect(path) as conn:
        for column in ("request_key", "reply_to", "team", "cost_usd"):
            conn.execute(f"DROP INDEX IF EXISTS ix_jobs_{column}")
        conn.execute("DROP INDEX ux_jobs_request_key")
        for column in ("request_key", "reply_to", "team", "cost_usd"):
            conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        conn.execute("DROP TABLE routines")
        conn.execute(f"DROP TABLE {migrate.VERSION_TABLE}")
    db = Database(url)
    try:
        assert (await migrate.status(db)).state == "legacy"
        with pytest.raises(SchemaOutOfDate, match="pre-migration"):
            await migrate.prepare(db, may_upgrade=False)
        found, applied = await migrate.upgrade(db)
        assert found.state == "legacy" and applied == (migrate.BASELINE, *AFTER_BASELINE)
    finally:
        await db.close()
    assert schema_diff(url) == []
