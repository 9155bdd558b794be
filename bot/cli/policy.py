"""`acp policy check`: what the policy would decide for a request, as who. Runs and records
nothing; the decision is runtime.policy's, this module only prints it.

Asked of the running service (which decides as the authenticated caller, under the policy it
runs); with no service running, decided here from the policy files as the person named.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.cli.parser import identity
from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient


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
