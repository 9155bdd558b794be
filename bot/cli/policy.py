"""`acp policy check`: what the policy would decide for a request, as who. Runs and records
nothing; the decision is runtime.policy's, this module only prints it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.cli.parser import identity
from bot.cli.render import print_json

if TYPE_CHECKING:
    from runtime.engine import Engine


async def cmd_policy_check(engine: Engine, args: argparse.Namespace) -> int:
    actor = engine.actor("cli", identity(args))
    check = engine.check(args.request, actor)
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
    print(f"  policy hash : {check.policy_hash[:16]}  (nothing was run or recorded)")
    return 0


def registry_mutating(job_type: str | None) -> bool:
    """Whether jobs of this type change something when their action is taken."""
    from runtime.kinds import registry

    return bool(job_type) and registry.known(job_type) and registry.kind_for(job_type).mutating
