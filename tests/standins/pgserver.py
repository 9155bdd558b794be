"""A throwaway PostgreSQL server for tests and benchmarks.

    with PostgresServer() as pg:
        url = pg.create_database("acp")   # postgresql+asyncpg://postgres@127.0.0.1:PORT/acp

The cluster lives in a private temporary directory, listens on 127.0.0.1 only (plus a
unix socket in its own directory), trusts every local connection, and trades durability
for speed (fsync, synchronous_commit and full_page_writes are off). It is stopped and
deleted on stop(), on leaving the context, or at interpreter exit.

When run as root the server runs as the ``postgres`` user (PostgreSQL refuses to run as
root). Run this file directly for a quick manual check: ``python tests/standins/pgserver.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "find_pg_bin"]

_PG_ROOT = Path("/usr/lib/postgresql")
_RUN_AS = "postgres"
_START_TIMEOUT = 30.0
_SPEED_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def find_pg_bin() -> Path:
    """The bin directory of the newest PostgreSQL installed under /usr/lib/postgresql."""
    candidates: list[tuple[tuple[int, ...], Path]] = []
    for initdb in _PG_ROOT.glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        if re.fullmatch(r"\d+(\.\d+)*", version):
            candidates.append((tuple(int(p) for p in version.split(".")), initdb.parent))
    if not candidates:
        raise RuntimeError(
            f"no PostgreSQL server found (looked for {_PG_ROOT}/*/bin/initdb): "
            "install postgresql (apt-get install postgresql)"
        )
    return max(candidates)[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid database name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def _clean_env() -> dict[str, str]:
    """The current environment without PG* variables that could redirect the tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


class PostgresServer:
    """Start a private PostgreSQL 15 cluster on 127.0.0.1 for tests; stop and delete it on exit."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        settings: dict[str, str] | None = None,
        shared_preload_libraries: list[str] | None = None,
    ):
        """``settings`` are extra postgresql.conf lines, values written verbatim (quote strings:
        ``{"work_mem": "'8MB'"}``); ``shared_preload_libraries`` e.g. ``["pg_stat_statements"]``.
        """
        self.bin_dir = find_pg_bin()
        self.settings = dict(settings or {})
        if shared_preload_libraries:
            self.settings["shared_preload_libraries"] = (
                "'" + ",".join(shared_preload_libraries) + "'"
            )
        self._as_root = os.geteuid() == 0
        if base_dir is None:
            # Under root the postgres user must traverse every parent, so stay out of
            # private (0700) temp dirs and use /tmp directly.
            base_dir = Path("/tmp") if self._as_root else Path(tempfile.gettempdir())
        self.base_dir = Path(base_dir)
        self.root: Path | None = None
        self.port: int = 0
        self.pid: int = 0
        self._started = False

    # -- paths -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._root / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root / "sock"

    @property
    def log_file(self) -> Path:
        return self._root / "server.log"

    @property
    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("PostgresServer is not started")
        return self.root

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PostgresServer:
        if self._started:
            return self
        if self._as_root and shutil.which("runuser") is None:
            raise RuntimeError("running as root needs runuser (util-linux) to drop to postgres")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="acp-pg-", dir=self.base_dir))
        self._started = True
        atexit.register(self.stop)
        try:
            self.root.chmod(0o755)
            self.socket_dir.mkdir(mode=0o700)
            if self._as_root:
                for path in (self.root, self.socket_dir):
                    shutil.chown(path, user=_RUN_AS, group=None)
                self._check_traversable()
            self._initdb()
            self._start_postmaster()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        root = self.root
        if root is not None and (root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(
                    [self._bin("pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate"],
                    as_postgres=True,
                    check=False,
                    timeout=30,
                )
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        self.root = None
        self.pid = 0

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------

    def url_for(self, name: str) -> str:
        if not self.port:
            raise RuntimeError("PostgresServer is not started")
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def dsn(self) -> str:
        """A plain libpq/asyncpg DSN for the maintenance database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name: str) -> str:
        self.psql(f"CREATE DATABASE {_quote_ident(name)}")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command through psql over TCP and return its unaligned output."""
        if not self._started:
            raise RuntimeError("PostgresServer is not started")
        cmd = [
            self._bin("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ]
        return self._run(cmd, as_postgres=False, timeout=60).stdout

    # -- internals ---------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _run(
        self,
        cmd: list[str],
        *,
        as_postgres: bool,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        if as_postgres and self._as_root:
            cmd = ["runuser", "-u", _RUN_AS, "--", *cmd]
        proc = subprocess.run(
            cmd,
            cwd=self.root or "/",
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def _check_traversable(self) -> None:
        probe = self._run(["test", "-w", str(self._root)], as_postgres=True, check=False)
        if probe.returncode != 0:
            raise RuntimeError(
                f"user {_RUN_AS} cannot reach {self._root}; pass a base_dir whose parents "
                "are world-traversable (e.g. /tmp)"
            )

    def _initdb(self) -> None:
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_postgres=True,
            timeout=120,
        )
        lines = [f"{k} = {v}" for k, v in {**_SPEED_SETTINGS, **self.settings}.items()]
        lines.append(f"unix_socket_directories = '{self.socket_dir}'")
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.write("\n# acp test server\n" + "\n".join(lines) + "\n")

    def _start_postmaster(self) -> None:
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between probe and bind
            self.port = _free_port()
            proc = self._run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    str(int(_START_TIMEOUT)),
                ],
                as_postgres=True,
                check=False,
                timeout=_START_TIMEOUT + 10,
            )
            if proc.returncode == 0 and self._wait_ready():
                self.pid = self._read_pid()
                return
            last_error = f"{proc.stdout}{proc.stderr}"
            self._run(
                [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"],
                as_postgres=True,
                check=False,
                timeout=30,
            )
            if "already in use" not in self._log_tail():
                break
        raise RuntimeError(
            f"PostgreSQL failed to start or was not ready within {_START_TIMEOUT:.0f}s "
            f"(port {self.port}).\npg_ctl: {last_error.strip()}\n"
            f"--- server log ({self.log_file}) ---\n{self._log_tail()}"
        )

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        cmd = [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-U", "postgres", "-d", "postgres", "-t", "2"]
        while time.monotonic() < deadline:
            if self._run(cmd, as_postgres=False, check=False, timeout=10).returncode == 0:
                return True
            time.sleep(0.05)
        return False

    def _read_pid(self) -> int:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def _main() -> int:
    started = time.monotonic()
    with PostgresServer() as pg:
        print(f"started PostgreSQL in {time.monotonic() - started:.2f}s, pid {pg.pid}")
        print(f"data dir: {pg.data_dir}")
        url = pg.create_database("acp_check")
        print(f"url: {url}")
        print(pg.psql("SELECT version()", database="acp_check").strip())
        pg.drop_database("acp_check")
        root = pg.root
    print(f"stopped; directory removed: {root is not None and not root.exists()}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
