"""The throwaway PostgreSQL server used by the test suite really starts and cleans up."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.standins.pgserver import PostgresServer


async def test_server_starts_creates_database_and_cleans_up() -> None:
    server = PostgresServer().start()
    try:
        root = server.root
        assert root is not None and root.is_dir()
        assert server.port > 0 and server.pid > 0
        pid = server.pid

        url = server.create_database("acp_smoke")
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/acp_smoke"

        conn = await asyncpg.connect(
            host="127.0.0.1", port=server.port, user="postgres", database="acp_smoke"
        )
        try:
            version = await conn.fetchval("SELECT version()")
            major = await conn.fetchval("SHOW server_version_num")
        finally:
            await conn.close()
        assert version.startswith("PostgreSQL ")
        assert int(major) >= 150000, version

        server.drop_database("acp_smoke")
    finally:
        server.stop()
    assert not root.exists()
    assert server.root is None
    assert not _running(pid)


def _running(pid: int) -> bool:
    """True if pid is a live process (an unreaped zombie counts as stopped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
