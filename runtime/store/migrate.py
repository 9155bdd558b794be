"""Which schema revision a database is at, and bringing it to this code's (Alembic, run here).

Every opener checks the revision (one query, no Alembic import) before it touches a row:
- at this code's head: go;
- empty: create the schema (a fresh install needs no separate step);
- behind, or made before migrations: `acp db upgrade` and `acp serve` upgrade it, every other
  command refuses (SchemaOutOfDate) rather than run on a schema it does not match;
- at a revision this code does not know, a newer release upgraded it: refused, never touched
  (SchemaFromTheFuture).

An upgrade runs every pending revision in ONE transaction under the upgrade lock (PostgreSQL:
an advisory lock; SQLite: a lock file beside the database, then BEGIN IMMEDIATE), so two
instances never migrate at once, the second waits and then finds nothing to do, and a failed
revision leaves the database as it was. Upgrading an existing database appends a
`schema.upgraded` event to the audit log; migrations never change an audit row.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from runtime.errors import SchemaFromTheFuture, SchemaOutOfDate, SchemaUpgradeFailed
from runtime.store.database import Database

log = logging.getLogger("acp.migrate")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "acp_schema_version"
BASELINE = "0001_baseline"
# The newest revision in migrations/versions (a test keeps the two equal): openers compare
# against it without importing Alembic, which costs a CLI command ~100 ms.
HEAD = "0004_policy_loads"

# Tables in our database that another component makes and owns: APScheduler's job store.
UNMANAGED_TABLES = frozenset({"apscheduler_jobs"})

# Any constant works; it only has to be the same in every process of one deployment.
SCHEMA_LOCK = 0x616370_01
DEFAULT_LOCK_TIMEOUT_S = 600.0


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
    """What the migrations manage (Alembic's filter): everything but the unmanaged tables."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in UNMANAGED_TABLES


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  # the revision recorded in the database, None when there is none
    has_tables: bool  # whether the control plane's tables exist (made before migrations)
    head: str
    pending: tuple[str, ...]  # what an upgrade would apply, oldest first
    known: bool  # whether this code has the current revision

    @property
    def state(self) -> str:
        if self.current is None:
            return "legacy" if self.has_tables else "empty"
        if not self.known:
            return "ahead"
        return "current" if not self.pending else "behind"

    def describe(self) -> str:
        return {
            "empty": "empty: no schema yet (an upgrade creates it)",
            "legacy": "made before versioned migrations (release 0.1.0 or older)",
            "current": "up to date",
            "behind": f"{len(self.pending)} revision(s) behind",
            "ahead": "newer than this code (a later release upgraded it)",
        }[self.state]


# --- reading the revision (no Alembic) ---------------------------------------------------


async def read_revision(conn: AsyncConnection) -> tuple[str | None, bool]:
    """(the recorded revision or None, whether the control plane's tables exist)."""
    if conn.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('{}', 'jobs')"
        names = set((await conn.execute(text(query.format(VERSION_TABLE)))).scalars())
    else:
        query = "SELECT to_regclass('{}') IS NOT NULL, to_regclass('jobs') IS NOT NULL"
        versioned, jobs = (await conn.execute(text(query.format(VERSION_TABLE)))).one()
        names = {VERSION_TABLE} if versioned else set()
        if jobs:
            names.add("jobs")
    if VERSION_TABLE not in names:
        return None, "jobs" in names
    query = f"SELECT version_num FROM {VERSION_TABLE}"
    revisions = list((await conn.execute(text(query))).scalars())
    # One line of history: a branched version table would need a merge revision first.
    return (revisions[0] if len(revisions) == 1 else ",".join(sorted(revisions))) or None, True


def _script() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR))


def _status(current: str | None, has_tables: bool, target: str = "head") -> SchemaStatus:
    script = _script()
    head = script.get_current_head()
    known = current is None or _known(script, current)
    pending: tuple[str, ...] = ()
    if known:
        upper = head if target == "head" else target
        walk = script.iterate_revisions(upper, current or "base")
        pending = tuple(reversed([revision.revision for revision in walk]))
    return SchemaStatus(current, has_tables, head, pending, known)


def _known(script: Any, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


async def status(db: Database) -> SchemaStatus:
    async with db.engine.connect() as conn:
        current, has_tables = await read_revision(conn)
    return _status(current, has_tables)


# --- what every opener does ------------------------------------------------------------


async def prepare(db: Database, *, may_upgrade: bool, actor: str = "acp") -> SchemaStatus | None:
    """Make sure the schema is this code's before anything reads a row.

    Returns the status when something was done (created or upgraded), None when nothing was."""
    async with db.engine.connect() as conn:
        current, has_tables = await read_revision(conn)
    if current == HEAD:
        return None
    found = _status(current, has_tables)
    if found.state == "ahead":
        raise _from_the_future(db, found)
    if found.state in ("legacy", "behind") and not may_upgrade:
        raise SchemaOutOfDate(
            f"the database ({_where(db)}) is at {found.current or 'a pre-migration schema'}, "
            f"{found.describe()}; this code needs {found.head}",
            hint="run `acp db upgrade` (or start `acp serve`, which upgrades at start); "
            "back the database up first: some upgrades are one-way (README: Upgrading)",
        )
    if found.state == "current":  # HEAD constant out of step with versions/ (a test stops this)
        return None
    # Another instance may have upgraded it while this one waited for the lock.
    found, applied = await upgrade(db, actor=actor)
    return found if applied else None


def _from_the_future(db: Database, found: SchemaStatus) -> SchemaFromTheFuture:
    return SchemaFromTheFuture(
        f"the database ({_where(db)}) is at schema revision {found.current}, which this code "
        f"does not know (its newest is {found.head}): a newer release of acp upgraded it. "
        "Nothing was changed",
        hint="run the release that upgraded it, or restore the backup taken before that upgrade",
    )


def _where(db: Database) -> str:
    from runtime.secrets import redact

    return str(db.sqlite_path) if db.sqlite_path else redact(db.url)


# --- upgrade and downgrade ----------------------------------------------------------------


async def upgrade(
    db: Database,
    target: str = "head",
    *,
    actor: str = "acp",
    lock_timeout_s: float | None = None,
) -> tuple[SchemaStatus, tuple[str, ...]]:
    """Apply every pending revision up to `target` in one transaction, under the lock.

    Returns the status found (once the lock was held) and the revisions applied."""
    return await _migrate(db, "upgrade", target, actor, lock_timeout_s)


async def downgrade(
    db: Database, target: str, *, actor: str = "acp", lock_timeout_s: float | None = None
) -> tuple[SchemaStatus, tuple[str, ...]]:
    """Undo revisions down to `target` (never below the baseline), in one transaction."""
    return await _migrate(db, "downgrade", target, actor, lock_timeout_s)


async def _migrate(
    db: Database, action: str, target: str, actor: str, lock_timeout_s: float | None
) -> tuple[SchemaStatus, tuple[str, ...]]:
    timeout = _lock_timeout(lock_timeout_s)
    async with _upgrade_lock(db, timeout) as conn:
        current, has_tables = await read_revision(conn)
        found = _status(current, has_tables)
        if found.state == "ahead":
            raise _from_the_future(db, found)
        steps = await _plan(found, action, target)
        if not steps:
            return found, ()
        if action == "downgrade":  # recorded while the schema is still the one this code writes
            await _record(conn, db, actor, found, action, target, steps)
        started = time.monotonic()
        try:
            await conn.run_sync(_run_alembic, action, target)
        except Exception as error:
            raise SchemaUpgradeFailed(
                f"{action} to {target} failed at the database and was rolled back, "
                f"leaving it at {found.current or 'its pre-migration schema'}: "
                f"{type(error).__name__}: {error}",
                hint="nothing was changed; fix the cause above and run it again",
            ) from error
        if action == "upgrade" and found.state != "empty":
            await _record(conn, db, actor, found, action, target, steps, time.monotonic() - started)
    return found, steps


async def _plan(found: SchemaStatus, action: str, target: str) -> tuple[str, ...]:
    script = _script()
    if action == "downgrade" and target in ("head", "base"):
        raise SchemaUpgradeFailed(
            f"cannot downgrade to '{target}'",
            hint=f"name a revision from {BASELINE} (the oldest: below it is the 0.1.0 schema, "
            "which has no way back) up to the current one",
        )
    if target != "head" and not _known(script, target):
        raise SchemaUpgradeFailed(
            f"there is no schema revision '{target}'",
            hint="`acp db status` lists the revisions this code has",
        )
    if action == "upgrade":
        return _status(found.current, found.has_tables, target).pending
    if found.current is None:
        raise SchemaUpgradeFailed("the database has no schema revision to downgrade from")
    if target == found.current:
        return ()
    from alembic.util import CommandError

    try:
        above = [revision.revision for revision in script.iterate_revisions(found.current, target)]
    except CommandError:
        above = []
    if not above:
        raise SchemaUpgradeFailed(
            f"{target} is not below the database's revision {found.current}",
            hint="`acp db upgrade` moves a database forward",
        )
    return tuple(above)


def _run_alembic(conn: Connection, action: str, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    if action == "upgrade":
        command.upgrade(config, target)
    else:
        command.downgrade(config, target)


async def _record(
    conn: AsyncConnection,
    db: Database,
    actor: str,
    found: SchemaStatus,
    action: str,
    target: str,
    steps: tuple[str, ...],
    seconds: float | None = None,
) -> None:
    from runtime import audit

    data: dict[str, Any] = {
        "from": found.current or ("pre-migration" if found.has_tables else None),
        "to": steps[-1] if action == "upgrade" else target,
        "revisions": list(steps),
    }
    if seconds is not None:
        data["seconds"] = round(seconds, 3)
    await audit.append(conn, db, audit.NewEvent(f"schema.{action}d", actor, None, data))


def _lock_timeout(explicit: float | None) -> float:
    if explicit is not None:
        return explicit
    raw = os.environ.get("ACP_DB_LOCK_TIMEOUT_S")
    try:
        return float(raw) if raw else DEFAULT_LOCK_TIMEOUT_S
    except ValueError:
        raise SchemaUpgradeFailed(
            f"ACP_DB_LOCK_TIMEOUT_S={raw!r} is not a number of seconds"
        ) from None


def _say_waiting(wait_s: float) -> None:
    log.warning("waiting up to %g s for another instance's database upgrade", wait_s)


@contextlib.asynccontextmanager
async def _upgrade_lock(db: Database, wait_s: float) -> AsyncIterator[AsyncConnection]:
    """A write transaction that holds the deployment's one upgrade lock."""
    waited = (
        f"another instance held the upgrade lock for {wait_s:g} s (it may still be "
        "upgrading a large database)"
    )
    hint = "wait for it to finish (`acp db status`), or raise ACP_DB_LOCK_TIMEOUT_S"
    if db.dialect == "postgresql":
        async with db.begin() as conn:
            await conn.execute(text(f"SET LOCAL lock_timeout = {int(wait_s * 1000)}"))
            query = text(f"SELECT pg_try_advisory_xact_lock({SCHEMA_LOCK})")
            if not (await conn.execute(query)).scalar():
                _say_waiting(wait_s)
            try:
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
            except DBAPIError as error:
                if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
                    raise SchemaUpgradeFailed(waited, hint=hint) from error
                raise
            yield conn
        return
    async with _lock_file(db, wait_s, waited, hint), db.begin() as conn:
        yield conn


@contextlib.asynccontextmanager
async def _lock_file(db: Database, wait_s: float, waited: str, hint: str) -> AsyncIterator[None]:
    path = db.sqlite_path
    if path is None:  # an in-memory database: one process, nobody to wait for
        yield
        return
    fd = os.open(f"{path}.upgrade-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        for attempt in itertools.count():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SchemaUpgradeFailed(waited, hint=hint) from None
                if attempt == 0:
                    _say_waiting(wait_s)
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
