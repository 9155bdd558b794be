"""Shared pytest fixtures.

Databases: ``db_url`` runs a test once on SQLite and once on a real, throwaway PostgreSQL
server (started lazily, once per session, only if a PostgreSQL case runs).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

try:  # tests/ is on sys.path under pytest's default (prepend) import mode
    from pgserver import PostgresServer
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.pgserver import PostgresServer


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the whole session."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (SQLAlchemy asyncpg URL)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: SQLite file, then PostgreSQL (same test, both backends)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/acp.db"
    return request.getfixturevalue("pg_url")


# --- Other fixtures (added by the lead) -----------------------------------------------
