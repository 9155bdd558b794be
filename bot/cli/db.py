"""`acp db status | upgrade | downgrade`: the database's schema revision, for operators.

These open the database without the engine (no policy needed, and a database from a newer
release can still be looked at) and leave every rule to runtime.store.migrate.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import time
from typing import Any


def add_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="the database's schema: status, upgrade, downgrade")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    p = db_sub.add_parser(
        "status", help="current and latest schema revision (exit 0 only when up to date)"
    )
    p.add_argument("--json", action="store_true")
    p = db_sub.add_parser("upgrade", help="apply pending migrations (acp serve does at start)")
    p.add_argument("--to", default="head", metavar="REVISION", help="stop at this revision")
    p = db_sub.add_parser("downgrade", help="undo migrations down to a revision (not below 0001)")
    p.add_argument("revision", help="the revision to go back to, e.g. 0001_baseline")


def operator() -> str:
    """Who changed the schema, as the audit log records it."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


async def run(args: argparse.Namespace) -> int:
    from runtime.settings import Settings
    from runtime.store import migrate
    from runtime.store.database import Database

    settings = Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        if args.db_command == "status":
            return _print_status(db, await migrate.status(db), args.json)
        started = time.perf_counter()
        if args.db_command == "upgrade":
            found, applied = await migrate.upgrade(db, args.to, actor=operator())
        else:
            found, applied = await migrate.downgrade(db, args.revision, actor=operator())
        took = time.perf_counter() - started
        now = await migrate.status(db)
        where = _where(db)
        if not applied:
            print(f"{where}: already at {now.current}; nothing to do")
            return 0
        verb = "upgraded" if args.db_command == "upgrade" else "downgraded"
        if found.state == "empty":
            print(f"{where}: created the schema at {now.current} in {took:.2f}s")
        else:
            was = found.current or "the pre-migration (0.1.0) schema"
            steps = ", ".join(applied)
            print(f"{where}: {verb} from {was} to {now.current} ({steps}) in {took:.2f}s")
        return 0
    finally:
        await db.close()


def _where(db: Any) -> str:
    from runtime.secrets import redact

    return str(db.sqlite_path) if db.sqlite_path else redact(db.url)


def _print_status(db: Any, status: Any, as_json: bool) -> int:
    from runtime.errors import SchemaFromTheFuture, SchemaOutOfDate

    code = {"current": 0, "ahead": SchemaFromTheFuture.exit_code}.get(
        status.state, SchemaOutOfDate.exit_code
    )
    if as_json:
        print(
            json.dumps(
                {
                    "database": _where(db),
                    "dialect": db.dialect,
                    "current": status.current,
                    "latest": status.head,
                    "state": status.state,
                    "pending": list(status.pending),
                },
                indent=2,
            )
        )
        return code
    advice = {
        "empty": " — `acp db upgrade` (or any acp command) creates it",
        "legacy": " — run `acp db upgrade`",
        "behind": " — run `acp db upgrade`",
        "ahead": " — run the newer release that upgraded it; this one will not touch it",
    }.get(status.state, "")
    print(f"database : {db.dialect} ({_where(db)})")
    print(f"current  : {status.current or '-'}")
    print(f"latest   : {status.head}")
    print(f"state    : {status.describe()}{advice}")
    if status.pending:
        print(f"pending  : {', '.join(status.pending)}")
    return code
