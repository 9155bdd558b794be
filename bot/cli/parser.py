"""The `acp` command's arguments: every subcommand, its options and help text (argparse),
and who the person running it is. Parsing only; the commands are in the modules beside this.
"""

from __future__ import annotations

import argparse
import getpass
import os

import bot.cli.audit as audit
import bot.cli.db as db
import bot.cli.env as env
import bot.cli.policy as policy
import bot.cli.sql as sql
import bot.cli.tokens as tokens


def identity(args: argparse.Namespace) -> str:
    return args.as_user or os.environ.get("ACP_USER") or getpass.getuser()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acp", description="Agent control plane: governed jobs from the terminal."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, *, identity: bool = False, read: bool = False):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if identity:
            cmd.add_argument(
                "--as",
                dest="as_user",
                metavar="USER",
                help="act as this person: honoured only where the policy allows "
                "impersonation (the demo policy); you are who the service authenticates",
            )
        if read:
            cmd.add_argument("--json", action="store_true", help="print JSON")
        return cmd

    p = add("submit", "submit a request as a job", identity=True, read=True)
    p.add_argument("request", help="e.g. 'code demo: run `make test`' ('-' reads stdin)")
    p.add_argument("--no-wait", action="store_true", help="return as soon as the job is queued")
    p = add("jobs", "list jobs, newest first", identity=True, read=True)
    p.add_argument("--mine", action="store_true", help="only jobs I requested")
    p.add_argument("--state", help="comma-separated states, e.g. awaiting_approval")
    p.add_argument("--limit", type=int, default=50)
    p = add("show", "show a job: state, decision, approvals, artifacts, diff", read=True)
    p.add_argument("job", help="job id, e.g. J-1")
    p = add("approve", "approve the pending action of a job", identity=True, read=True)
    p.add_argument("job")
    p.add_argument("--hash", help="the change hash you reviewed (refused if it differs)")
    p.add_argument("--no-wait", action="store_true")
    p = add("reject", "reject the pending action of a job", identity=True, read=True)
    p.add_argument("job")
    p.add_argument("--reason", help="why (recorded)")
    p.add_argument("--hash", help="the change hash you reviewed")
    p = add("answer", "answer a job's clarifying question", identity=True, read=True)
    p.add_argument("job")
    p.add_argument("answer", nargs="+")
    p.add_argument("--no-wait", action="store_true")
    p = add("cancel", "cancel a waiting job (queued, awaiting approval or an answer)",
            identity=True, read=True)  # fmt: skip
    p.add_argument("job")
    p.add_argument("--reason", help="why (recorded)")
    p = add("rollback", "revert a published change", identity=True)
    p.add_argument("job")
    audit.add_parser(sub)
    policy.add_parser(sub)
    p = add("replay", "re-run a model job from its recorded responses; compare the diff", read=True)
    p.add_argument("job")
    p.add_argument("--on-base", help="replay on this branch's tip instead of the recorded base")
    p = add("export-test", "write a browser job's path as a Playwright test")
    p.add_argument("job")
    p.add_argument("--output", "-o", help="file to write (default test_j_N.py; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = add("artifact", "save one of a job's artifacts (trace.zip, a screenshot…)")
    p.add_argument("job")
    p.add_argument("name", help="artifact name as `acp show` lists it")
    p.add_argument("--output", "-o", help="file to write (default: the name; - for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    routines = sub.add_parser("routines", help="scheduled requests: every firing is a job")
    r_sub = routines.add_subparsers(dest="routines_command", required=True, metavar="SUBCOMMAND")
    p = r_sub.add_parser("add", help="propose a routine (a job; the policy may want approval)")
    p.add_argument("schedule", help="'0 9 * * MON' (cron, 5 fields) or 'every 15m'")
    p.add_argument("request", help="what each firing submits, e.g. 'sql payments-replica: …'")
    p.add_argument("--tz", help="IANA time zone (default: the policy's routines.timezone)")
    p.add_argument("--misfire", choices=["skip", "run_once"], help="after downtime (default skip)")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-wait", action="store_true")
    p = r_sub.add_parser("list", help="owner, schedule and time zone, next run, last result")
    p.add_argument("--all", action="store_true", help="include deleted routines")
    p.add_argument("--json", action="store_true")
    for name, text in (("pause", "stop firing (the owner or a routine approver)"),
                       ("resume", "fire again"),
                       ("run-now", "fire once now, through the same policy")):  # fmt: skip
        p = r_sub.add_parser(name, help=text)
        p.add_argument("routine", help="routine id, e.g. R-1")
        p.add_argument("--as", dest="as_user", metavar="USER")
    for name, text in (("delete", "remove the routine (a job; the policy may want approval)"),
                       ("change", "give it a new schedule (a job, like creating it)")):  # fmt: skip
        p = r_sub.add_parser(name, help=text)
        p.add_argument("routine", help="routine id, e.g. R-1")
        if name == "change":
            p.add_argument("schedule", help="the new schedule, e.g. '0 8 * * MON tz=UTC'")
        p.add_argument("--as", dest="as_user", metavar="USER")
        p.add_argument("--json", action="store_true")
        p.add_argument("--no-wait", action="store_true")
    p = r_sub.add_parser("history", help="each firing: due time, outcome, job")
    p.add_argument("routine")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    sql.add_parser(sub)
    db.add_parser(sub)
    env.add_parser(sub)
    tokens.add_parser(sub)
    add("schema", "print the job schema (JSON Schema)")
    p = add("serve", "run the service: upgrades the database, then API, worker (and Slack)")
    p.add_argument("--no-worker", action="store_true",
                   help="serve the API and doors only; run workers with `acp worker`")  # fmt: skip
    add("worker", "run a worker only")
    return parser
