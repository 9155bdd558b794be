"""`acp policy ...`: its arguments, and check (what the policy would decide for a request, as
who), show (the version in force), reload and propose. The decisions are runtime.policy's; this
module only asks the service and prints. `test` and `explain` are in bot.cli.policy_examples,
`simulate` in bot.cli.policy_simulate.

A check is asked of the running service (which decides as the authenticated caller, under the
policy it runs); with no service running, it is decided here from the policy files.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient


def add_parser(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser("policy", help="the policy: check, show, reload, test, explain, "
                            "simulate, propose")  # fmt: skip
    ps = policy.add_subparsers(dest="policy_command", required=True, metavar="SUBCOMMAND")
    p = ps.add_parser("check", help="what would happen to a request (runs nothing)")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--json", action="store_true")
    p.add_argument("request")
    p = ps.add_parser("show", help="the policy in force: its hash, since when, who loaded it")
    p.add_argument("--history", action="store_true", help="every load, newest first")
    p.add_argument("--json", action="store_true")
    p = ps.add_parser("reload", help="read the policy folder again now (refused if invalid)")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--json", action="store_true")
    p = ps.add_parser("test", help="run the policy's own examples (expect:) and print a table")
    p.add_argument("--policy", metavar="DIR", help="a policy folder (default: ACP_POLICY_DIR)")
    p.add_argument("--json", action="store_true")
    p = ps.add_parser("explain", help="rule by rule, why a request is decided as it is")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--policy", metavar="DIR", help="explain under these files instead")
    p.add_argument("--json", action="store_true")
    p.add_argument("request")
    p = ps.add_parser("simulate", help="re-decide recorded jobs under a proposed policy")
    p.add_argument("--policy", metavar="DIR", required=True, help="the proposed policy folder")
    p.add_argument("--since", default="30d", help="how far back (30m, 72h, 30d; default 30d)")
    p.add_argument("--json", action="store_true")
    p = ps.add_parser("propose", help="propose a policy folder as a change (a reviewed job)")
    p.add_argument("policy_dir", metavar="DIR", help="the proposed policy folder")
    p.add_argument("--as", dest="as_user", metavar="USER")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-wait", action="store_true", help="return once the job is recorded")


async def cmd_policy(client: ServiceClient, args: argparse.Namespace) -> int:
    from bot.cli import policy_examples, policy_simulate

    handlers = {
        "check": cmd_policy_check,
        "show": cmd_policy_show,
        "reload": cmd_policy_reload,
        "propose": cmd_policy_propose,
        "test": policy_examples.cmd_policy_test,
        "explain": policy_examples.cmd_policy_explain,
        "simulate": policy_simulate.cmd_policy_simulate,
    }
    return await handlers[args.policy_command](client, args)


async def cmd_policy_check(client: ServiceClient, args: argparse.Namespace) -> int:
    from runtime.errors import ServiceUnavailable
    from runtime.submission import PolicyCheck

    offline = ""
    try:
        check = PolicyCheck.model_validate(
            await client.call("POST", "/policy/check", {"request": args.request})
        )
    except ServiceUnavailable:
        check = _offline_check(args)
        offline = "; decided from the policy files: the service is not running"
    if args.json:
        print_json(check.model_dump(mode="json"))
        return 0
    d = check.decision
    parsed = check.parsed
    print(
        f"as {check.person}: {parsed['job_type'] or '?'} {parsed['target'] or '?'} "
        f"(by {parsed['method']}, confidence {parsed['confidence']:.2f})"
    )
    print(f"  effect      : {d.effect}")
    for reason in d.reasons:
        print(f"  reason      : {reason}")
    print(f"  rules       : {', '.join(d.rule_ids) or '-'}")
    print(f"  tools       : {', '.join(d.tools_granted) or '-'}")
    print(f"  network     : {', '.join(d.network_granted) or 'none (no host is reachable)'}")
    for host, variable in d.credentials_granted.items():
        print(f"  credential  : {host} gets ${variable} (added by the egress proxy)")
    if d.effect == "allow" and not d.approvals and registry_mutating(parsed["job_type"]):
        print("  approval    : none: its change publishes as soon as the job ends")
    for gate in d.approvals:
        print(
            f"  approval    : {gate.action} by {', '.join(gate.approvers) or 'nobody'} "
            f"(rule {gate.rule_id}{', four-eyes' if gate.four_eyes else ''})"
        )
    print(f"  model route : {d.model or '-'} (rule {d.model_rule or '-'}), risk {d.risk or '-'}")
    if d.question:
        print(f"  would ask   : {d.question} {d.options or ''}")
    if parsed.get("commands"):
        print(f"  steps       : {parsed['commands']}")
    print(f"  policy hash : {check.policy_hash[:16]}  (nothing was run or recorded{offline})")
    return 0


def _offline_check(args: argparse.Namespace):
    """The same pure decision from the policy files, for a person named (not authenticated:
    nothing is run or recorded)."""
    from runtime.identity import Actor
    from runtime.policy import load_policy
    from runtime.settings import Settings
    from runtime.submission import Submissions

    settings = Settings.from_env()
    loaded = load_policy(settings.policy_dir)

    class Offline(Submissions):  # the pure half of the engine: parse and decide
        def __init__(self) -> None:
            self.loaded = loaded

        @property
        def policy(self):
            return self.loaded.policy

    from bot.cli.parser import identity

    checker = Offline()
    name = identity(args)
    person = loaded.policy.person_for("cli", name)
    if person is None:
        from runtime.errors import UnknownPerson

        raise UnknownPerson(f"cli identity '{name}' is not a person in the policy",
                            hint="pass --as NAME")  # fmt: skip
    return checker.check(args.request, Actor(person, "cli", name))


def registry_mutating(job_type: str | None) -> bool:
    """Whether jobs of this type change something when their action is taken."""
    from runtime.kinds import registry

    return bool(job_type) and registry.known(job_type) and registry.kind_for(job_type).mutating


def _ago(iso: str) -> str:
    from datetime import UTC, datetime

    at = datetime.fromisoformat(iso)
    seconds = max(0, int((datetime.now(UTC) - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(iso: str) -> str:
    from datetime import datetime

    return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M:%S} UTC ({_ago(iso)})"


async def cmd_policy_show(client: ServiceClient, args: argparse.Namespace) -> int:
    """The version in force and since when; with --history every load."""
    query = {"history": "1"} if args.history else {}
    shown = await client.call("GET", "/policy", **query)
    if args.json:
        print_json(shown)
        return 0
    print(f"policy in force: {shown['policy_hash']}")
    print(f"  since     : {_when(shown['since'])}")
    print(f"  loaded    : {shown['source']} by {shown['actor']}")
    print(f"  folder    : {shown['folder']}  ({', '.join(shown['files'])})")
    print(f"  contents  : {shown['people']} people, {shown['roles']} roles, "
          f"{shown['approval_rules']} approval rules, {shown['examples']} examples")  # fmt: skip
    if args.history:
        print("  history   :")
        for load in shown["history"]:
            job = f" (J-{load['job_id']})" if load.get("job_id") else ""
            print(f"    {load['loaded_at'][:19]}  {load['policy_hash'][:16]}  "
                  f"{load['source']}{job} by {load['actor']}")  # fmt: skip
    return 0


async def cmd_policy_reload(client: ServiceClient, args: argparse.Namespace) -> int:
    """Ask the service to read its policy folder now (refused with file:line if invalid)."""
    result = await client.call("POST", "/policy/reload", {})
    if args.json:
        print_json(result)
        return 0
    if result["changed"]:
        print(f"policy {result['policy_hash'][:16]} in force (was {result['previous'][:16]}), "
              f"loaded by {result['actor']}")  # fmt: skip
    else:
        print(f"policy unchanged: {result['policy_hash'][:16]} in force since "
              f"{_when(result['since'])}")  # fmt: skip
    return 0


async def cmd_policy_propose(client: ServiceClient, args: argparse.Namespace) -> int:
    """Send a policy folder as a proposed change: a `policy` job, reviewed before it applies."""
    from bot.cli.client import _job
    from bot.cli.jobs import settle, show_job

    files = read_policy_folder(args.policy_dir)
    job = _job(await client.call("POST", "/policy/propose", {"files": files}))
    if not args.json:
        print(f"{job.job_id} {job.state.value}: proposes {', '.join(sorted(files))}",
              file=sys.stderr)  # fmt: skip
    job = await settle(client, job, not args.no_wait)
    return await show_job(client, job, args)


def read_policy_folder(name: str) -> dict[str, str]:
    """A policy folder's *.yml / *.yaml as {file name: text}, to send to the service."""
    from pathlib import Path

    from runtime.errors import BadRequest
    from runtime.policy.load import policy_files

    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise BadRequest(f"{folder} is not a folder", hint="name a folder of policy *.yml files")
    files = {}
    for path in policy_files(folder):
        try:
            files[path.name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise BadRequest(f"{path}: cannot be read as UTF-8 text: {error}") from None
    if not files:
        raise BadRequest(f"no policy files (*.yml, *.yaml) in {folder}")
    return files
