"""`acp policy test` (the policy's own examples, `expect:`, as a table with their coverage) and
`acp policy explain` (rule by rule, why a request is decided as it is).

A test runs here, from the policy files (pure; no service needed). An explanation is asked of
the running service (for the authenticated caller, under the policy in force); with --policy
DIR, or with no service running, it is worked out here from the files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.render import print_json

if TYPE_CHECKING:
    from bot.cli.client import ServiceClient
    from runtime.policy.examples import ExampleResult
    from runtime.policy.explain import Check, Explanation

REQUEST_WIDTH = 44


# --- acp policy test ------------------------------------------------------------------


async def cmd_policy_test(client: ServiceClient, args: argparse.Namespace) -> int:
    from runtime.policy import load_policy
    from runtime.policy.examples import coverage, run_examples

    directory = _policy_dir(args)
    loaded = load_policy(directory, examples=False)  # a failing set still loads, to be shown
    results = run_examples(loaded)
    grants, rules = coverage(loaded, results)
    failed = [r for r in results if not r.passed]
    if args.json:
        print_json(
            {
                "policy_dir": str(directory),
                "policy_hash": loaded.sha256,
                "examples": [r.as_json() for r in results],
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "coverage": {"uncovered_grants": grants, "uncovered_approval_rules": rules},
            }
        )
        return 1 if failed else 0
    print(f"policy {directory} ({loaded.sha256[:16]}): {len(results)} examples")
    if results:
        _print_table(results)
    else:
        print("  no examples: add an `expect:` section (see policies/default.yml)")
    if not grants and not rules:
        print("coverage: every grant and approval rule is exercised by an example")
    else:
        print("coverage: not exercised by any example:")
        if grants:
            print(f"  grants         : {', '.join(grants)}")
        if rules:
            print(f"  approval rules : {', '.join(rules)}")
    verdict = f"{len(failed)} FAILED" if failed else "all pass"
    print(f"{len(results) - len(failed)} of {len(results)} examples ok; {verdict}")
    return 1 if failed else 0


def _policy_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "policy", None):
        return Path(args.policy).expanduser()
    from runtime.settings import Settings

    return Settings.from_env().policy_dir


def _short(text: str, width: int = REQUEST_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _expected(result: ExampleResult) -> str:
    example = result.example
    text = example.expected_effect
    if example.approvals is not None:
        text += f" [{', '.join(example.approvals)}]" if example.approvals else " []"
    return text


def _got(result: ExampleResult) -> str:
    text = result.got_effect
    if result.got_approvals or result.example.approvals is not None:
        text += f" [{', '.join(result.got_approvals)}]"
    return text


def _print_table(results: list[ExampleResult]) -> None:
    header = ("#", "as", "request", "expected", "got", "result")
    rows = [
        (
            str(r.index + 1),
            r.example.as_,
            _short(r.request),
            _expected(r),
            _got(r),
            "ok" if r.passed else "FAIL",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    print("  " + line(header))
    indent = "  " + " " * (widths[0] + 2)
    for result, row in zip(results, rows, strict=True):
        print("  " + line(row))
        if result.passed:
            continue
        for failure in result.failures:
            print(f"{indent}- {failure}")
        if result.refusal:
            print(f"{indent}  (refused at intake: {result.refusal})")
        print(f"{indent}  at {result.where[0]}:{result.where[1]}")


# --- acp policy explain ---------------------------------------------------------------


async def cmd_policy_explain(client: ServiceClient, args: argparse.Namespace) -> int:
    from runtime.errors import ServiceUnavailable
    from runtime.policy.explain import Explanation

    where = ""
    if args.policy:
        explained = _local_explain(args, args.policy)
        where = f"explained under {args.policy}"
    else:
        try:
            answer = await client.call("POST", "/policy/explain", {"request": args.request})
            explained = Explanation.model_validate(answer)
            where = "explained by the service, under the policy in force"
        except ServiceUnavailable:
            explained = _local_explain(args, _policy_dir(args))
            where = "explained from the policy files: the service is not running"
    if args.json:
        print_json(explained.model_dump(mode="json"))
        return 0
    print(render_explanation(explained, where))
    return 0


def _local_explain(args: argparse.Namespace, directory: Path | str) -> Explanation:
    """The explanation from the policy files, for the person named (not authenticated:
    nothing is run or recorded)."""
    from bot.cli.parser import identity
    from runtime.policy import load_policy
    from runtime.policy.explain import explain

    loaded = load_policy(Path(directory).expanduser(), examples=False)  # rules, not examples
    name = identity(args)
    person = loaded.policy.person_for("cli", name) or name
    explained = explain(loaded.policy, person, args.request)
    return explained.model_copy(update={"policy_hash": loaded.sha256})


def render_explanation(e: Explanation, where: str = "") -> str:
    """An explanation as text: each section, each rule with what it did and why."""
    who = f"roles: {', '.join(e.roles) or 'none'}" if e.known else "not a person in the policy"
    policy = f"policy {e.policy_hash[:16]}" if e.policy_hash else "the policy"
    lines = [f"as {e.person} ({who}), under {policy}", f"request: {e.request}"]
    if e.refused is not None:
        lines.append(f"refused at intake: {e.refused}")
    elif e.parsed is not None:
        p = e.parsed
        read = (
            f"read as : {p.get('job_type') or '?'} {p.get('target') or '?'} "
            f"(by {p.get('method')}, confidence {p.get('confidence', 0):.2f})"
        )
        if p.get("schedule"):
            read += f', scheduled "{p["schedule"]}"'
        lines.append(read)
        if p.get("commands"):
            lines.append(f"steps   : {'; '.join(p['commands'])}")
    sections = (
        ("clarification", e.clarification),
        ("target", e.target),
        (f"grants (roles: {', '.join(e.roles) or 'none'})", e.grants),
        ("tools", e.tools),
        ("model routes, in order", e.models),
        ("approval rules", e.approvals),
    )
    checks = [c for _, section in sections for c in section]
    width = max((len(_rule(c)) for c in checks), default=0)
    for title, section in sections:
        if e.refused is not None:
            break
        lines.append(title)
        if not section:
            lines.append("  (none)")
        for check in section:
            lines.append(f"  {check.result:<11}  {_rule(check):<{width}}  {check.why}")
    d = e.decision
    by = f" (by {e.decided_by})" if e.decided_by else ""
    lines.append(f"decision: {d.effect}{by}")
    for reason in d.reasons:
        lines.append(f"  reason      : {reason}")
    lines.append(f"  rules       : {', '.join(d.rule_ids) or '-'}")
    if d.effect == "allow":
        lines.append(f"  tools       : {', '.join(d.tools_granted) or '-'}")
        lines.append(f"  network     : {', '.join(d.network_granted) or 'none'}")
        for gate in d.approvals:
            lines.append(
                f"  approval    : {gate.action} by {', '.join(gate.approvers) or 'nobody'} "
                f"(rule {gate.rule_id}{', four-eyes' if gate.four_eyes else ''})"
            )
        lines.append(
            f"  model       : {d.model or '-'} (rule {d.model_rule or '-'}), risk {d.risk or '-'}"
        )
    if d.question:
        options = f" {d.options}" if d.options else ""
        lines.append(f"  would ask   : {d.question}{options}")
    lines.append(f"nothing was run or recorded{'; ' + where if where else ''}")
    return "\n".join(lines)


def _rule(check: Check) -> str:
    return f"{check.rule} ({check.role})" if check.role else check.rule
