"""`acp audit verify | export | prove | key`: check the log against its signed checkpoints,
write it out (our JSON lines or OCSF), prove a job's events are in it, print the public key.

Asked of the running service; with the service stopped, or given `--database`, these read the
log straight from a database (a copy is enough) with the checkpoints and the public key, which
is what an auditor holds. Reading only: nothing here writes the database.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="verify, export or prove the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    def offline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database", metavar="URL", help="read this database (e.g. a copy: "
                       "sqlite+aiosqlite:///copy.db) instead of asking the service")  # fmt: skip

    p = audit_sub.add_parser(
        "verify", help="check the hash chain, the artifacts and every signed checkpoint"
    )
    p.add_argument("--json", action="store_true")
    offline(p)
    p.add_argument("--checkpoints", action="append", default=[], metavar="DIR",
                   help="also check the checkpoints in this directory (repeatable)")  # fmt: skip
    p.add_argument("--key", metavar="VKEY|FILE",
                   help="the log's public key (`acp audit key`), as text or a file")  # fmt: skip
    p = audit_sub.add_parser("export", help="write events as JSON lines (ours, or OCSF)")
    p.add_argument("--job", help="only this job's events")
    p.add_argument("--format", choices=["jsonl", "ocsf"], default="jsonl")
    p.add_argument("--output", "-o", help="file to write (default stdout)")
    offline(p)
    p = audit_sub.add_parser(
        "prove", help="inclusion proofs of a job's events against a signed checkpoint"
    )
    p.add_argument("job")
    p.add_argument("--output", "-o", help="file to write (default stdout)")
    offline(p)
    p = audit_sub.add_parser("key", help="the public key checkpoints are signed with")


async def run(args: argparse.Namespace, client: ServiceClient) -> int:
    command = {"verify": _verify, "export": _export, "prove": _prove, "key": _key}
    return await command[args.audit_command](args, client)


async def _service_or_offline(
    args: argparse.Namespace,
    client: ServiceClient,
    online: Callable[[], Awaitable[Any]],
    offline: Callable[[Any, Any], Awaitable[Any]],
) -> Any:
    """Ask the service; with `--database`, or when no service is running, read directly."""
    from runtime.errors import ServiceUnavailable

    if not getattr(args, "database", None):
        try:
            return await online()
        except ServiceUnavailable:
            if client.url:  # a remote service that is down: there is no local log to read
                raise
    from runtime.settings import Settings
    from runtime.store.database import Database

    settings = Settings.from_env()
    url = getattr(args, "database", None) or settings.database_url
    db = Database(url)
    try:
        return await offline(db, settings)
    finally:
        await db.close()


async def _verify(args: argparse.Namespace, client: ServiceClient) -> int:
    started = time.perf_counter()

    async def offline(db: Any, settings: Any) -> dict[str, Any]:
        from pathlib import Path

        from runtime.audit import ArtifactStore, verify

        key = _key_text(args.key)
        report = await verify(
            db, ArtifactStore(settings.artifacts_dir), settings=settings,
            checkpoint_dirs=[Path(d) for d in args.checkpoints], public_key=key,
        )  # fmt: skip
        return {"ok": True, **report.model_dump(mode="json")}

    if args.checkpoints or args.key:
        args.database = args.database or _local_url()
    report = await _service_or_offline(
        args, client, lambda: client.call("GET", "/audit/verify"), offline
    )
    took = time.perf_counter() - started
    if args.json:
        print_json({**report, "seconds": round(took, 3)})
        return 0
    checked = report.get("checkpoints_checked")
    signed = (
        f", {checked} signed checkpoints extended (latest at {report.get('latest_checkpoint')})"
        if checked
        else ", no signed checkpoint yet"
        if checked == 0
        else ""
    )
    print(
        f"chain intact: {report['events']} events, {report['artifacts_checked']} artifact "
        f"references checked{signed}, head {report['head'][:16]} ({took:.2f}s)"
    )
    return 0


def _key_text(value: str | None) -> str | None:
    """--key as given: the verifier key line, or a file holding it."""
    from pathlib import Path

    if value and "+" not in value and Path(value).is_file():
        return Path(value).read_text().strip()
    return value


def _local_url() -> str:
    from runtime.settings import Settings

    return Settings.from_env().database_url


async def _export(args: argparse.Namespace, client: ServiceClient) -> int:
    async def online() -> list[str]:
        query = {"job": args.job, "format": args.format}
        response = await client.request("GET", "/audit/export", query=query)
        return response.body.decode().splitlines()

    async def offline(db: Any, settings: Any) -> list[str]:
        from bot.api.routes import export_lines
        from runtime.audit import events_for

        job_id = None
        if args.job:
            from runtime.jobs import parse_job_id

            job_id = parse_job_id(args.job)

        class Reader:  # what export_lines asks of an engine: the events
            async def events(self, job: int | None) -> list[Any]:
                return await events_for(db, job)

        return await export_lines(Reader(), job_id, args.format)  # type: ignore[arg-type]

    lines = await _service_or_offline(args, client, online, offline)
    _write_lines(args.output, lines)
    return 0


def _write_lines(output: str | None, lines: list[str]) -> None:
    """Stdout, or a file written whole (tmp, then renamed) or not at all."""
    if not output:
        for line in lines:
            sys.stdout.write(line + "\n")
        return
    from pathlib import Path

    target = Path(output)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in lines)
    tmp.replace(target)
    print(f"wrote {len(lines)} events to {output}", file=sys.stderr)


async def _prove(args: argparse.Namespace, client: ServiceClient) -> int:
    from runtime.jobs import format_job_id, parse_job_id

    job_id = parse_job_id(args.job)

    async def offline(db: Any, settings: Any) -> dict[str, Any]:
        from runtime.audit.prove import prove_job

        return await prove_job(db, settings, job_id)

    bundle = await _service_or_offline(
        args, client, lambda: client.call("GET", f"/audit/prove/{format_job_id(job_id)}"), offline
    )
    text = json.dumps(bundle, indent=2, ensure_ascii=False)
    if args.output:
        _write_lines(args.output, [text])
        with contextlib.suppress(Exception):
            print(
                f"check it anywhere with: python scripts/verify_audit_proof.py {args.output} "
                "--key '<acp audit key>'",
                file=sys.stderr,
            )
    else:
        print(text)
    return 0


async def _key(args: argparse.Namespace, client: ServiceClient) -> int:
    async def offline(db: Any, settings: Any) -> dict[str, str]:
        from runtime.audit.note import public_key_text

        return {"key": public_key_text(settings)}

    print((await _service_or_offline(args, client, lambda: client.call("GET", "/audit/key"),
                                     offline))["key"])  # fmt: skip
    return 0
