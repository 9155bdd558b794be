"""The database handle: SQLite (aiosqlite, WAL) by default, PostgreSQL (asyncpg) by URL.

The schema (and the triggers that make the audit log append-only) is made and upgraded by
migrate.py. Write transactions on SQLite are BEGIN IMMEDIATE so a read-then-write (the
audit chain head) cannot interleave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from runtime.errors import AcpError

# Any constant works; it only has to be the same in every process of one deployment.
AUDIT_LOCK = 0x616370_02


class Database:
    """One async engine plus the dialect-specific details the rest of the runtime relies on."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise AcpError(
                f"unsupported database URL scheme '{parsed.drivername}'",
                hint="use sqlite+aiosqlite:///path.db or postgresql+asyncpg://user@host/db",
            )
        if self.dialect == "sqlite":
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                url, connect_args={"timeout": 60}, pool_size=5, max_overflow=5
            )
            _sqlite_immediate_transactions(self.engine)
        else:
            self.engine = create_async_engine(url, pool_size=5, max_overflow=5)

        # The same pool, with the flag that makes SQLite's BEGIN an IMMEDIATE one.
        self._writer = self.engine.execution_options(acp_write=True)

    @property
    def sqlite_path(self) -> Path | None:
        database = make_url(self.url).database
        return Path(database) if self.dialect == "sqlite" and database else None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (on SQLite: BEGIN IMMEDIATE, so read-then-write cannot race)."""
        async with self._writer.begin() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, emit BEGIN, so it can be BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Reads take a plain (deferred) snapshot and never hold up writers.
        write = conn.get_execution_options().get("acp_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
