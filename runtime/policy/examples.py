"""The policy's own examples (`expect:`): each request decided as written, compared with what
the example says, at every load. A policy whose examples fail is refused, naming the example's
file and line; `acp policy test` prints them all as a table, with the grants and approval rules
no example exercises (coverage).

Pure: parses and decides, never writes. Imports intake and submission when run (they import
the policy package).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.errors import AcpError, PolicyFileError
from runtime.policy.decide import Decision, RequestFacts, decide
from runtime.policy.schema import PolicyExample

if TYPE_CHECKING:
    from runtime.policy.load import LoadedPolicy


@dataclass(frozen=True)
class ExampleResult:
    index: int
    example: PolicyExample
    lines: Mapping[tuple[Any, ...], tuple[str, int]]  # the policy's (read only when asked)
    first_file: str
    got_effect: str
    got_approvals: list[str]
    got_rules: list[str]
    got_model: str | None
    failures: list[str] = field(default_factory=list)
    refusal: str | None = None  # the request was refused at intake (a BadRequest, an unknown)
    got_approvers: dict[str, list[str]] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def where(self) -> tuple[str, int]:
        """The example's file and line (found on demand: a passing load never needs it)."""
        found = self.lines.get(("expect", self.index)) or (self.first_file, 1)
        return (found[0], found[1])

    @property
    def request(self) -> str:
        """What the example asks, as a person reads it."""
        return describe(self.example)

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.index + 1,
            "file": self.where[0],
            "line": self.where[1],
            "as": self.example.as_,
            "request": self.example.request,
            "job_type": self.example.job_type,
            "target": self.example.target,
            "expected": {
                **self.example.model_dump(mode="json", by_alias=True, exclude_none=True),
                "effect": self.example.expected_effect,
            },
            "got": {
                "effect": self.got_effect,
                "approvals": self.got_approvals,
                "approvers": self.got_approvers,
                "rules": self.got_rules,
                "model": self.got_model,
                "reasons": self.reasons,
            },
            "refusal": self.refusal,
            "passed": self.passed,
            "failures": self.failures,
        }


def describe(example: PolicyExample) -> str:
    """The example's request, or for a job no request names, its type and target."""
    if example.request is not None:
        return example.request
    return f"({example.job_type} job on {example.target})"


def run_examples(loaded: LoadedPolicy) -> list[ExampleResult]:
    """Every example of the policy, decided and compared; never raises for a failing one."""
    expect = loaded.policy.expect
    return [run_example(loaded, index, example) for index, example in enumerate(expect)]


def decide_example(loaded: LoadedPolicy, example: PolicyExample) -> tuple[Decision, str | None]:
    """The decision the example is about, and the intake's refusal if the request was refused
    (then the decision is a deny by the rule `intake`)."""
    from runtime.intake import parse_request
    from runtime.submission import decide_parsed

    policy = loaded.policy
    if example.request is None:  # a job no request names: decided from its facts
        facts = RequestFacts(
            person=example.as_,
            job_type=example.job_type,
            target=example.target,
            origin=example.origin,
        )
        return decide(policy, facts), None
    try:
        parsed = parse_request(example.request, policy)
        return decide_parsed(policy, example.as_, parsed, example.origin), None
    except AcpError as error:
        refused = Decision(effect="deny", reasons=[error.message], rule_ids=["intake"])
        return refused, error.message


def run_example(loaded: LoadedPolicy, index: int, example: PolicyExample) -> ExampleResult:
    first = str(loaded.files[0]) if loaded.files else "?"
    decision, refusal = decide_example(loaded, example)
    approvals = [gate.rule_id for gate in decision.approvals]
    approvers = {gate.rule_id: sorted(gate.approvers) for gate in decision.approvals}
    return ExampleResult(
        index=index,
        example=example,
        lines=loaded.lines,
        first_file=first,
        got_effect=decision.effect,
        got_approvals=approvals,
        got_rules=list(decision.rule_ids),
        got_model=decision.model,
        failures=_failures(example, decision),
        refusal=refusal,
        got_approvers=approvers,
        reasons=list(decision.reasons),
    )


def _failures(example: PolicyExample, decision: Decision) -> list[str]:
    """What the decision got other than the example says, one line each."""
    failures = []
    if decision.effect != example.expected_effect:
        why = f" ({'; '.join(decision.reasons)})" if decision.reasons else ""
        failures.append(f"expected {example.expected_effect}, got {decision.effect}{why}")
    approvals = [gate.rule_id for gate in decision.approvals]
    if example.approvals is not None and sorted(set(approvals)) != sorted(set(example.approvals)):
        failures.append(
            f"expected approvals [{', '.join(example.approvals)}], got [{', '.join(approvals)}]"
        )
    for rule_id, people in (example.approvers or {}).items():
        gate = next((g for g in decision.approvals if g.rule_id == rule_id), None)
        if gate is None:
            failures.append(f"expected approvers of {rule_id}, but no gate of {rule_id}")
            continue
        if sorted(gate.approvers) != sorted(people):
            failures.append(
                f"expected approvers of {rule_id}: [{', '.join(sorted(people))}], "
                f"got [{', '.join(sorted(gate.approvers))}]"
            )
    missing = [rule for rule in example.rules if rule not in decision.rule_ids]
    if missing:
        failures.append(
            f"expected rules {', '.join(missing)} among [{', '.join(decision.rule_ids)}]"
        )
    if example.model is not None and decision.model != example.model:
        failures.append(f"expected model {example.model}, got {decision.model or '-'}")
    return failures


def coverage(loaded: LoadedPolicy, results: list[ExampleResult]) -> tuple[list[str], list[str]]:
    """The grants no example's decision used, and the approval rules no example's decision
    gated on (nor any example names in its approvals), each in policy order."""
    policy = loaded.policy
    used = {rule for result in results for rule in result.got_rules}
    gated = {rule for result in results for rule in result.got_approvals}
    gated |= {rule for result in results for rule in result.example.approvals or []}
    grants = [
        grant.id for role in policy.roles.values() for grant in role.grants if grant.id not in used
    ]
    rules = [rule.id for rule in policy.approvals if rule.id not in gated]
    return grants, rules


def check_examples(loaded: LoadedPolicy) -> None:
    """Refuse the policy at its first failing example, naming its file and line."""
    results = run_examples(loaded)
    failed = [r for r in results if not r.passed]
    if not failed:
        return
    first = failed[0]
    file, line = first.where
    others = len(failed) - 1
    fail = "example fails" if others == 1 else "examples fail"
    more = f" ({others} more {fail})" if others else ""
    raise PolicyFileError(
        f"{file}:{line}: example {first.index + 1} (as {first.example.as_}: "
        f"{first.request!r}): {'; '.join(first.failures)}{more}",
        hint="`acp policy test` runs every example and prints what each one got",
    )
