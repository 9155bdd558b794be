"""Shared pytest fixtures.

Databases: ``db_url`` runs a test once on SQLite and once on a real, throwaway PostgreSQL
server (started lazily, once per session, only if a PostgreSQL case runs).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standins.pgserver import PostgresServer

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

SECRET_VALUE = "sk-test-5ecret-value-never-shown"
BUNDLED_POLICY = Path(__file__).resolve().parent.parent / "policies"


@pytest.fixture
def acp_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    """Environment for a service and its `acp` commands: its own home, database and a secret."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "SLACK_", "OPENAI_"))}
    env.update(
        ACP_HOME=str(tmp_path / "home"),
        ACP_DATABASE_URL=db_url,
        ACP_POLICY_DIR=str(BUNDLED_POLICY),
        OPENAI_API_KEY=SECRET_VALUE,
        PYTHONUNBUFFERED="1",
        # Tests run side by side: the API's HTTP listener takes any free port.
        ACP_API_LISTEN="127.0.0.1:0",
        ACP_CONSOLE_LISTEN="127.0.0.1:0",
    )
    return env


@pytest.fixture
async def engine(acp_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """An in-process Engine on a fresh database (both backends), with the secret in its env."""
    from runtime.engine import Engine
    from runtime.settings import Settings

    monkeypatch.setenv("OPENAI_API_KEY", SECRET_VALUE)
    eng = await Engine.open(Settings.from_env(acp_env))
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
def api_thread():
    """`env = api_thread(env)`: the service API answers `acp` on env's socket for the rest of
    the test (its own engine, in a thread), for tests that drive an engine in-process."""
    from tests.support.api import ApiThread

    started: list[ApiThread] = []

    def start(env: dict[str, str]) -> dict[str, str]:
        started.append(ApiThread(env).__enter__())
        return env

    yield start
    for thread in reversed(started):
        thread.__exit__(None, None, None)
